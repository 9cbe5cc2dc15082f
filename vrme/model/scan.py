"""Selective scan (the state-space recurrence of a Mamba block).

For every batch element, channel ``d`` and state index ``n`` the scan runs, over time ``t``::

    delta_t = softplus(delta_t + delta_bias)            (when delta_softplus)
    h_t     = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D[d] * u_t
    y_t     = y_t * silu(z_t)                           (when z is given)

with ``h_{-1} = 0``. This is ``mamba_ssm``'s ``selective_scan_fn`` in a channels-last layout:
every sequence tensor here is ``(batch, time, channels)`` (``mamba_ssm`` uses
``(batch, channels, time)``).

Three implementations of the recurrence (the softplus, skip and gate around it are the same
PyTorch operations for the first two):

* ``impl="fused"``: a C kernel for CPUs (:mod:`vrme.model.fused`), compiled on first use; the
  whole recurrence, forward and backward, runs in one loop nest with the states in cache.
* ``impl="torch"``: pure PyTorch, any device, no compiler needed. The recurrence is a custom
  autograd function too.
* ``impl="cuda"``: ``mamba_ssm``'s CUDA kernel, used only when that package imports and the
  tensors are on a GPU.

The first two keep only their (small) inputs for backward and recompute the hidden states
there, so a block's training memory does not grow with ``d_state``; they agree with each other
and with :func:`selective_scan_ref`, the plain step-by-step loop kept as the numerical
reference, within float rounding.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vrme.model.fused import (
    fused_scan_available,
    fused_scan_backward,
    fused_scan_error,
    fused_scan_forward,
    fused_scan_supports,
)

logger = logging.getLogger(__name__)

ScanImpl = Literal["torch", "fused", "cuda"]


@functools.cache
def cuda_scan_available() -> bool:
    """True when ``mamba_ssm``'s selective-scan CUDA kernel can be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build raising anything else
        return False
    return True


def _batch_chunk(u: Tensor, per_item: int) -> int:
    """How many batch items to process at once: on a CPU as many as keep one state-sized
    buffer near ``_CHUNK_ELEMS`` elements (at least one item); on a GPU up to
    ``_GPU_CHUNK_ELEMS``, which only bounds memory."""
    budget = _CHUNK_ELEMS if u.device.type == "cpu" else _GPU_CHUNK_ELEMS
    return max(1, min(u.shape[0], budget // max(per_item, 1)))


# Elements of one (chunk, time, channels, d_state) buffer on a CPU: 2^18 float32 = 1 MiB, so
# the buffers of a chunk stay near a core's L2 cache. Measured on a 2-core x86 VM: one batch
# item per chunk (2 MiB buffers at the paper's sizes) was fastest; 4 MiB buffers were 20-50%
# slower, whole-batch buffers 4x slower, and splitting channels further did not help.
_CHUNK_ELEMS = 1 << 18
_GPU_CHUNK_ELEMS = 1 << 26
_LOG2E = 1.4426950408889634


def _states(
    dA: Tensor, h: Tensor, u_delta: Tensor, delta: Tensor, A2: Tensor, Bm: Tensor
) -> None:
    """Fill ``dA`` with the decay factors and ``h`` with the hidden states of one batch chunk.

    In: ``u_delta`` and ``delta`` (b, L, D), ``A2 = A * log2(e)`` (D, N), ``Bm`` (b, L, N).
    Out (written in place): ``dA = exp(delta * A)`` and ``h``, both (b, L, D, N).
    """
    # exp2 with log2(e) folded into A is several times faster than exp on CPUs.
    torch.mul(delta.unsqueeze(-1), A2, out=dA).exp2_()
    torch.mul(u_delta.unsqueeze(-1), Bm.unsqueeze(2), out=h)
    for t in range(1, h.shape[1]):
        h[:, t].addcmul_(dA[:, t], h[:, t - 1])


class _ScanCore(torch.autograd.Function):
    """``y_t = sum_n C_t[n] h_t[n]`` with ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``.

    ``delta`` must already be positive (softplus applied). Only the inputs are saved for
    backward, which recomputes the states. With ``fused`` both passes run in the C kernel;
    otherwise they work through the batch in chunks with three state-sized buffers, so memory
    stays at a few cache-sized buffers per call.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor,  # type: ignore[override]
                fused: bool = False) -> Tensor:
        ctx.fused = fused
        ctx.save_for_backward(u, delta, A, Bm, Cm)
        if fused:
            return fused_scan_forward(u, delta, A, Bm, Cm)
        b, L, D = u.shape
        N = A.shape[1]
        step = _batch_chunk(u, L * D * N)
        buf_a = u.new_empty(step, L, D, N)
        buf_h = u.new_empty(step, L, D, N)
        A2 = A * _LOG2E
        y = u.new_empty(b, L, D)
        for s in range(0, b, step):
            e = min(s + step, b)
            dA, h = buf_a[: e - s], buf_h[: e - s]
            _states(dA, h, u[s:e] * delta[s:e], delta[s:e], A2, Bm[s:e])
            torch.sum(torch.mul(h, Cm[s:e].unsqueeze(2), out=dA), -1, out=y[s:e])
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        u, delta, A, Bm, Cm = ctx.saved_tensors
        dy = dy.contiguous()
        if ctx.fused:
            return (*fused_scan_backward(u, delta, A, Bm, Cm, dy), None)
        b, L, D = u.shape
        N = A.shape[1]
        du = torch.empty_like(u)
        ddelta = torch.empty_like(delta)
        dB = torch.empty_like(Bm)
        dC = torch.empty_like(Cm)
        dA_param = torch.zeros_like(A)
        step = _batch_chunk(u, L * D * N)
        buf_a = u.new_empty(step, L, D, N)
        buf_h = u.new_empty(step, L, D, N)
        buf_g = u.new_empty(step, L, D, N)
        A2 = A * _LOG2E
        for s in range(0, b, step):
            e = min(s + step, b)
            n = e - s
            nl = n * L
            dA, h, g = buf_a[:n], buf_h[:n], buf_g[:n]
            u_c, dl_c, B_c, dy_c = u[s:e], delta[s:e], Bm[s:e], dy[s:e]
            ud_c = u_c * dl_c
            _states(dA, h, ud_c, dl_c, A2, B_c)
            # g_t = dLoss/dh_t: the direct term from y_t plus what flows back from h_{t+1}.
            torch.mul(dy_c.unsqueeze(-1), Cm[s:e].unsqueeze(2), out=g)
            for t in range(L - 2, -1, -1):
                g[:, t].addcmul_(dA[:, t + 1], g[:, t + 1])
            torch.matmul(dy_c.view(nl, 1, D), h.view(nl, D, N), out=dC[s:e].view(nl, 1, N))
            torch.matmul(ud_c.view(nl, 1, D), g.view(nl, D, N), out=dB[s:e].view(nl, 1, N))
            # Through the decay: S_t = g_t * h_{t-1} * exp(delta_t A) for t >= 1 (h_{-1} = 0).
            # The buffers are reused as soon as their contents are no longer needed.
            S = dA[:, 1:]
            S.mul_(h[:, :-1]).mul_(g[:, 1:])
            d_ud = torch.mul(g, B_c.unsqueeze(2), out=h).sum(-1)
            dd_c = d_ud * u_c
            dd_c[:, 1:] += torch.mul(S, A, out=g[:, 1:]).sum(-1)
            dA_param += torch.mul(S, dl_c[:, 1:].unsqueeze(-1), out=h[:, 1:]).sum((0, 1))
            ddelta[s:e] = dd_c
            torch.mul(d_ud, dl_c, out=du[s:e])
        return du, ddelta, dA_param, dB, dC, None


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
    fused: bool = False,
) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    # One dtype for the recurrence: the widest of its inputs (all float32 in a float32 model).
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in (delta, A, Bm, Cm)), u.dtype)
    u_, delta, A, Bm, Cm = (t.to(dtype).contiguous() for t in (u, delta, A, Bm, Cm))
    y = _ScanCore.apply(u_, delta, A, Bm, Cm, fused)
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
    (channels,). ``impl="cuda"`` needs ``mamba_ssm`` and CUDA tensors; ``impl="fused"`` needs
    the C kernel (:func:`vrme.model.fused.fused_scan_available`) and float32 or float64 CPU
    tensors.
    """
    if impl == "cuda":
        if not cuda_scan_available():
            raise RuntimeError("selective scan impl='cuda' needs the mamba_ssm package")
        if not u.is_cuda:
            raise RuntimeError("selective scan impl='cuda' needs tensors on a CUDA device")
        return _scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if impl == "fused":
        if not fused_scan_supports(u):
            raise RuntimeError(f"selective scan impl='fused' needs float32 or float64 CPU tensors, "
                               f"got {u.dtype} on {u.device}")
        if not fused_scan_available():
            raise RuntimeError(f"selective scan impl='fused': {fused_scan_error()}")
    return _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, fused=impl == "fused")


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
        h = (torch.exp(delta[:, t, :, None] * A) * h
             + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :])
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y
