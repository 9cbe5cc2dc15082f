"""Priors per fold (METHOD.md section 5), including the no-leak guarantee."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from tests.helpers import tiny_config
from vrme.config import Config, PriorConfig
from vrme.errors import DataError
from vrme.schema import LABELS_SCHEMA, read_labels, write_table
from vrme.synth.features import make_feature_dataset
from vrme.training.priors import (
    Priors,
    balanced_class_weights,
    duration_prior,
    estimate_priors,
    median_duration,
)
from vrme.training.train import plan_fold


def make_cfg(**priors) -> Config:
    return tiny_config("casme3", k=30, train={"ratio": 1.0, "seed": 3}, priors=priors)


def test_median_is_the_reference_upper_median():
    assert median_duration([4, 1, 3, 2]) == 3
    assert median_duration([5, 1, 3]) == 3
    assert duration_prior([10, 12, 14]) == int((12 + 1) / 2) == 6
    assert duration_prior([0, 0, 0]) == 1
    with pytest.raises(DataError):
        median_duration([])


def test_balanced_weights_match_scikit_learn_then_neutral_factor():
    counts = np.array([30, 10, 20, 5, 400])
    y = np.repeat(np.arange(5), counts)
    want = compute_class_weight("balanced", classes=np.arange(5), y=y)
    got = balanced_class_weights(counts, 6.0, synergy_strategy=1)
    np.testing.assert_allclose(got[:4], want[:4])
    assert got[4] == pytest.approx(want[4] * 6)
    assert balanced_class_weights(counts, 6.0, synergy_strategy=0)[4] == 0.0
    np.testing.assert_allclose(balanced_class_weights(counts, 6.0, 2)[:4], want[:4])
    # A class with no frame gets weight 0.
    w = balanced_class_weights([10, 0, 10, 10, 70], 6.0, 1)
    assert w[1] == 0.0 and w[0] == pytest.approx(100 / (5 * 10))


def test_priors_round_trip(tmp_path):
    p = estimate_priors([10, 12, 14], [1, 2, 3, 4, 90], PriorConfig(), synergy_strategy=1,
                        subjects=["2", "1"], frame_skip=7)
    assert p.k_p == 6 and p.median_duration == 12 and p.subjects == ["1", "2"]
    p.save(tmp_path / "priors.json")
    assert Priors.load(tmp_path / "priors.json") == p
    fixed = estimate_priors([10, 12, 14], [1, 1, 1, 1, 1], PriorConfig(k_p=3), synergy_strategy=1,
                            subjects=["1"], frame_skip=1)
    assert fixed.k_p == 3 and fixed.median_duration == 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_feature_dataset(tmp_path_factory.mktemp("feat"), subjects=4, videos_per_subject=2,
                                n_frames=300, k=30, mes_per_video=3, macros_per_video=0, seed=11)


def _distort_subject(labels, subject: str):
    """Make the subject's micro-expressions long, relabel their emotions, and add more."""
    lab = labels.copy()
    mine = (lab["subject"] == subject) & (lab["type"] == "micro")
    lab.loc[mine, "offset"] = lab.loc[mine, "onset"] + 120
    lab.loc[mine, "emotion"] = "others"
    extra = lab[mine].copy()
    extra["onset"] = extra["onset"] + 5
    extra["offset"] = extra["offset"] + 5
    import pandas as pd

    return pd.concat([lab, extra, extra, extra], ignore_index=True)


def test_held_out_labels_change_nothing_in_the_fold_priors(dataset, tmp_path):
    labels = read_labels(dataset.labels_path)
    changed = _distort_subject(labels, "01")
    write_table(changed, tmp_path / "labels.parquet", LABELS_SCHEMA)
    cfg = make_cfg(scope="fold")
    before = plan_fold(cfg, "01", dataset.manifest_path, labels, dataset.features_dir)
    after = plan_fold(cfg, "01", dataset.manifest_path, tmp_path / "labels.parquet",
                      dataset.features_dir)
    assert before.priors == after.priors
    assert before.priors.to_dict() == after.priors.to_dict()
    assert "01" not in before.priors.subjects
    assert all((a == b).all() for a, b in zip(before.selection.windows, after.selection.windows))
    assert before.input_fingerprint == after.input_fingerprint
    # Another fold does see the change (the labels are its training data).
    other = plan_fold(cfg, "02", dataset.manifest_path, labels, dataset.features_dir)
    other_after = plan_fold(cfg, "02", dataset.manifest_path, changed, dataset.features_dir)
    assert other.priors.k_p != other_after.priors.k_p


def test_global_scope_leaks_the_held_out_labels(dataset):
    labels = read_labels(dataset.labels_path)
    changed = _distort_subject(labels, "01")
    cfg = make_cfg(scope="global")
    before = plan_fold(cfg, "01", dataset.manifest_path, labels, dataset.features_dir)
    after = plan_fold(cfg, "01", dataset.manifest_path, changed, dataset.features_dir)
    assert "01" in before.priors.subjects and before.priors.scope == "global"
    assert after.priors.k_p > before.priors.k_p
    # The class weights come from training windows in both scopes (as in the reference).
    assert before.priors.class_weights == after.priors.class_weights


def test_synergy_zero_zeroes_the_neutral_weight(dataset):
    cfg = make_cfg()
    cfg.decode.synergy_strategy = 0
    plan = plan_fold(cfg, "02", dataset.manifest_path, dataset.labels_path, dataset.features_dir)
    assert plan.priors.class_weights[4] == 0.0
    assert all(w > 0 for w, c in zip(plan.priors.class_weights[:4], plan.priors.class_counts) if c)
