"""The Farneback kernels of :mod:`vrme.features._kernels` compiled from C
(``flow_kernel.c``, built on first use by :mod:`vrme.native`), with the same functions and
arguments; the per-pixel loops are vectorized for this CPU, the bilinear sampling included.

:func:`kernels` returns this module's functions, or raises :class:`RuntimeError` saying why
they cannot be built (no C compiler); :class:`vrme.features.farneback.Farneback` then uses the
numba kernels. Arrays must be C-contiguous float32 (``ig``: float64), as the numba kernels'
callers already pass them.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SOURCE = Path(__file__).with_name("flow_kernel.c")
FLAGS = ("-fno-math-errno", "-fno-trapping-math")
"""Beyond vrme.native's: what lets the compiler vectorize floorf and the selects (not
-ffast-math, whose start-up code would flush subnormals process-wide)."""

_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double


def _ptr(a: np.ndarray, dtype: type = np.float32) -> int:
    if a.dtype != dtype or not a.flags.c_contiguous:
        raise ValueError(f"expected a C-contiguous {np.dtype(dtype)} array, got {a.dtype} "
                         f"{'contiguous' if a.flags.c_contiguous else 'strided'}")
    return a.ctypes.data


@functools.cache
def _library() -> ctypes.CDLL | RuntimeError:
    from vrme import native

    try:
        lib, _ = native.build(SOURCE, FLAGS)
    except RuntimeError as exc:
        return exc
    lib.vrme_smooth121.argtypes = [_P, _P, _I, _I]
    lib.vrme_expand.argtypes = [_P] * 6 + [_I] * 3
    lib.vrme_level_flow.argtypes = [_P] * 8 + [_I] * 4 + [_D, _I, _P, _P, ctypes.c_int]
    lib.vrme_full_level_flow.argtypes = [_P] * 8 + [_I] * 4 + [_D, _I, _P, _P]
    for f in (lib.vrme_smooth121, lib.vrme_expand, lib.vrme_level_flow,
              lib.vrme_full_level_flow):
        f.restype = ctypes.c_int
    return lib


def _check(rc: int) -> None:
    if rc:
        raise MemoryError("the C Farneback kernel could not allocate its scratch memory")


def kernels() -> SimpleNamespace:
    """The compiled kernels (built on the first call); RuntimeError when they cannot be."""
    lib = _library()
    if isinstance(lib, RuntimeError):
        raise lib

    def smooth121(img: np.ndarray, out: np.ndarray) -> None:
        h, w = img.shape
        _check(lib.vrme_smooth121(_ptr(img), _ptr(out), h, w))

    def expand(img: np.ndarray, g: np.ndarray, xg: np.ndarray, xxg: np.ndarray,
               ig: np.ndarray, out: np.ndarray) -> None:
        h, w = img.shape
        _check(lib.vrme_expand(_ptr(img), _ptr(g), _ptr(xg), _ptr(xxg), _ptr(ig, np.float64),
                               _ptr(out), h, w, g.shape[0] - 1))

    def level_flow(e0: np.ndarray, img: np.ndarray, g: np.ndarray, xg: np.ndarray,
                   xxg: np.ndarray, ig: np.ndarray, fx: np.ndarray, fy: np.ndarray, m: int,
                   scale: float, iterations: int, wy: np.ndarray, wx: np.ndarray,
                   at_rest: bool) -> None:
        _, h, w = e0.shape
        _check(lib.vrme_level_flow(_ptr(e0), _ptr(img), _ptr(g), _ptr(xg), _ptr(xxg),
                                   _ptr(ig, np.float64), _ptr(fx), _ptr(fy), h, w,
                                   g.shape[0] - 1, m, scale, iterations, _ptr(wy), _ptr(wx),
                                   int(at_rest)))

    def full_level_flow(e0: np.ndarray, img: np.ndarray, g: np.ndarray, xg: np.ndarray,
                        xxg: np.ndarray, ig: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                        m: int, scale: float, iterations: int, wy: np.ndarray,
                        wx: np.ndarray) -> None:
        _, h, w = e0.shape
        _check(lib.vrme_full_level_flow(_ptr(e0), _ptr(img), _ptr(g), _ptr(xg), _ptr(xxg),
                                        _ptr(ig, np.float64), _ptr(fx), _ptr(fy), h, w,
                                        g.shape[0] - 1, m, scale, iterations, _ptr(wy),
                                        _ptr(wx)))

    return SimpleNamespace(smooth121=smooth121, expand=expand, level_flow=level_flow,
                           full_level_flow=full_level_flow, name="c")
