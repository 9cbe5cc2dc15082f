"""train.micro_batch: a training step run a few windows at a time gives the whole batch's
gradients (the model-level proof in float64 is in test_model.py; here, the wiring through
fit() and the config)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import model_config
from vrme.config import Config, ConfigError
from vrme.model import build_model
from vrme.training.priors import Priors
from vrme.training.train import TrainingWindows, fit, fold_config_hash

K = 30


def _cfg(**train) -> Config:
    """The tiny training config with drop-path active (3 blocks per stage: rates 0, 0, 0.3)."""
    cfg = model_config("samm_lv", k=K, frame_skip=2,
                       **{"epochs": 2, "batch_size": 12, "threads": 1, **train})
    return cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"blocks_per_stage": 3, "drop_path": 0.6})})


def _data(n: int = 30) -> TrainingWindows:
    rng = np.random.default_rng(0)
    return TrainingWindows(x=rng.standard_normal((n, 36, K)).astype(np.float32),
                           spot=rng.random((n, K)).astype(np.float32),
                           cls=rng.integers(0, 5, (n, K)).astype(np.int64))


def _priors() -> Priors:
    return Priors(k_p=4, class_weights=[1.0, 2.0, 1.5, 1.0, 0.2], class_counts=[1, 1, 1, 1, 1],
                  median_duration=4, n_events=5, subjects=["1"], scope="fold", frame_skip=1,
                  neutral_weight_factor=6.0, synergy_strategy=1)


def _fit(cfg: Config):
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, K)
    history = fit(model, _data(), _priors(), cfg.train, torch.device("cpu"), progress=False)
    return model, history


def test_fit_with_micro_batches_follows_the_unchunked_run():
    """Two epochs of 3 steps (the last one partial); float32, so equal up to float rounding."""
    m0, h0 = _fit(_cfg())
    m1, h1 = _fit(_cfg(micro_batch=5))
    assert m1.micro_batch == 5 and m0.micro_batch is None
    for a, b in zip(h0, h1):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # The trained networks agree in training mode. (Not every weight does, nor the eval-mode
    # outputs as closely: Adam turns the rounding noise in the exactly-zero gradient of a bias
    # before a BatchNorm into steps of size lr; the BatchNorm's batch statistics cancel it, its
    # running statistics only in part. Any float difference, another thread count included,
    # does the same.)
    x = torch.from_numpy(_data().x)
    outs = []
    for m in (m0, m1):
        torch.manual_seed(7)  # the same drop-path draws
        with torch.no_grad():
            outs.append(m.train()(x))
    (s0, l0), (s1, l1) = outs
    assert (s0 - s1).abs().max().item() < 1e-5
    assert (l0 - l1).abs().max().item() < 1e-5 * l0.abs().max().item()
    torch.manual_seed(_cfg().train.seed)
    untrained = build_model(_cfg().model, K)
    torch.manual_seed(7)
    with torch.no_grad():
        assert (untrained.train()(x)[0] - s0).abs().max().item() > 1e-2  # training did something


def test_micro_batch_changes_the_fold_hash_and_needs_the_slow_fast_net():
    assert fold_config_hash(_cfg()) != fold_config_hash(_cfg(micro_batch=4))
    with pytest.raises(ConfigError, match="micro_batch"):
        fit(torch.nn.Linear(2, 2), _data(), _priors(), _cfg(micro_batch=4).train,
            torch.device("cpu"), progress=False)
