"""Selective scan (the state-space recurrence of a Mamba block).

For every batch element, channel ``d`` and state index ``n`` the scan runs, over time ``t``::

    delta_t = softplus(delta_t + delta_bias)            (when delta_softplus)
    h_t     = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D[d] * u_t
    y_t     = y_t * silu(z_t)                           (when z is given)

with ``h_{-1} = 0``. This is ``mamba_ssm``'s ``selective_scan_fn`` in a channels-last layout:
every sequence tensor here is ``(batch, time, channels)`` (``mamba_ssm`` uses
``(batch, channels, time)``).

Two implementations:

* :func:`selective_scan` with ``impl="torch"``: pure PyTorch, any device. The recurrence itself
  is a custom autograd function that keeps only its (small) inputs for backward and recomputes
  the hidden states there, so a block's training memory does not grow with ``d_state``.
* ``impl="cuda"``: ``mamba_ssm``'s CUDA kernel, used only when that package imports and the
  tensors are on a GPU.

:func:`selective_scan_ref` is the plain step-by-step loop, kept as the numerical reference.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

ScanImpl = Literal["torch", "cuda"]


@functools.cache
def cuda_scan_available() -> bool:
    """True when ``mamba_ssm``'s selective-scan CUDA kernel can be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build raising anything else
        return False
    return True


_LOG2E = 1.4426950408889634


def _time_major(x: Tensor) -> Tensor:
    """(batch, time, c) -> contiguous (time, batch, c), so one time step is one dense block."""
    return x.transpose(0, 1).contiguous()


def _decay(out: Tensor, delta_t: Tensor, A2: Tensor) -> Tensor:
    """``out = exp(delta_t * A)`` for one step: ``delta_t`` (b, D), ``A2 = A log2(e)`` (D, N).

    exp2 with log2(e) folded into A is several times faster than exp on CPUs.
    """
    return torch.mul(delta_t.unsqueeze(-1), A2, out=out).exp2_()


class _ScanCore(torch.autograd.Function):
    """``y_t = sum_n C_t[n] h_t[n]`` with ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t``.

    ``delta`` must already be positive (softplus applied). The recurrence runs one time step at
    a time over the whole batch, each step a few dense ops on (batch, D, N) buffers that fit in
    the CPU cache. Forward keeps only the inputs; backward recomputes the states in segments of
    about sqrt(time) steps from checkpoints, so its scratch memory is about 2 sqrt(time) state
    buffers instead of one per time step.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor) -> Tensor:  # type: ignore[override]
        b, L, D = u.shape
        N = A.shape[1]
        A2 = A * _LOG2E
        ud, dl, Bt, Ct = _time_major(u * delta), _time_major(delta), _time_major(Bm), _time_major(Cm)
        h = u.new_zeros(b, D, N)
        dA = u.new_empty(b, D, N)
        tmp = u.new_empty(b, D, N)
        y = u.new_empty(L, b, D)
        for t in range(L):
            h.mul_(_decay(dA, dl[t], A2)).addcmul_(ud[t].unsqueeze(-1), Bt[t].unsqueeze(1))
            torch.sum(torch.mul(h, Ct[t].unsqueeze(1), out=tmp), -1, out=y[t])
        ctx.save_for_backward(u, delta, A, Bm, Cm)
        return y.transpose(0, 1)

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        u, delta, A, Bm, Cm = ctx.saved_tensors
        b, L, D = u.shape
        N = A.shape[1]
        A2 = A * _LOG2E
        ut, dl, Bt, Ct, dyt = (_time_major(x) for x in (u, delta, Bm, Cm, dy))
        ud = ut * dl
        seg = max(1, math.isqrt(L - 1) + 1) if L > 1 else 1  # ceil(sqrt(L))
        starts = list(range(0, L, seg))

        # Pass 1: the state just before each segment (h_{-1} = 0).
        ckpt: list[Tensor] = [u.new_zeros(b, D, N)]
        h = u.new_zeros(b, D, N)
        dA = u.new_empty(b, D, N)
        for t in range(starts[-1]):
            h.mul_(_decay(dA, dl[t], A2)).addcmul_(ud[t].unsqueeze(-1), Bt[t].unsqueeze(1))
            if (t + 1) % seg == 0:
                ckpt.append(h.clone())
        del h

        seg_h = u.new_empty(seg, b, D, N)
        seg_dA = u.new_empty(seg, b, D, N)
        g = u.new_zeros(b, D, N)  # dLoss/dh_t, carried backwards through the decay
        tmp = u.new_empty(b, D, N)
        tmp2 = u.new_empty(b, D, N)
        d_ud = u.new_empty(L, b, D)
        ddelta_A = u.new_zeros(L, b, D)
        dBt = u.new_empty(L, b, N)
        dCt = u.new_empty(L, b, N)
        dA_param = torch.zeros_like(A)
        for j in range(len(starts) - 1, -1, -1):
            s0, s1 = starts[j], min(starts[j] + seg, L)
            prev = ckpt[j]
            for i, t in enumerate(range(s0, s1)):  # recompute this segment's states
                torch.mul(prev, _decay(seg_dA[i], dl[t], A2), out=seg_h[i])
                seg_h[i].addcmul_(ud[t].unsqueeze(-1), Bt[t].unsqueeze(1))
                prev = seg_h[i]
            for i in range(s1 - s0 - 1, -1, -1):
                t = s0 + i
                g.addcmul_(dyt[t].unsqueeze(-1), Ct[t].unsqueeze(1))  # + direct term of y_t
                torch.matmul(dyt[t].unsqueeze(1), seg_h[i], out=dCt[t].unsqueeze(1))
                torch.matmul(ud[t].unsqueeze(1), g, out=dBt[t].unsqueeze(1))
                torch.sum(torch.mul(g, Bt[t].unsqueeze(1), out=tmp), -1, out=d_ud[t])
                if t > 0:
                    # Through the decay: S_t = g_t * exp(delta_t A) * h_{t-1}.
                    h_prev = seg_h[i - 1] if i > 0 else ckpt[j]
                    S = torch.mul(g, seg_dA[i], out=tmp).mul_(h_prev)
                    torch.sum(torch.mul(S, A, out=tmp2), -1, out=ddelta_A[t])
                    dA_param += torch.mul(S, dl[t].unsqueeze(-1), out=tmp2).sum(0)
                g.mul_(seg_dA[i])  # dLoss/dh_{t-1} from h_t
        ddelta = ddelta_A.addcmul_(d_ud, ut)
        du = d_ud.mul_(dl)
        return (du.transpose(0, 1), ddelta.transpose(0, 1), dA_param,
                dBt.transpose(0, 1), dCt.transpose(0, 1))


def _scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    Bm: Tensor,
    Cm: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    y = _ScanCore.apply(u.contiguous(), delta.contiguous(), A.contiguous(), Bm.contiguous(), Cm.contiguous())
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y


def _scan_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    Bm: Tensor,
    Cm: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> Tensor:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    def cl(t: Tensor | None) -> Tensor | None:  # (b, L, c) -> (b, c, L), contiguous
        return None if t is None else t.transpose(1, 2).contiguous()

    y = selective_scan_fn(
        cl(u), cl(delta), A, cl(Bm), cl(Cm), None if D is None else D.float(), z=cl(z),
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus,
    )
    return y.transpose(1, 2)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    impl: ScanImpl = "torch",
) -> Tensor:
    """Run the selective scan (module docstring) and return ``y`` (batch, time, channels).

    In: ``u``, ``delta``, ``z`` (batch, time, channels); ``A`` (channels, d_state), negative
    for a decaying state; ``B``, ``C`` (batch, time, d_state); ``D``, ``delta_bias``
    (channels,). ``impl="cuda"`` needs ``mamba_ssm`` and CUDA tensors.
    """
    if impl == "cuda":
        if not cuda_scan_available():
            raise RuntimeError("selective scan impl='cuda' needs the mamba_ssm package")
        if not u.is_cuda:
            raise RuntimeError("selective scan impl='cuda' needs tensors on a CUDA device")
        return _scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The selective scan as a plain loop over time steps (slow; the numerical reference).

    Same inputs and output as :func:`selective_scan`; differentiable through autograd.
    """
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    b, L, Dc = u.shape
    h = u.new_zeros(b, Dc, A.shape[1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y
