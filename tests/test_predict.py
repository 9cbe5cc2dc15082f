"""Final model, ensembles of fold models, `vrme predict` (MEGC submission) and `vrme spot`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vrme.errors import DataError
from vrme.inference.predict import (
    check_megc_csv,
    frame_skip_for,
    guess_fps,
    megc_table,
    write_megc_csv,
)
from vrme.report.plots import SCORE_SIZE, png_size


def test_frame_skip_rule_matches_the_datasets():
    casme_rate, samm_rate = 30.0, 200.0 / 7
    assert frame_skip_for(200, casme_rate) == 7  # SAMM video, CAS(ME)^3-trained model
    assert frame_skip_for(30, casme_rate) == 1
    assert frame_skip_for(200, samm_rate) == 7
    assert frame_skip_for(30, samm_rate) == 1  # CAS video, SAMM-trained model
    assert frame_skip_for(25, casme_rate) == 1 and frame_skip_for(100, casme_rate) == 3
    with pytest.raises(DataError):
        frame_skip_for(0, casme_rate)


def test_guess_fps_from_container_or_path():
    row = dict(source="frames", path="SAMM_Test/SAMM_longvideos/001_1", video="001_1", fps=30)
    assert guess_fps(row, 30) == 200
    assert guess_fps(dict(source="frames", path="x/y/007_3", video="007_3", fps=30), 30) == 200
    assert guess_fps(dict(source="frames", path="CAS_Test/data/spNO.1/a/color", video="a",
                          fps=30), 200 / 7) == 30
    assert guess_fps(dict(source="frames", path="clips/a", video="a", fps=30), 25.0) == 25.0
    assert guess_fps(dict(source="video", path="samm/v.avi", video="v", fps=60.0), 30) == 60.0


def test_megc_table_drops_others_and_writes_integers(tmp_path):
    iv = pd.DataFrame({"subject": ["2", "1", "1", "1"], "video": ["a", "b", "a", "a"],
                       "onset": [5, 7, 30, 3], "apex": [6, 8, 31, 4], "offset": [9, 12, 40, 8],
                       "emotion": ["surprise", "others", "negative", "neutral"],
                       "score": [0.5, 0.6, 0.7, 0.8]})
    t = megc_table(iv)
    assert t.to_dict(orient="list") == {"subject": ["1", "2"], "video": ["a", "a"],
                                        "onset": [30, 5], "offset": [40, 9],
                                        "emotion": ["negative", "surprise"]}
    p = write_megc_csv(iv, tmp_path / "sub.csv")
    assert p.read_text().splitlines() == ["subject,video,onset,offset,emotion",
                                          "1,a,30,40,negative", "2,a,5,9,surprise"]
    assert len(check_megc_csv(p)) == 2
    for bad in ("subject,video,onset,offset\n1,a,3,4\n",
                "subject,video,onset,offset,emotion\n1,a,3.5,4,negative\n",
                "subject,video,onset,offset,emotion\n1,a,3,4,others\n",
                "subject,video,onset,offset,emotion\n1,a,9,4,negative\n"):
        (tmp_path / "bad.csv").write_text(bad)
        with pytest.raises(DataError, match="bad.csv: line"):
            check_megc_csv(tmp_path / "bad.csv")


@pytest.mark.slow
def test_final_model_trains_on_all_subjects_and_loads_like_a_fold(tiny_bench,
                                                                   final_model):
    from vrme.schema import read_labels
    from vrme.training.final import read_model_info, train_final
    from vrme.training.priors import duration_prior
    from vrme.training.train import load_fold_model

    info = read_model_info(final_model)
    assert info["kind"] == "final" and info["train_subjects"] == ["1", "2", "3"]
    assert info["k"] == 16 and info["config"]["features"]["k"] == 16
    assert info["dataset"] == {"name": "tiny", "layout": "casme3", "fps": 30.0, "frame_skip": 1}
    model, priors, k = load_fold_model(final_model)
    assert k == 16 and priors.scope == "all" and priors.subjects == ["1", "2", "3"]
    labels = read_labels(tiny_bench.cfg.ingest_dir / "labels.parquet")
    micro = labels[labels["type"] == "micro"]
    assert priors.k_p == duration_prior((micro["offset"] - micro["onset"]).to_numpy()) == \
        info["k_p"]
    mtime = (final_model / "model.pt").stat().st_mtime_ns
    assert train_final(tiny_bench.cfg, progress=False) == final_model  # reused, not retrained
    assert (final_model / "model.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_fold_ensemble_averages_its_members(tiny_bench):
    from vrme.features.flow import feature_path
    from vrme.inference.predict import load_models
    from vrme.inference.scores import predict_video
    from vrme.schema import read_video_features

    ens = load_models(tiny_bench.run_dir)
    assert ens.kind == "folds" and len(ens.models) == 3 and ens.k == 16
    feats = read_video_features(feature_path(tiny_bench.cfg, "1", "a"))
    spot, logits = ens.predict(feats)
    members = [predict_video(m, feats, "cpu") for m in ens.models]
    np.testing.assert_allclose(spot, np.mean([s for s, _ in members], axis=0), atol=1e-6)
    np.testing.assert_allclose(logits, np.mean([z for _, z in members], axis=0), atol=1e-5)
    assert not np.allclose(members[0][0], members[1][0])  # really different models


@pytest.mark.slow
def test_vrme_spot_finds_inserted_mes_in_an_unseen_video(tiny_bench, final_model,
                                                         spec_kw, tmp_path):
    from flows.cli import app
    from vrme.synth.spec import SynthSpec
    from vrme.synth.video import render_video_file

    # Subject 4 was not in the training data: a new face position, tilt and lighting.
    spec = SynthSpec(**{**spec_kw, "subjects": 4})
    events = render_video_file(spec, tmp_path / "unseen.avi", subject=4, video=1)
    mes = events[events["type"] == "micro"].reset_index(drop=True)
    assert len(mes) >= 2
    png = tmp_path / "curve.png"
    res = CliRunner().invoke(app, ["spot", str(tmp_path / "unseen.avi"), "--model",
                                   str(final_model), "--plot", str(png), "--json",
                                   "--cache", str(tmp_path / "cache"), "--workers", "2"])
    assert res.exit_code == 0, res.output
    found = pd.DataFrame(json.loads(res.stdout.strip().splitlines()[-1]))
    assert png_size(png.read_bytes()) == SCORE_SIZE
    k_p = json.loads((final_model / "model.json").read_text())["k_p"]
    hits = 0
    for me in mes.itertuples(index=False):
        for iv in found.itertuples(index=False):
            inter = min(me.offset, iv.offset) - max(me.onset, iv.onset) + 1
            union = (me.offset - me.onset + 1) + (iv.offset - iv.onset + 1) - max(inter, 0)
            if max(inter, 0) / union >= 0.5 or abs(iv.apex - me.apex) <= k_p:
                hits += 1
                break
    print(f"vrme spot on an unseen subject: {hits} of {len(mes)} inserted MEs found, "
          f"{len(found)} intervals predicted")
    assert hits >= 1, (mes[["onset", "apex", "offset", "emotion"]], found)
    # The table form prints the same intervals.
    res = CliRunner().invoke(app, ["spot", str(tmp_path / "unseen.avi"), "--model",
                                   str(final_model), "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0 and "micro-expression" in res.stdout


@pytest.mark.slow
def test_vrme_predict_writes_a_valid_megc_submission(tiny_bench, spec_kw, tmp_path):
    from flows.cli import app
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec

    root = tmp_path / "megc"
    generate_dataset(SynthSpec(**{**spec_kw, "subjects": 1, "seconds": 5, "seed": 11}),
                     root / "CAS_Test", progress=False)
    generate_dataset(SynthSpec(layout="samm-lv", subjects=1, videos=1, seconds=3, fps=200,
                               width=320, height=240, mes_per_video=2, macros_per_video=0,
                               seed=12), root / "SAMM_Test", progress=False)
    out = tmp_path / "submission.csv"
    res = CliRunner().invoke(app, ["predict", "--model", str(tiny_bench.run_dir), "--root",
                                   str(root), "--out", str(out), "--cache",
                                   str(tmp_path / "cache"), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    sub = check_megc_csv(out)  # columns, integer frames, no 'others'
    every = pd.read_csv(tmp_path / "submission_intervals.csv", dtype={"subject": str})
    assert set(every["subject"]) <= {"1", "001"} and len(every) >= 1
    assert len(sub) == int(every["emotion"].isin(["negative", "positive", "surprise"]).sum())
    samm = every[every["subject"] == "001"]
    cas = every[every["subject"] == "1"]
    # SAMM frames are numbered from 1 and read every 7th (200 fps -> skip 7 for a 30 fps model).
    assert ((samm["onset"] - 1) % 7 == 0).all() and samm["offset"].max() <= 600
    assert cas["offset"].max() <= 149
    feats = list((tmp_path / "cache" / "features" / "predict").glob("*/001/001_1.parquet"))
    assert len(feats) == 1
    from vrme.schema import read_video_features

    assert read_video_features(feats[0]).frame_skip == 7
    # `vrme spot` on one of those videos uses the features `vrme predict` cached: nothing is
    # computed again (no new file, none rewritten).
    cache = tmp_path / "cache"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}
    color = next((root / "CAS_Test").rglob("color"))
    res = CliRunner().invoke(app, ["spot", str(color), "--model", str(tiny_bench.run_dir),
                                   "--cache", str(cache), "--json"])
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")} == before


@pytest.mark.slow
def test_vrme_predict_with_the_samm_test_decode_mode(tiny_bench, tmp_path):
    from flows.cli import app
    from vrme.inference.predict import load_models, predict_videos, prediction_decode, scan_videos
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec
    from vrme.training.train import decode_scores_table

    root = tmp_path / "megc"
    generate_dataset(SynthSpec(layout="samm-lv", subjects=2, videos=1, seconds=3, fps=200,
                               width=320, height=240, mes_per_video=2, macros_per_video=0,
                               seed=21), root / "SAMM_Test", progress=False)
    out, cache = tmp_path / "samm.csv", tmp_path / "cache"
    args = ["predict", "--model", str(tiny_bench.run_dir), "--root", str(root), "--out",
            str(out), "--cache", str(cache), "--workers", "2"]
    res = CliRunner().invoke(app, args + ["--decode-mode", "samm_test"])
    assert res.exit_code == 0, res.output
    assert "decode samm_test, p 0.65, k_p 6" in " ".join(res.output.split())  # table title
    sub = check_megc_csv(out)
    every = pd.read_csv(tmp_path / "samm_intervals.csv", dtype={"subject": str, "video": str})
    assert len(every) >= 1 and set(every["subject"]) <= {"001", "002"}
    assert len(sub) == int(every["emotion"].isin(["negative", "positive", "surprise"]).sum())
    assert ((every["onset"] - 1) % 7 == 0).all() and ((every["offset"] - 1) % 7 == 0).all()

    # The CSV holds what the library's samm_test decoding gives on the ensemble's outputs,
    # which here differs from the model's own (loso) decoding of the same outputs.
    ens = load_models(tiny_bench.run_dir)
    manifest, _ = scan_videos(root, ens)
    dec = prediction_decode(ens.cfg, "samm_test")
    pred = predict_videos(ens, manifest, root, cache_dir=cache, decode=dec, progress=False)
    assert pred.k_p == 6 and ens.k_p != 6
    pd.testing.assert_frame_equal(
        every, pred.intervals.astype({"subject": str, "video": str}), check_dtype=False)
    loso = decode_scores_table(pred.scores, ens.k_p, ens.cfg.decode)
    assert not loso[["onset", "offset"]].equals(every[["onset", "offset"]])

    # A decode key changes the decoding; other keys and a mode given twice are refused.
    res = CliRunner().invoke(app, args + ["--decode-mode", "samm_test",
                                          "--set", "decode.samm_test.k_p=null"])
    assert res.exit_code == 0, res.output
    assert f"decode samm_test, p 0.65, k_p {ens.k_p}" in " ".join(res.output.split())
    for bad, msg in ((["--set", "model.backbone=gru"], "decode.* keys only"),
                     (["--decode-mode", "samm_test", "--set", "decode.mode=loso"],
                      "give the mode once"),
                     (["--decode-mode", "sam"], "decode.mode")):
        res = CliRunner().invoke(app, args + bad)
        assert res.exit_code == 2 and msg in res.output, res.output


def test_predict_and_spot_name_a_video_alike(tmp_path):
    """One rule for a video's subject, name and frame rate, whether `vrme predict` finds it
    under a root or `vrme spot` is given it alone: the feature cache path is the same."""
    import cv2

    from tests.helpers import videos_config
    from vrme.features.flow import feature_path
    from vrme.inference.predict import (
        Ensemble,
        feature_config,
        frame_skip_for,
        scan_videos,
        single_video_manifest,
    )

    root = tmp_path / "megc"
    frame = np.full((48, 64), 128, np.uint8)
    folders = [root / "CAS_Test" / "data" / "spNO.28" / "a" / "color",
               root / "SAMM_Test" / "SAMM_longvideos" / "006_1", root / "clips" / "x"]
    for f in folders:
        f.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(f / f"{i + 1}.jpg"), frame)
    clip = root / "films" / "take.avi"
    clip.parent.mkdir()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48),
                             isColor=False)
    for _ in range(3):
        writer.write(frame)
    writer.release()
    cfg = videos_config(root, tmp_path / "work", k=16)
    ens = Ensemble(models=[], priors=[], cfg=cfg, k=16, sources=[], kind="final")
    scanned, _ = scan_videos(root, ens)
    by_path = {str(root / p): r for p, r in zip(scanned["path"], scanned.to_dict("records"))}
    assert sorted(zip(scanned["subject"], scanned["video"])) == [
        ("006", "006_1"), ("28", "a"), ("clips", "x"), ("films", "take")]
    for path in folders + [clip]:
        one, one_root = single_video_manifest(path, ens)
        r, s = one.iloc[0].to_dict(), by_path[str(path)]
        assert (r["subject"], r["video"], r["fps"]) == (s["subject"], s["video"], s["fps"])
        skip = frame_skip_for(r["fps"], ens.train_rate)
        a = feature_config(cfg, skip, one_root, tmp_path / "cache")
        b = feature_config(cfg, skip, root, tmp_path / "cache")
        assert feature_path(a, r["subject"], r["video"]) == feature_path(b, s["subject"],
                                                                       s["video"])
    assert by_path[str(folders[0])]["fps"] == 30 and by_path[str(folders[1])]["fps"] == 200
