"""The Mamba block (selective state-space layer) with ``mamba_ssm``'s layer layout and defaults.

``in_proj -> causal depthwise conv1d -> SiLU -> x_proj to (dt, B, C) -> dt_proj + softplus ->
selective scan (A = -exp(A_log), D skip) -> gate with SiLU(z) -> out_proj``. Sequences are
``(batch, time, d_model)``. Parameter names and shapes follow
``mamba_ssm.modules.mamba_simple.Mamba`` so state dicts line up.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vrme.model.fused import fused_scan_available, fused_scan_error, fused_scan_supports
from vrme.model.scan import ScanImpl, cuda_scan_available, selective_scan

log = logging.getLogger(__name__)

ScanChoice = Literal["auto", "cuda", "fused", "torch"]


class Mamba(nn.Module):
    """One Mamba layer mapping (batch, time, d_model) to the same shape.

    ``dt_rank=None`` is ``mamba_ssm``'s "auto" (``ceil(d_model / 16)``). ``scan`` picks the
    selective-scan implementation (:mod:`vrme.model.scan`): ``"cuda"`` (``mamba_ssm`` kernels,
    tensors must be on a GPU), ``"fused"`` (the C kernel for CPUs), ``"torch"`` (pure PyTorch),
    ``"auto"`` (cuda on a GPU when available; on a CPU fused when its kernel builds, else torch).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan: ScanChoice = "auto",
    ) -> None:
        super().__init__()
        if scan == "cuda" and not cuda_scan_available():
            raise RuntimeError(
                "scan='cuda' needs the mamba_ssm package (its CUDA kernels), which is not "
                "importable here; use scan='auto' or 'torch'"
            )
        if scan == "fused" and not fused_scan_available():
            raise RuntimeError(f"scan='fused': {fused_scan_error()}; use scan='auto' or 'torch'")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.scan = scan

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        # mamba_ssm's initialisation: dt_proj weight uniform in +-dt_rank^-0.5, and its bias the
        # inverse softplus of a dt drawn log-uniformly in [dt_min, dt_max]; S4D-real A.
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

    def _impl(self, x: Tensor) -> ScanImpl:
        if self.scan in ("torch", "fused"):
            return self.scan
        if self.scan == "cuda":
            if not x.is_cuda:
                raise RuntimeError("scan='cuda' needs the model and its input on a CUDA device")
            return "cuda"
        if x.is_cuda and cuda_scan_available():
            return "cuda"
        return "fused" if fused_scan_supports(x) and _auto_fused() else "torch"

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        L = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = self.conv1d(xs.transpose(1, 2))[..., :L].transpose(1, 2)
        xs = F.silu(xs)
        dt, Bm, Cm = torch.split(self.x_proj(xs), [self.dt_rank, self.d_state, self.d_state], -1)
        dt = F.linear(dt, self.dt_proj.weight)
        return self.out_proj(self.ssm(xs, dt, Bm, Cm, z))

    def ssm(self, xs: Tensor, dt: Tensor, Bm: Tensor, Cm: Tensor, z: Tensor) -> Tensor:
        """The gated selective scan: ``xs``, ``dt`` (before bias and softplus), ``z``
        (batch, time, d_inner); ``Bm``, ``Cm`` (batch, time, d_state) -> (batch, time, d_inner)."""
        A = -torch.exp(_at_least_f32(self.A_log))
        return selective_scan(
            xs, dt, A, Bm, Cm, _at_least_f32(self.D), z=z,
            delta_bias=_at_least_f32(self.dt_proj.bias), delta_softplus=True, impl=self._impl(xs),
        )


def _at_least_f32(t: Tensor) -> Tensor:
    """``t`` in float32 when it is in a narrower type (as mamba_ssm keeps A, D and the dt bias in
    float32 for half-precision models); float32 and float64 as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _auto_fused() -> bool:
    """Whether ``scan='auto'`` uses the fused CPU kernel (warning once when it cannot)."""
    global _AUTO_FUSED
    if _AUTO_FUSED is None:
        _AUTO_FUSED = fused_scan_available()
        if not _AUTO_FUSED:
            log.warning("model.scan auto: the fused CPU scan is not available (%s); using the "
                        "pure-PyTorch scan, which gives the same results within float rounding "
                        "but trains several times slower", fused_scan_error())
    return _AUTO_FUSED


_AUTO_FUSED: bool | None = None
