"""The run report: files, plots, STRS consistency with `vrme strs`, missing folds, the paper
table, and `vrme report --run` rebuilding from run.json alone."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from vrme.plots import (CONFUSION_SIZE, DURATION_SIZE, SCORE_SIZE, SUBJECT_F1_SIZE,
                        png_size)
from vrme.report import _pick_videos, build_report, read_run_info

pytest_plugins = ["tests.bench_fixtures"]


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
    # Original frame numbers: CAS(ME)^3 frames are numbered from 0, 240 per video.
    assert pred["onset"].min() >= 0 and pred["offset"].max() <= 239
    assert rep.complete and rep.html == out / "report.html"


@pytest.mark.slow
def test_plots_are_real_pngs_of_the_expected_size_and_embedded(tiny_bench):
    out = tiny_bench.run_dir / "report"
    expected = {"confusion.png": CONFUSION_SIZE, "subject_f1.png": SUBJECT_F1_SIZE,
                "durations.png": DURATION_SIZE}
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
