"""The run report: files, plots, STRS consistency with `vrme strs`, missing folds, the paper
table, `vrme report --run` rebuilding from run.json alone, and what a reviewer audits: code
versions, time per stage, per-fold training curves, TP/FP/FN per video and the missed and false
intervals (checked against the official matching)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import TINY_SYNTH
from vrme.metrics.strs import evaluate_strs
from vrme.record import code_versions, read_run_info
from vrme.report.build import _pick_videos, build_report
from vrme.report.plots import (
    CONFUSION_SIZE,
    DURATION_SIZE,
    LOSS_PANELS_PER_PNG,
    SCORE_SIZE,
    SUBJECT_F1_SIZE,
    loss_curves_png,
    loss_curves_size,
    png_size,
    score_curve_png,
)
from vrme.report.score import (
    FALSE_COLUMNS,
    MISSED_COLUMNS,
    PER_VIDEO_COLUMNS,
    _matching,
    _video_clock,
)


def test_pick_videos_round_robin_over_subjects():
    vids = [("1", "a"), ("1", "b"), ("1", "c"), ("2", "a"), ("3", "a"), ("3", "b")]
    assert _pick_videos(vids, 4) == [("1", "a"), ("2", "a"), ("3", "a"), ("1", "b")]
    assert _pick_videos(vids, 0) == []
    assert len(_pick_videos(vids, 100)) == 6


@pytest.mark.slow
def test_report_files_exist_and_parse(tiny_bench):
    rep = tiny_bench.report
    out = tiny_bench.run_dir / "report"
    for name in ("metrics.json", "folds.parquet", "predictions.csv", "ground_truth.csv",
                 "intervals.csv", "report.md", "report.html"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] is True and m["missing_folds"] == []
    assert m["expected_folds"] == ["1", "2", "3"] == m["completed_folds"]
    for variant in ("official", "reference"):
        assert set(m[variant]) >= {"strs", "spot_f1", "spot_precision", "spot_recall",
                                   "analysis_f1"}
    assert m["official"]["spot_tp"] + m["official"]["spot_fn"] == m["n_ground_truth"] == 9
    assert set(m["per_class"]) >= {"negative", "positive", "surprise", "others"} & \
        set(pd.read_csv(out / "ground_truth.csv")["emotion"])
    for row in m["per_class"].values():
        assert {"n_gt", "spot_recall", "spot_precision"} <= set(row)
    folds = pd.read_parquet(out / "folds.parquet")
    assert list(folds["fold"]) == ["1", "2", "3"] and (folds["status"] == "complete").all()
    assert {"spot_f1", "strs", "k_p", "n_train_windows", "train_s", "final_loss"} <= \
        set(folds.columns)
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "video": str})
    assert list(pred.columns) == ["subject", "video", "onset", "offset", "emotion"]
    assert len(pred) == m["n_predictions"]
    assert pd.api.types.is_integer_dtype(pred["onset"]) and (pred["onset"] <= pred["offset"]).all()
    # Original frame numbers: CAS(ME)^3 frames are numbered from 0, seconds x fps per video.
    n = int(TINY_SYNTH["seconds"] * TINY_SYNTH["fps"])
    assert pred["onset"].min() >= 0 and pred["offset"].max() <= n - 1
    assert rep.complete and rep.html == out / "report.html"


@pytest.mark.slow
def test_plots_are_real_pngs_of_the_expected_size_and_embedded(tiny_bench):
    out = tiny_bench.run_dir / "report"
    expected = {"confusion.png": CONFUSION_SIZE, "subject_f1.png": SUBJECT_F1_SIZE,
                "durations.png": DURATION_SIZE, "loss_curves_1.png": loss_curves_size(3)}
    for s in ("1", "2", "3"):
        expected[f"score_{s}_a.png"] = SCORE_SIZE
    found = {p.name for p in (out / "plots").glob("*.png")}
    assert found == set(expected)
    for name, size in expected.items():
        data = (out / "plots" / name).read_bytes()
        assert png_size(data) == size, name
        assert len(data) > 5000, name  # something was drawn
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(expected)
    assert "src=\"http" not in html and "plots/" not in html  # self-contained
    md = (out / "report.md").read_text()
    for name in expected:
        assert f"(plots/{name})" in md
    # Synthetic dataset: no paper table even though the layout is casme3.
    assert "Beside the paper" not in md
    # The Prefect artifact inlines every image report.md references.
    from flows.report import markdown_with_inline_images

    inlined = markdown_with_inline_images(md, out / "plots")
    assert "](plots/" not in inlined and "not readable" not in inlined
    assert inlined.count("](data:image/png;base64,") == len(expected)


@pytest.mark.slow
def test_predictions_scored_by_vrme_strs_equal_metrics_json(tiny_bench):
    from flows.cli import app

    out = tiny_bench.run_dir / "report"
    m = json.loads((out / "metrics.json").read_text())
    for variant in ("official", "reference"):
        args = ["strs", "--pred", str(out / "predictions.csv"), "--gt",
                str(out / "ground_truth.csv"), "--json", "--variant", variant]
        if variant == "official":
            args += ["--emotions", ",".join(m["emotions"])]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout.strip().splitlines()[-1]) == m[variant]


@pytest.mark.slow
def test_missing_fold_is_listed_and_report_rebuilds_from_run_json(tiny_bench,
                                                                   tmp_path):
    from flows.cli import app

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_bench.run_dir, run)
    shutil.rmtree(run / "report")
    (run / "folds" / "2" / "fold.json").unlink()
    (run / "folds" / "2" / "failed.json").write_text(json.dumps({"message": "boom: out of "
                                                                            "memory"}))
    res = CliRunner().invoke(app, ["report", "--run", str(run), "--max-videos", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(run / "report" / "report.html")
    m = json.loads((run / "report" / "metrics.json").read_text())
    assert m["complete"] is False and m["missing_folds"] == ["2"]
    assert "boom" in m["missing_reasons"]["2"]
    assert m["completed_folds"] == ["1", "3"]
    gt = pd.read_csv(run / "report" / "ground_truth.csv", dtype={"subject": str})
    assert set(gt["subject"]) == {"1", "3"}  # scored on the complete folds only
    folds = pd.read_parquet(run / "report" / "folds.parquet")
    assert folds.set_index("fold").loc["2", "status"] == "missing"
    assert m["shown_videos"] == [["1", "a"]]
    assert len(list((run / "report" / "plots").glob("score_*.png"))) == 1
    assert "Incomplete run" in (run / "report" / "report.html").read_text()


@pytest.mark.slow
def test_paper_table_only_for_real_datasets(tiny_bench, tmp_path):
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_bench.run_dir, run)
    info = read_run_info(run)
    info["dataset"]["synthetic"] = False
    info["config"]["paper"] = {"Paper X": {"strs": 0.0562, "spot_f1": 0.0997,
                                           "recog_f1": 0.5638}}
    (run / "run.json").write_text(json.dumps(info))
    res = build_report(run, max_videos=0)
    md = res.markdown.read_text()
    assert "Beside the paper" in md and "Paper X" in md and "0.0562" in md
    assert res.metrics["paper"]["Paper X"]["strs"] == 0.0562
    assert not list((run / "report" / "plots").glob("score_*.png"))
    info["dataset"]["synthetic"] = True
    (run / "run.json").write_text(json.dumps(info))
    res = build_report(run, max_videos=0)
    assert "Beside the paper" not in res.markdown.read_text() and "paper" not in res.metrics


# -- what a reviewer audits -------------------------------------------------------------------


def _tables():
    """Predictions and ground truth exercising every case of the official matching."""
    pred = pd.DataFrame([
        ("1", "v1", 10, 20, "negative"),   # 0: claims gt 0 and gt 1 (one prediction, two TPs)
        ("1", "v1", 10, 19, "negative"),   # 1: IoU 10/11 with gt 0, already claimed -> FP
        ("1", "v1", 50, 60, "positive"),   # 2: overlaps nothing -> FP
        ("1", "v2", 5, 9, "surprise"),     # 3: video without ground truth -> not scored
        ("1", "v1", 100, 130, "others"),   # 4: IoU 5/31 with gt 2 -> FP
    ], columns=["subject", "video", "onset", "offset", "emotion"])
    gt = pd.DataFrame([
        ("1", "v1", 10, 20, "negative"),   # 0: found by pred 0
        ("1", "v1", 12, 20, "negative"),   # 1: found by pred 0 (IoU 9/11)
        ("1", "v1", 100, 104, "others"),   # 2: missed, best IoU 5/31
        ("1", "v1", 200, 210, "surprise"),  # 3: missed, nothing overlaps
        ("2", "v1", 10, 20, "positive"),   # 4: subject without predictions -> not scored
        ("1", "v3", 0, 5, "positive"),     # 5: missed, no prediction in its video
    ], columns=["subject", "video", "onset", "offset", "emotion"])
    manifest = pd.DataFrame({"subject": ["1", "1", "1", "2"], "video": ["v1", "v2", "v3", "v1"],
                             "first_frame": [1, 0, 0, 0], "fps": [200.0, 30.0, 30.0, 30.0],
                             "n_frames": [400, 60, 60, 60]})
    return pred, gt, manifest


def test_matching_follows_the_official_pairs_case_by_case():
    pred, gt, manifest = _tables()
    off = evaluate_strs(pred, gt, variant="official")
    assert (off.spot_tp, off.spot_fp, off.spot_fn) == (2, 3, 3)
    mt = _matching(pred, gt, off, [("1", "v1"), ("1", "v2"), ("1", "v3"), ("2", "v1")],
                   _video_clock(manifest, 30.0), extra=pred.assign(apex=[15, 14, 55, 7, 101],
                                                                   score=0.5))
    assert list(mt.pred_status) == ["TP", "FP", "FP", "unscored", "FP"]
    assert list(mt.gt_status) == ["found", "found", "missed", "missed", "unscored", "missed"]
    pv = mt.per_video.set_index(["subject", "video"])
    assert list(mt.per_video.columns) == PER_VIDEO_COLUMNS
    assert pv.loc[("1", "v1"), ["true", "predicted", "tp", "fp", "fn"]].tolist() == [4, 4, 2, 3, 2]
    assert pv.loc[("1", "v2"), ["predicted", "pred_unscored", "fp"]].tolist() == [1, 1, 0]
    assert pv.loc[("2", "v1"), ["true", "gt_unscored", "fn"]].tolist() == [1, 1, 0]
    assert pv.loc[("1", "v1"), "seconds"] == 2.0
    for ours, theirs in (("tp", off.spot_tp), ("fp", off.spot_fp), ("fn", off.spot_fn),
                         ("pred_unscored", off.pred_unscored), ("gt_unscored", off.gt_unscored)):
        assert int(mt.per_video[ours].sum()) == theirs, ours
    missed = mt.missed.set_index("gt_row")
    assert list(mt.missed.columns) == MISSED_COLUMNS and list(missed.index) == [2, 3, 5]
    assert missed.loc[2, "onset_s"] == (100 - 1) / 200 and missed.loc[2, "offset_s"] == 0.515
    assert missed.loc[2, "best_iou"] == 5 / 31 and missed.loc[2, "best_pred_row"] == 4
    assert "IoU 0.161 < 0.5" in missed.loc[2, "reason"]
    assert missed.loc[3, "reason"] == "no prediction overlaps it"
    assert pd.isna(missed.loc[3, "best_pred_row"])
    assert missed.loc[5, "reason"] == "no prediction in this video"
    false = mt.false.set_index("pred_row")
    assert list(mt.false.columns) == FALSE_COLUMNS and list(false.index) == [1, 2, 4]
    assert "claimed by an earlier prediction (row 0)" in false.loc[1, "reason"]
    assert false.loc[1, "best_iou"] == 10 / 11 and false.loc[1, "apex"] == 14
    assert false.loc[2, "reason"] == "overlaps no true interval"
    assert false.loc[4, "onset_s"] == 99 / 200


@pytest.mark.slow
def test_per_video_counts_sum_to_the_official_counts(tiny_bench, spec_kw):
    out = tiny_bench.run_dir / "report"
    m = json.loads((out / "metrics.json").read_text())
    pv = pd.read_csv(out / "per_video.csv", dtype={"subject": str, "video": str})
    assert list(pv.columns) == PER_VIDEO_COLUMNS
    assert pv.to_dict(orient="records") == m["per_video"]
    assert sorted(zip(pv["subject"], pv["video"])) == [("1", "a"), ("2", "a"), ("3", "a")]
    for ours, key in (("tp", "spot_tp"), ("fp", "spot_fp"), ("fn", "spot_fn")):
        assert int(pv[ours].sum()) == m["official"][key], ours
    assert int(pv["pred_unscored"].sum()) == m["pred_unscored"]
    assert int(pv["gt_unscored"].sum()) == m["gt_unscored"]
    assert int(pv["true"].sum()) == m["n_ground_truth"]
    assert int(pv["predicted"].sum()) == m["n_predictions"]
    seconds = float(spec_kw["seconds"])  # every video of the tiny dataset is this long
    assert (pv["frames"] == seconds * spec_kw["fps"]).all() and (pv["seconds"] == seconds).all()
    md = (out / "report.md").read_text()
    assert "| subject | video | frames | seconds | true | predicted | TP | FP | FN |" in md
    for r in pv.itertuples(index=False):
        assert (f"| {r.subject} | {r.video} | {r.frames} | {seconds} | {r.true} | {r.predicted} | "
                f"{r.tp} | {r.fp} | {r.fn} |") in md


@pytest.mark.slow
def test_listed_missed_and_false_intervals_are_unmatched_in_the_official_pairs(tiny_bench):
    out = tiny_bench.run_dir / "report"
    m = json.loads((out / "metrics.json").read_text())
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "video": str})
    gt = pd.read_csv(out / "ground_truth.csv", dtype={"subject": str, "video": str})
    pairs = evaluate_strs(pred, gt, emotions=m["emotions"], variant="official").pairs
    missed = pd.read_csv(out / "missed.csv", dtype={"subject": str, "video": str})
    false = pd.read_csv(out / "false.csv", dtype={"subject": str, "video": str})
    assert [(r["gt_row"], r["onset"], r["offset"], r["reason"]) for r in m["missed"]] == \
        list(zip(missed["gt_row"], missed["onset"], missed["offset"], missed["reason"]))
    assert [(r["pred_row"], r["onset"], r["offset"], r["reason"]) for r in m["false"]] == \
        list(zip(false["pred_row"], false["onset"], false["offset"], false["reason"]))
    assert len(missed) == m["official"]["spot_fn"] and len(false) == m["official"]["spot_fp"]
    assert len(missed) and len(false)  # the tiny benchmark has both
    claimed_gt, claiming = set(pairs["gt_row"]), set(pairs["pred_row"])
    assert not set(missed["gt_row"]) & claimed_gt
    assert not set(false["pred_row"]) & claiming
    # Every scored row is either matched or listed: nothing is left out.
    assert set(missed["gt_row"]) | claimed_gt == set(range(len(gt)))
    assert set(false["pred_row"]) | claiming == set(range(len(pred)))
    # The listed intervals are those rows, with seconds from the first frame (frame 0, 30 fps).
    for df, src, row in ((missed, gt, "gt_row"), (false, pred, "pred_row")):
        ref = src.iloc[df[row].to_numpy()].reset_index(drop=True)
        assert (df[["subject", "video", "onset", "offset", "emotion"]] == ref).all().all()
        assert (df["onset_s"] - df["onset"] / 30).abs().max() < 1e-12
        assert (df["offset_s"] - df["offset"] / 30).abs().max() < 1e-12
    md = (out / "report.md").read_text()
    assert f"### Missed true intervals (FN, {len(missed)})" in md
    assert f"### False predicted intervals (FP, {len(false)})" in md
    for r in missed.itertuples(index=False):
        assert f"| {r.subject} | {r.video} | {r.gt_row} | {r.onset} | {r.offset} |" in md


@pytest.mark.slow
def test_code_versions_are_recorded_and_shown(tiny_bench, tmp_path):
    info = read_run_info(tiny_bench.run_dir)
    versions = info["versions"]
    assert versions["code"] == code_versions()
    assert set(code_versions()) == {"ingest", "align", "features", "priors", "train", "decode"}
    src = versions["source"]
    assert src is None or (len(src["commit"]) == 40 and isinstance(src["dirty"], bool))
    md = (tiny_bench.run_dir / "report" / "report.md").read_text()
    assert "## How this run was made" in md and "### Machine" in md
    for key, v in code_versions().items():
        assert f"| {key} | {v} | {v} |" in md
    assert f"| torch | {info['machine']['torch']} |" in md
    assert f"| fold config hash | {info['fold_config_hash']} |" in md
    assert "differs from the code that made the run" not in md
    # A run made by older code says so.
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_bench.run_dir, run)
    info["versions"]["code"]["train"] = code_versions()["train"] - 1
    (run / "run.json").write_text(json.dumps(info))
    md = build_report(run, max_videos=0).markdown.read_text()
    assert "The code now differs from the code that made the run in: train." in md
    assert f"| train | {code_versions()['train'] - 1} | {code_versions()['train']} |" in md


@pytest.mark.slow
def test_stage_table_when_stages_json_exists(tiny_bench, tmp_path):
    from flows.progress import RunProgress
    from vrme.catalog import STAGES_FILE

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_bench.run_dir, run)
    assert not (run / STAGES_FILE).exists()
    md = build_report(run, max_videos=0).markdown.read_text()
    assert "No stages.json in the run folder" in md and "| stage | status |" not in md

    progress = RunProgress("tiny", ["ingest", "features", "folds", "report"])
    progress.start("ingest")
    progress.finish("ingest", "3 videos")
    progress.start("features", 3, "videos")
    progress.advance("features", 3)
    progress.finish("features", "3 computed")
    progress.start("folds", 3, "folds")
    progress.finish("folds", "2 trained", failed=True)
    progress.write(run / STAGES_FILE)
    stages = json.loads((run / STAGES_FILE).read_text())["stages"]
    md = build_report(run, max_videos=0).markdown.read_text()
    assert "| stage | status | done | started (UTC) | seconds | note |" in md
    table = md.split("### Time and outcome of each stage")[1].split("###")[0]
    lines = [ln for ln in table.splitlines() if ln.startswith(("| ingest |", "| features |",
                                                               "| folds |", "| report |"))]
    assert [ln.split(" | ")[0] for ln in lines] == ["| ingest", "| features", "| folds",
                                                    "| report"]  # the order they ran
    assert lines[1].startswith("| features | done | 3/3 videos | ") and "3 computed" in lines[1]
    assert f"| {stages['features']['seconds']:.1f} |" in lines[1]
    assert lines[2].startswith("| folds | failed | 0/3 folds | ")
    assert lines[3].startswith("| report | pending |") and "recorded before" in lines[3]
    total = sum(st["seconds"] for st in stages.values() if "seconds" in st)
    assert f"| all stages |  |  |  | {total:.1f} |" in md
    (run / STAGES_FILE).write_text("{not json")
    md = build_report(run, max_videos=0).markdown.read_text()
    assert "stages.json is not readable" in md


@pytest.mark.slow
def test_training_section_and_config_appendix(tiny_bench, tmp_path):
    import re

    from vrme.config import load_config
    from vrme.record import run_config

    out = tiny_bench.run_dir / "report"
    md = (out / "report.md").read_text()
    assert "## Per-fold training" in md
    folds = pd.read_parquet(out / "folds.parquet")
    assert {"how", "epochs", "final_mse", "final_ce", "min_loss", "min_loss_epoch", "decode_s",
            "train_hash", "decode_hash"} <= set(folds.columns)
    for r in folds.itertuples(index=False):
        marker = json.loads((tiny_bench.run_dir / "folds" / r.fold / "fold.json").read_text())
        hist = marker["history"]
        assert r.how == marker["how"] == "trained" and r.epochs == len(hist) == 20
        assert r.final_loss == hist[-1]["loss"] and r.final_ce == hist[-1]["ce"]
        assert r.min_loss == min(h["loss"] for h in hist)
        assert f"| {r.fold} | trained | 20 | {hist[-1]['loss']:.4f} |" in md
        assert r.train_hash == marker["train_hash"] and r.train_hash in md
    # The appendix is the run's config, readable by load_config as it is.
    yaml_text = re.search(r"```yaml\n(.*?)\n```", md, re.S).group(1)
    (tmp_path / "c.yaml").write_text(yaml_text)
    again = load_config(tmp_path / "c.yaml").model_dump(mode="json")
    ran = run_config(tiny_bench.run_dir).model_dump(mode="json")
    again.pop("source"), ran.pop("source")
    assert again == ran
    assert "<details><summary>YAML" in (out / "report.html").read_text()


def test_loss_curves_are_paged_and_of_the_stated_size():
    hist = [{"epoch": e, "loss": 1.0 / e, "mse": 0.5 / e, "ce": 2.0 / e, "lr": 1e-3}
            for e in range(1, 6)]
    assert loss_curves_size(1) == loss_curves_size(6) != loss_curves_size(7)
    for n in (1, 7, LOSS_PANELS_PER_PNG):
        data = loss_curves_png([str(i) for i in range(n)], [hist] * n, title="t")
        assert png_size(data) == loss_curves_size(n)
    bad = [dict(h, loss=float("nan")) for h in hist]
    a = loss_curves_png(["1", "2"], [hist, hist])
    b = loss_curves_png(["1", "2"], [hist, bad])
    c = loss_curves_png(["1", "2"], [hist, None], ["trained", "missing"])
    assert len({a, b, c}) == 3 and png_size(c) == loss_curves_size(2)
    flat = [dict(h, loss=0.5 - 0.01 * h["epoch"], mse=0.4, ce=0.6) for h in hist]  # linear axis
    assert png_size(loss_curves_png(["1"], [flat])) == loss_curves_size(1)


def test_score_curve_marks_tp_fp_and_has_a_seconds_axis():
    import numpy as np

    frames = np.arange(100, 340)
    spot = np.abs(np.sin(frames / 15.0))
    gt = pd.DataFrame({"onset": [120], "offset": [130], "emotion": ["negative"]})
    pred = pd.DataFrame({"onset": [121, 200], "offset": [131, 210], "apex": [125, 205],
                         "emotion": ["negative", "positive"], "status": ["TP", "FP"]})
    marked = score_curve_png(frames, spot, gt=gt.assign(status="found"), pred=pred,
                             clock=(100, 30.0))
    both_tp = score_curve_png(frames, spot, gt=gt.assign(status="found"),
                              pred=pred.assign(status="TP"), clock=(100, 30.0))
    no_clock = score_curve_png(frames, spot, gt=gt.assign(status="found"), pred=pred)
    plain = score_curve_png(frames, spot, gt=gt, pred=pred.drop(columns="status"))
    assert len({marked, both_tp, no_clock, plain}) == 4
    assert {png_size(x) for x in (marked, both_tp, no_clock, plain)} == {SCORE_SIZE}
