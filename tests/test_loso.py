"""Leave-one-subject-out on a synthetic feature-level dataset (METHOD.md sections 7-9)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest

from tests.helpers import model_config
from vrme.config import Config, DecodeConfig
from vrme.errors import DataError
from vrme.schema import MANIFEST_SCHEMA, read_labels, read_manifest, write_table
from vrme.synth.features import make_feature_dataset
from vrme.training.loso import (
    ground_truth_table,
    loso_subjects,
    pool_fold_intervals,
    redecode_run,
    run_loso,
    score_intervals,
)

K = 30


def tiny_cfg(**train) -> Config:
    return model_config("casme3", k=K, **train)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_feature_dataset(tmp_path_factory.mktemp("feat"), subjects=4, videos_per_subject=2,
                                n_frames=400, k=K, mes_per_video=4, macros_per_video=1, seed=0)


@pytest.fixture(scope="module")
def real_run(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run_real")
    t0 = time.perf_counter()
    res = run_loso(tiny_cfg(), dataset.manifest_path, dataset.labels_path, dataset.features_dir,
                   run_dir, progress=False)
    return res, run_dir, time.perf_counter() - t0


def _f(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else x


@pytest.mark.slow
def test_real_model_beats_shuffled_labels(dataset, real_run, tmp_path):
    res, _, seconds = real_run
    shuffled = run_loso(tiny_cfg(shuffle_labels=True), dataset.manifest_path,
                        dataset.labels_path, dataset.features_dir, tmp_path / "shuffled",
                        progress=False)
    o, s = res.official, shuffled.official
    assert o.spot_f1 >= 0.3, o.to_dict()
    assert o.spot_f1 >= _f(s.spot_f1) + 0.2, (o.to_dict(), s.to_dict())
    assert _f(o.strs) >= _f(s.strs) + 0.1, (o.to_dict(), s.to_dict())
    assert _f(res.reference.strs) > _f(shuffled.reference.strs)
    # Scoring uses the real labels in both runs.
    pd.testing.assert_frame_equal(res.ground_truth, shuffled.ground_truth)
    assert seconds < 300


@pytest.mark.slow
def test_run_outputs_pooling_and_reuse(dataset, real_run):
    res, run_dir, _ = real_run
    assert [f.fold for f in res.folds] == ["01", "02", "03", "04"]
    assert len(res.per_fold) == 4 and set(res.per_fold["fold"]) == {"01", "02", "03", "04"}
    pooled = pool_fold_intervals(run_dir)
    pd.testing.assert_frame_equal(pooled.reset_index(drop=True),
                                  res.predictions.reset_index(drop=True), check_dtype=False)
    csv = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "video": str})
    assert len(csv) == len(res.predictions)
    summary = json.loads((run_dir / "loso.json").read_text())
    assert summary["official"]["spot_tp"] == res.official.spot_tp
    assert summary["reference"]["spot_tp"] == res.reference.spot_tp
    assert summary["folds"] == ["01", "02", "03", "04"]
    # Rescoring the pooled table gives the same numbers.
    again = score_intervals(pooled, res.ground_truth)
    assert again["official"].to_dict() == res.official.to_dict()
    # A second run reuses every finished fold.
    t0 = time.perf_counter()
    second = run_loso(tiny_cfg(), dataset.manifest_path, dataset.labels_path, dataset.features_dir,
                      run_dir, progress=False)
    assert all(f.reused for f in second.folds)
    assert second.official.to_dict() == res.official.to_dict()
    assert time.perf_counter() - t0 < 20


@pytest.mark.slow
def test_redecode_reproduces_and_ablates(real_run):
    res, run_dir, _ = real_run
    same = redecode_run(run_dir, DecodeConfig())
    pd.testing.assert_frame_equal(same.reset_index(drop=True),
                                  res.predictions.reset_index(drop=True), check_dtype=False)
    fixed = redecode_run(run_dir, DecodeConfig(interval_strategy=0))
    assert len(fixed) >= 1
    assert not same[["onset", "offset"]].equals(fixed[["onset", "offset"]])
    wide = redecode_run(run_dir, DecodeConfig(interval_strategy=0), k_p=20)
    assert ((wide["offset"] - wide["onset"]) <= 40).all()
    assert ((wide["offset"] - wide["onset"]) == 40).any()
    spotting = redecode_run(run_dir, DecodeConfig(synergy_strategy=2))
    assert set(spotting["emotion"]) <= {"negative", "positive", "surprise", "others"}


@pytest.mark.slow
def test_named_fold_subset(dataset, tmp_path):
    res = run_loso(tiny_cfg(epochs=2), dataset.manifest_path, dataset.labels_path,
                   dataset.features_dir, tmp_path / "run", folds=["03"], progress=False)
    assert [f.fold for f in res.folds] == ["03"]
    assert set(res.ground_truth["subject"]) == {"03"}
    assert set(res.predictions["subject"]) <= {"03"}
    assert [p.name for p in (tmp_path / "run" / "folds").iterdir()] == ["03"]
    with pytest.raises(DataError, match="unknown fold"):
        run_loso(tiny_cfg(), dataset.manifest_path, dataset.labels_path, dataset.features_dir,
                 tmp_path / "run", folds=["77"], progress=False)


def test_folds_are_subjects_with_micro_expressions(dataset, tmp_path):
    manifest = read_manifest(dataset.manifest_path)
    extra = manifest.iloc[[0]].copy()
    extra["subject"], extra["video"] = "05", "05_01"
    write_table(pd.concat([manifest, extra]), tmp_path / "m.parquet", MANIFEST_SCHEMA)
    assert loso_subjects(tmp_path / "m.parquet", dataset.labels_path) == ["01", "02", "03", "04"]
    gt = ground_truth_table(dataset.labels_path, ["02"])
    labels = read_labels(dataset.labels_path)
    want = labels[(labels["subject"] == "02") & (labels["type"] == "micro")]
    assert len(gt) == len(want) and list(gt.columns) == ["subject", "video", "onset", "offset",
                                                         "emotion"]
    assert (gt["onset"].to_numpy() == want["onset"].to_numpy()).all()


def test_pooling_refuses_an_unfinished_fold(tmp_path):
    (tmp_path / "folds" / "01").mkdir(parents=True)
    with pytest.raises(DataError, match="has not finished"):
        pool_fold_intervals(tmp_path, ["01"])
    assert len(pool_fold_intervals(tmp_path)) == 0
