"""Farneback dense optical flow, compiled, with the first image's expansion reused.

The features compare every later frame of a window with the window's first frame (METHOD.md
3): the same first-frame region is the first image of up to k - 1 flow computations. OpenCV's
``calcOpticalFlowFarneback`` expands both images into quadratic polynomials on every call;
:class:`Farneback` expands the first image once (:meth:`Farneback.prepare`) and computes each
flow from that expansion (:meth:`Farneback.flow`), with the per-pixel steps compiled by numba.

The algorithm is G. Farneback's (2003, "Two-frame motion estimation based on polynomial
expansion") in the variant ``calcOpticalFlowFarneback(prev, next, None, pyr_scale, levels,
winsize, iterations, poly_n, poly_sigma, 0)`` computes (box-filter averaging, no initial flow),
with the same choices wherever they change the numbers: the pyramid (levels stop where a side
would fall under 32 px; each level's image is a Gaussian-smoothed, resized float copy), the
polynomial expansion with a Gaussian applicability of radius ``poly_n`` and its inverse Gram
matrix, replicated borders, the down-weighting of the 5 pixels nearest each border, the 1e-3
regularisation of the 2 x 2 solve, and the matrices recomputed after every iteration but the
last. The flows agree with OpenCV's to float rounding (a few 1e-6 px on face crops; the
compiled loops may reorder float operations), which ``tests/test_features.py`` checks.

The per-pixel steps exist twice, with the same loops and float types: in C
(``flow_kernel.c``, built for this CPU by :mod:`vrme.native` on first use; the compiler
vectorizes the loops, the bilinear sampling of the matrices included), and in numba
(:mod:`vrme.features._kernels`, cached by numba, ``cache=True``), which runs where no C
compiler is found. Both agree with OpenCV to float rounding (``tests/test_features.py`` checks
each); a video's feature file records which ran (``flow_kernel`` in its metadata). Both
release the GIL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

KERNEL_ENV = "VRME_FLOW_KERNEL"
"""Which compiled kernels ``Farneback(kernel="auto")`` uses: ``c`` or ``numba`` (default: C
where a compiler builds it, else numba)."""

MIN_LEVEL_SIDE = 32
"""A pyramid level is used only while both its sides stay at or above this (px)."""

_BORDER_WEIGHTS = (0.14, 0.14, 0.4472, 0.4472, 0.4472)
"""Weight of the matrices at distance 0..4 px from an image border."""


# -- the algorithm -------------------------------------------------------------------------------


def _applicability(n: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]:
    """One-sided Gaussian weights g, x g, x^2 g (float32, index 0..n) and the four entries of
    the inverse Gram matrix the expansion needs (ig11, ig03, ig33, ig55)."""
    if sigma < np.finfo(np.float32).eps:
        sigma = n * 0.3
    xs = np.arange(-n, n + 1, dtype=np.float64)
    g = np.exp(-(xs * xs) / (2 * sigma * sigma)).astype(np.float32)
    g = (g.astype(np.float64) / g.astype(np.float64).sum()).astype(np.float32)
    xg = (xs * g).astype(np.float32)
    xxg = (xs * xs * g).astype(np.float32)
    w = np.outer(g, g).astype(np.float32)  # [y, x]
    x2 = (xs * xs).astype(np.float32)[None, :]
    y2 = (xs * xs).astype(np.float32)[:, None]
    gram = np.zeros((6, 6))
    gram[0, 0] = w.astype(np.float64).sum()
    gram[1, 1] = (w * x2).astype(np.float64).sum()
    gram[3, 3] = (w * x2 * x2).astype(np.float64).sum()
    gram[5, 5] = (w * x2 * y2).astype(np.float64).sum()
    gram[2, 2] = gram[0, 3] = gram[0, 4] = gram[3, 0] = gram[4, 0] = gram[1, 1]
    gram[4, 4] = gram[3, 3]
    gram[3, 4] = gram[4, 3] = gram[5, 5]
    inv = np.linalg.inv(gram)
    ig = np.array([inv[1, 1], inv[0, 3], inv[3, 3], inv[5, 5]])
    return g[n:].copy(), xg[n:].copy(), xxg[n:].copy(), ig


def _border_weights(n: int) -> np.ndarray:
    w = np.ones(n, np.float32)
    for i, b in enumerate(_BORDER_WEIGHTS):
        if i < n:
            w[i] *= np.float32(b)
            w[n - 1 - i] *= np.float32(b)
    return w


def kernel_name(kernel: str = "auto") -> str:
    """Which kernels ``Farneback(..., kernel=kernel)`` runs in this process: ``c`` or ``numba``
    (``auto`` follows ``$VRME_FLOW_KERNEL`` when it is set, else C where it builds). Builds the
    C kernels on first use, as :class:`Farneback` does."""
    if kernel == "auto":
        kernel = os.environ.get(KERNEL_ENV) or "auto"
    if kernel not in ("auto", "c", "numba"):
        raise ValueError(f"kernel (or ${KERNEL_ENV}) must be auto, c or numba, got {kernel!r}")
    if kernel != "numba":
        from vrme.features import _native

        try:
            _native.kernels()
            return "c"
        except RuntimeError:
            if kernel == "c":
                raise
    return "numba"


def _load_kernels(kernel: str) -> tuple[object, str]:
    """The kernel functions for ``kernel`` ("auto", "c", "numba") and the name of those used
    (:func:`kernel_name`)."""
    name = kernel_name(kernel)
    if name == "c":
        from vrme.features import _native

        return _native.kernels(), "c"
    from vrme.features import _kernels

    return _kernels, "numba"


@dataclass(frozen=True)
class _Level:
    sigma: float
    ksize: int
    width: int
    height: int


@dataclass
class Prepared:
    """The expansions of a first image, coarsest pyramid level first."""

    shape: tuple[int, int]
    expansions: list[np.ndarray]


class Farneback:
    """Flow from a prepared first image to later images (see the module docstring).

    ``Farneback(pyr_scale, levels, winsize, iterations, poly_n, poly_sigma)`` takes the
    arguments of ``cv2.calcOpticalFlowFarneback`` (flags 0). ``kernel``: ``"c"`` (the kernels
    of ``flow_kernel.c``, vectorized for this CPU; needs a C compiler), ``"numba"``, or
    ``"auto"`` (C where it builds, else numba); :attr:`kernel` says which runs."""

    def __init__(self, pyr_scale: float, levels: int, winsize: int, iterations: int,
                 poly_n: int, poly_sigma: float, kernel: str = "auto"):
        if not 0 < pyr_scale < 1:
            raise ValueError(f"pyr_scale must be in (0, 1), got {pyr_scale}")
        self.pyr_scale = float(pyr_scale)
        self.levels = int(levels)
        self.half_window = int(winsize) // 2
        self.scale = 1.0 / (int(winsize) * int(winsize))
        self.iterations = int(iterations)
        self.weights = _applicability(int(poly_n), float(poly_sigma))
        self._plans: dict[tuple[int, int], list[_Level]] = {}
        self._borders: dict[int, np.ndarray] = {}
        self._k, self.kernel = _load_kernels(kernel)

    def _plan(self, shape: tuple[int, int]) -> list[_Level]:
        plan = self._plans.get(shape)
        if plan is not None:
            return plan
        rows, cols = shape
        k, scale = 0, 1.0
        while k < self.levels:
            scale *= self.pyr_scale
            if cols * scale < MIN_LEVEL_SIDE or rows * scale < MIN_LEVEL_SIDE:
                break
            k += 1
        plan = []
        for level in range(k, -1, -1):
            scale = 1.0
            for _ in range(level):
                scale *= self.pyr_scale
            sigma = (1.0 / scale - 1) * 0.5
            ksize = max(int(round(sigma * 5)) | 1, 3)
            plan.append(_Level(sigma, ksize, int(round(cols * scale)), int(round(rows * scale))))
        self._plans[shape] = plan
        return plan

    def _border(self, n: int) -> np.ndarray:
        w = self._borders.get(n)
        if w is None:
            w = self._borders[n] = _border_weights(n)
        return w

    def _level_images(self, img: np.ndarray) -> list[np.ndarray]:
        """The float image of every pyramid level, coarsest first (as OpenCV makes them)."""
        import cv2

        src = np.asarray(img, dtype=np.float32)
        out = []
        for lv in self._plan(img.shape[:2]):
            if lv.sigma == 0:
                f = np.empty(src.shape, np.float32)
                self._k.smooth121(src, f)
            else:
                f = cv2.GaussianBlur(src, (lv.ksize, lv.ksize), lv.sigma, sigmaY=lv.sigma)
                f = cv2.resize(f, (lv.width, lv.height), interpolation=cv2.INTER_LINEAR)
            out.append(np.ascontiguousarray(f))
        return out

    def prepare(self, first: np.ndarray) -> Prepared:
        """Expand the first image (grayscale, h x w) once."""
        if first.ndim != 2 or first.size == 0:
            raise ValueError(f"expected a non-empty grayscale image, got shape {first.shape}")
        g, xg, xxg, ig = self.weights
        expansions = []
        for f in self._level_images(first):
            e = np.empty((5, *f.shape), np.float32)
            self._k.expand(f, g, xg, xxg, ig, e)
            expansions.append(e)
        return Prepared(first.shape[:2], expansions)

    def flow(self, first: Prepared, image: np.ndarray) -> np.ndarray:
        """Flow (2, h, w) float32, x then y, from the prepared first image to ``image``."""
        import cv2

        if image.shape[:2] != first.shape:
            raise ValueError(f"image {image.shape[:2]} differs from the first image "
                             f"{first.shape}")
        g, xg, xxg, ig = self.weights
        m, it = self.half_window, self.iterations
        if len(first.expansions) == 1:  # one level: a single compiled call
            e0 = first.expansions[0]
            _, h, w = e0.shape
            flow = np.zeros((2, h, w), np.float32)
            self._k.full_level_flow(e0, np.ascontiguousarray(image, dtype=np.float32), g, xg,
                                    xxg, ig, flow[0], flow[1], m, self.scale, it,
                                    self._border(h), self._border(w))
            return flow
        flow = None
        for e0, f in zip(first.expansions, self._level_images(image)):
            _, h, w = e0.shape
            at_rest = flow is None
            if flow is None:
                flow = np.zeros((2, h, w), np.float32)
            else:
                up = np.float32(1.0 / self.pyr_scale)
                flow = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) * up
                                 for p in flow])
            self._k.level_flow(e0, f, g, xg, xxg, ig, flow[0], flow[1], m, self.scale, it,
                               self._border(h), self._border(w), at_rest)
        assert flow is not None
        return flow
