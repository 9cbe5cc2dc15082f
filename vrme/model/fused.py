"""The fused selective scan for CPUs: ``scan_kernel.c``, compiled on first use and called
through :mod:`ctypes`.

The pure-PyTorch scan (:mod:`vrme.model.scan`) runs each time step as separate tensor
operations over the whole state (batch, time, channels, d_state), each a pass through memory.
The C kernel does the whole recurrence, forward and backward, in one loop nest per batch item
and block of channels, with the block's states in the core's cache: at the paper's sizes it is
several times faster (``benchmarks/train_step.py``). Its results equal the pure-PyTorch scan's
within float rounding (``tests/test_model.py`` compares both with the step-by-step loop).

Building needs a C compiler (:mod:`vrme.native`: ``$CC``, else ``cc``, ``gcc`` or ``clang``
on the PATH); the library is built for this CPU and cached, so a second process loads it at
once. Without a compiler, :func:`fused_scan_available` is False,
:func:`fused_scan_error` says why, and ``model.scan: auto`` uses the pure-PyTorch scan.

Threads: the batch is split into at most ``_GROUPS`` fixed groups of items run on
``torch.get_num_threads()`` Python threads (the kernel releases the GIL). The groups depend
only on the batch size, and their parts of the ``A`` gradient are added in group order, so the
numbers do not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from vrme import native

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("scan_kernel.c")
_LOG2E = 1.4426950408889634
_GROUPS = 16
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


class _Kernel:
    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.path = path
        p, i = ctypes.c_void_p, ctypes.c_int64
        self.fwd, self.bwd = {}, {}
        for suffix in _SUFFIX.values():
            f = getattr(lib, f"scan_fwd_{suffix}")
            f.argtypes, f.restype = [p] * 6 + [i] * 5, ctypes.c_int
            b = getattr(lib, f"scan_bwd_{suffix}")
            b.argtypes, b.restype = [p] * 12 + [i] * 5, ctypes.c_int
            self.fwd[suffix], self.bwd[suffix] = f, b


def _build() -> _Kernel:
    """Compile (or load the cached) kernel library; raises RuntimeError saying why not."""
    try:
        lib, path = native.build(SOURCE)
    except RuntimeError as exc:
        raise RuntimeError(str(exc).replace("could not build scan_kernel.c",
                                            "could not build the fused scan kernel")) from None
    return _Kernel(lib, path)


@functools.cache
def _kernel() -> _Kernel | RuntimeError:
    try:
        return _build()
    except RuntimeError as exc:
        return exc


def fused_scan_available() -> bool:
    """True when the fused CPU kernel is built (building it on the first call)."""
    return isinstance(_kernel(), _Kernel)


def fused_scan_error() -> str | None:
    """Why the fused CPU kernel is not available (None when it is)."""
    k = _kernel()
    return None if isinstance(k, _Kernel) else str(k)


def fused_scan_supports(t: Tensor) -> bool:
    """Whether the fused kernel handles tensors like ``t`` (CPU, float32 or float64)."""
    return t.device.type == "cpu" and t.dtype in _SUFFIX


def _get() -> _Kernel:
    k = _kernel()
    if isinstance(k, RuntimeError):
        raise RuntimeError(f"the fused CPU scan is not available: {k}")
    return k


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of ``workers`` threads for this process (remade after a fork)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, "vrme-scan"))
        return _POOL[2]


def _groups(b: int) -> list[tuple[int, int]]:
    n = min(b, _GROUPS)
    edges = [b * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _run_groups(fn, groups: list[tuple[int, int]]) -> None:
    """``fn(j, b0, b1)`` for every group ``j`` (items b0..b1-1), on the pool when torch has
    more than one thread."""
    workers = min(torch.get_num_threads(), len(groups))
    jobs = [(j, b0, b1) for j, (b0, b1) in enumerate(groups)]
    if workers <= 1:
        rcs = [fn(*job) for job in jobs]
    else:
        rcs = list(_pool(workers).map(lambda job: fn(*job), jobs))
    if any(rcs):
        raise MemoryError("the fused selective scan could not allocate its state buffers")


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def fused_scan_forward(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor) -> Tensor:
    """``y_t = sum_n C_t[n] h_t[n]`` (see :mod:`vrme.model.scan`) for contiguous CPU tensors:
    ``u``, ``delta`` (b, L, D), delta already positive; ``A`` (D, N); ``Bm``, ``Cm`` (b, L, N)."""
    fwd = _get().fwd[_SUFFIX[u.dtype]]
    b, L, D = u.shape
    N = A.shape[1]
    A2T = (A * _LOG2E).t().contiguous()
    y = torch.empty_like(u)
    _run_groups(lambda j, b0, b1: fwd(_ptr(u), _ptr(delta), _ptr(A2T), _ptr(Bm), _ptr(Cm),
                                      _ptr(y), b0, b1, L, D, N), _groups(b) if b else [])
    return y


def fused_scan_backward(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, dy: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(du, ddelta, dA, dB, dC)`` of :func:`fused_scan_forward` given ``dy``."""
    bwd = _get().bwd[_SUFFIX[u.dtype]]
    b, L, D = u.shape
    N = A.shape[1]
    A2T = (A * _LOG2E).t().contiguous()
    AT = A.t().contiguous()
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
    groups = _groups(b) if b else []
    parts = torch.zeros(max(len(groups), 1), N, D, dtype=A.dtype)
    _run_groups(lambda j, b0, b1: bwd(
        _ptr(u), _ptr(delta), _ptr(A2T), _ptr(AT), _ptr(Bm), _ptr(Cm), _ptr(dy), _ptr(du),
        _ptr(ddelta), _ptr(parts[j]), _ptr(dB), _ptr(dC), b0, b1, L, D, N,
    ), groups)
    dAT = parts[0]
    for p in parts[1:]:  # in group order: the same sum whatever the thread count
        dAT += p
    return du, ddelta, dAT.t().contiguous(), dB, dC
