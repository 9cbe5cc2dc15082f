"""Training one fold: outputs, determinism, reload (METHOD.md section 7)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import model_config
from vrme.config import Config
from vrme.errors import DataError
from vrme.inference.scores import predict_video
from vrme.schema import read_video_features
from vrme.synth.features import make_feature_dataset
from vrme.training.priors import Priors
from vrme.training.train import (
    LOGIT_COLUMNS,
    SCORE_COLUMNS,
    fold_config_hash,
    fold_is_complete,
    load_fold_model,
    read_scores,
    resolve_device,
    train_fold,
)

K = 30
SKIP = 2


def tiny_cfg(**train) -> Config:
    return model_config("samm_lv", k=K, frame_skip=SKIP, **{"epochs": 3, **train})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_feature_dataset(tmp_path_factory.mktemp("feat"), subjects=3, videos_per_subject=1,
                                n_frames=240, k=K, mes_per_video=3, macros_per_video=1,
                                first_frame=5, frame_skip=SKIP, seed=3)


@pytest.fixture(scope="module")
def fold(dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("fold") / "01"
    res = train_fold(tiny_cfg(), "01", dataset.manifest_path, dataset.labels_path,
                     dataset.features_dir, d, progress=False)
    return res, d


def test_fold_writes_every_output(fold, dataset):
    res, d = fold
    for name in ("model.pt", "priors.json", "scores.parquet", "intervals.csv", "fold.json"):
        assert (d / name).is_file(), name
    marker = json.loads((d / "fold.json").read_text())
    assert marker["status"] == "complete" and marker["fold"] == "01"
    assert marker["config_hash"] == fold_config_hash(tiny_cfg()) == res.config_hash
    assert len(marker["history"]) == 3 and marker["train_subjects"] == ["02", "03"]
    assert set(marker["timings"]) >= {"train_s", "predict_s", "total_s"}
    assert fold_is_complete(d, res.config_hash, res.input_fingerprint)
    assert not fold_is_complete(d, fold_config_hash(tiny_cfg(epochs=4)))
    assert Priors.load(d / "priors.json") == res.priors
    assert res.priors.subjects == ["02", "03"]


def test_scores_cover_the_test_video_in_original_numbers(fold, dataset):
    _, d = fold
    scores, meta = read_scores(d)
    assert list(scores.columns) == SCORE_COLUMNS
    feats = read_video_features(dataset.features_dir / "01" / "01_01.parquet")
    n_cov = (len(feats.values) + 1) * K // 2
    assert len(scores) == n_cov
    assert list(scores["index"]) == list(range(n_cov))
    assert list(scores["frame"]) == [5 + SKIP * i for i in range(n_cov)]
    assert scores["spot"].between(0, 1).all()
    # k_p belongs to decoding (priors.json), not to the trained scores
    assert Priors.load(d / "priors.json").k_p >= 1 and meta["fold"] == "01"
    assert "k_p" not in meta
    iv = pd.read_csv(d / "intervals.csv", dtype={"subject": str, "video": str})
    assert list(iv.columns) == ["subject", "video", "onset", "apex", "offset", "emotion", "score"]
    if len(iv):
        assert ((iv["onset"] - 5) % SKIP == 0).all()
        assert set(iv["subject"]) == {"01"}


def test_model_reloads_and_reproduces_the_scores(fold, dataset):
    _, d = fold
    model, priors, k = load_fold_model(d)
    assert k == K and priors == Priors.load(d / "priors.json")
    feats = read_video_features(dataset.features_dir / "01" / "01_01.parquet")
    spot, logits = predict_video(model, feats, torch.device("cpu"))
    scores, _ = read_scores(d)
    np.testing.assert_allclose(spot, scores["spot"].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits, scores[LOGIT_COLUMNS].to_numpy(), rtol=0, atol=1e-5)


def test_same_seed_gives_identical_scores(fold, dataset, tmp_path):
    _, d = fold
    train_fold(tiny_cfg(), "01", dataset.manifest_path, dataset.labels_path,
               dataset.features_dir, tmp_path / "again", progress=False)
    a, _ = read_scores(d)
    b, _ = read_scores(tmp_path / "again")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (d / "intervals.csv").read_text() == (tmp_path / "again" / "intervals.csv").read_text()
    train_fold(tiny_cfg(seed=101), "01", dataset.manifest_path, dataset.labels_path,
               dataset.features_dir, tmp_path / "other", progress=False)
    c, _ = read_scores(tmp_path / "other")
    assert not np.array_equal(a["spot"].to_numpy(), c["spot"].to_numpy())


def test_training_lowers_the_loss(dataset, tmp_path):
    res = train_fold(tiny_cfg(epochs=6), "02", dataset.manifest_path, dataset.labels_path,
                     dataset.features_dir, tmp_path / "f", progress=True)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]
    assert res.n_train_windows == 2 * res.info["n_me_windows"]  # ratio 1


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="no CUDA device"):
            resolve_device("cuda")


def test_missing_feature_file_is_reported(dataset, tmp_path):
    import shutil

    feats = tmp_path / "features"
    shutil.copytree(dataset.features_dir, feats)
    (feats / "01" / "01_01.parquet").unlink()
    with pytest.raises(DataError, match="feature file missing"):
        train_fold(tiny_cfg(), "01", dataset.manifest_path, dataset.labels_path, feats,
                   tmp_path / "f", progress=False)
    assert not (tmp_path / "f" / "fold.json").exists()


def test_unknown_fold_is_reported(dataset, tmp_path):
    with pytest.raises(DataError, match="no video in the manifest"):
        train_fold(tiny_cfg(), "99", dataset.manifest_path, dataset.labels_path,
                   dataset.features_dir, tmp_path / "f", progress=False)


def _fold(cfg, dataset, fold_dir, models):
    return train_fold(cfg, "01", dataset.manifest_path, dataset.labels_path,
                      dataset.features_dir, fold_dir, progress=False, models_dir=models)


def test_configs_a_b_a_reuse_training_and_give_each_its_own_numbers(dataset, tmp_path):
    """Decoding settings change intervals only: A, B, A trains once, decodes each time, and
    every run gets exactly its own config's intervals."""
    from vrme.training.train import models_dir as default_models_dir

    a = tiny_cfg()
    b = a.model_copy(deep=True)
    b.decode.p = 0.8
    assert default_models_dir(a) == default_models_dir(b)  # one training hash
    models = tmp_path / "models"
    fold_dir = tmp_path / "run" / "01"
    first = _fold(a, dataset, fold_dir, models)
    iv_a = (fold_dir / "intervals.csv").read_text()
    assert first.how == "trained" and (models / "01" / "train.json").is_file()
    assert os.path.samefile(models / "01" / "model.pt", fold_dir / "model.pt")
    second = _fold(b, dataset, fold_dir, models)
    assert second.how == "decoded"
    train_fold(b, "01", dataset.manifest_path, dataset.labels_path,
                       dataset.features_dir, tmp_path / "alone", progress=False)
    assert (fold_dir / "intervals.csv").read_text() == (tmp_path / "alone" /
                                                        "intervals.csv").read_text()
    third = _fold(a, dataset, fold_dir, models)
    assert third.how == "decoded" and (fold_dir / "intervals.csv").read_text() == iv_a
    assert _fold(a, dataset, fold_dir, models).how == "cached"
    assert fold_is_complete(fold_dir, fold_config_hash(a)) and not fold_is_complete(
        fold_dir, fold_config_hash(b))


def test_code_versions_invalidate_exactly_their_outputs(dataset, tmp_path, monkeypatch):
    import vrme.decoding.decode
    import vrme.training.train

    cfg = tiny_cfg()
    models = tmp_path / "models"
    fold_dir = tmp_path / "run" / "01"
    assert _fold(cfg, dataset, fold_dir, models).how == "trained"
    decode_mod = vrme.decoding.decode
    monkeypatch.setattr(decode_mod, "DECODE_VERSION", decode_mod.DECODE_VERSION + 1)
    assert _fold(cfg, dataset, fold_dir, models).how == "decoded"  # no training
    assert _fold(cfg, dataset, fold_dir, models).how == "cached"
    before = vrme.training.train.train_hash(cfg)
    monkeypatch.setattr(vrme.training.train, "TRAIN_VERSION", vrme.training.train.TRAIN_VERSION + 1)
    assert vrme.training.train.train_hash(cfg) != before
    again = _fold(cfg, dataset, fold_dir, models)  # the record names the old training hash
    assert again.how == "trained"
