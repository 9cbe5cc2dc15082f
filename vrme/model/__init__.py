"""The multitask slow-fast network and its building blocks (METHOD.md section 6).

``build_model(cfg.model, k)`` is the one entry point the training code needs; the model is
built on the CPU and moved by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vrme.config import ConfigError
from vrme.model.backbones import Block, DropPath, drop_path_rates
from vrme.model.fused import fused_scan_available, fused_scan_error
from vrme.model.mamba import Mamba
from vrme.model.network import LateralConnection, SlowFastNet
from vrme.model.scan import cuda_scan_available, selective_scan, selective_scan_ref

if TYPE_CHECKING:
    from vrme.config import ModelConfig

__all__ = [
    "Block",
    "DropPath",
    "LateralConnection",
    "Mamba",
    "SlowFastNet",
    "build_model",
    "cuda_scan_available",
    "drop_path_rates",
    "fused_scan_available",
    "fused_scan_error",
    "selective_scan",
    "selective_scan_ref",
    "set_micro_batch",
]


def build_model(cfg: ModelConfig, k: int) -> SlowFastNet:
    """Build the network described by ``cfg`` (the config's ``model`` section) for windows of
    ``k`` frames (after skipping), on the CPU, with freshly initialised weights.

    Forward: ``x`` (batch, cfg.in_channels, k) float32 -> ``(spot, logits)`` with ``spot``
    (batch, k) in [0, 1] and ``logits`` (batch, k, cfg.n_classes). Weights are drawn from
    torch's global generator, so a fixed ``torch.manual_seed`` gives identical models.
    Raises :class:`vrme.config.ConfigError` for settings that cannot work here.
    """
    if k < 2:
        raise ConfigError(f"features.k: the network needs windows of at least 2 frames, got {k}")
    if cfg.scan == "cuda" and not cuda_scan_available():
        raise ConfigError(
            "model.scan: 'cuda' needs the mamba_ssm package (its CUDA selective-scan kernels), "
            "which is not importable here; set model.scan to 'auto' or 'torch'"
        )
    if cfg.scan == "fused" and cfg.backbone == "mamba" and not fused_scan_available():
        raise ConfigError(f"model.scan: 'fused' needs the fused CPU kernel, which is not available "
                          f"here ({fused_scan_error()}); set model.scan to 'auto' or 'torch'")
    if cfg.backbone == "transformer":
        for name, ch in (("fast_channels", cfg.fast_channels),
                         ("slow_channels", cfg.slow_channels)):
            if ch % cfg.n_heads:
                raise ConfigError(
                    f"model.n_heads: {cfg.n_heads} heads must divide model.{name} ({ch})"
                )
    return SlowFastNet(
        backbone=cfg.backbone,
        in_channels=cfg.in_channels,
        fast_channels=cfg.fast_channels,
        slow_channels=cfg.slow_channels,
        stages=cfg.stages,
        blocks_per_stage=cfg.blocks_per_stage,
        d_state=cfg.d_state,
        d_conv=cfg.d_conv,
        expand=cfg.expand,
        dt_rank=cfg.dt_rank,
        drop_path=cfg.drop_path,
        n_heads=cfg.n_heads,
        n_classes=cfg.n_classes,
        scan=cfg.scan,
        init=cfg.init,
    )


def set_micro_batch(model: object, size: int | None) -> None:
    """Make ``model`` (a :class:`SlowFastNet`) run its temporal blocks ``size`` windows at a
    time in training steps (None: the whole batch); see :mod:`vrme.model.network`."""
    if not isinstance(model, SlowFastNet):
        raise ConfigError(f"train.micro_batch: {type(model).__name__} does not support micro-"
                          "batches (only vrme's SlowFastNet does); set it to null")
    model.micro_batch = size
