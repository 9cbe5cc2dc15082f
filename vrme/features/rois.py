"""The 18 landmark regions of interest (ROIs) and their top-fraction flow means (METHOD.md 3).

Everything here works on the square face crop (``align.crop_size``, 320 px by default) and on
landmarks located on that crop: an int array of shape (68, 2) holding (x, y) per point.

Optical flow is computed on 7 *regions* of the crop (two eyebrows, mouth, nose wings, two lower
eyelids, and the nose ridge used as the global-motion reference). Each of the 18 output ROIs is a
sub-rectangle of one region's flow field; its value is the mean of the vectors with the largest
magnitude (a top fraction), minus the global motion. The rectangle arithmetic reproduces the
reference implementation exactly, quirks included: boxes are placed relative to the unclipped
region origin, slices use numpy semantics (a negative start counts from the end), and the margins
of whole-region means shrink near the crop's top edge.

Output row layout of a window matrix (36 x k): ROI r occupies rows 2r (x) and 2r + 1 (y), in the
order of :data:`ROI_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROI_NAMES: tuple[str, ...] = (
    "brow_left",
    "brow_left_20",
    "brow_left_19",
    "brow_left_18",
    "brow_right",
    "brow_right_23",
    "brow_right_24",
    "brow_right_25",
    "mouth",
    "mouth_48",
    "mouth_54",
    "mouth_51",
    "mouth_57",
    "mouth_62",
    "nose_wing_31",
    "nose_wing_35",
    "lid_left",
    "lid_right",
)
"""The 18 ROIs in output order; the suffix is the dlib landmark the small box is centred on."""

REGION_NAMES: tuple[str, ...] = (
    "nose_ridge",
    "brow_left",
    "brow_right",
    "mouth",
    "nose",
    "lid_left",
    "lid_right",
)
"""The flow regions; region 0 is the global-motion reference."""

ROI_REGION: tuple[int, ...] = (1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 5, 6)
"""Region index of each output ROI."""

ROIS_OF_REGION: tuple[tuple[int, ...], ...] = tuple(
    tuple(n for n, r in enumerate(ROI_REGION) if r == region) for region in range(len(REGION_NAMES))
)
"""Output ROIs computed from each region's flow (none for the nose ridge)."""

N_ROIS = len(ROI_NAMES)
N_ROWS = 2 * N_ROIS

_sum = np.add.reduce
_MARGIN = 10  # inner margin dropped from whole-region flows (px)
_HALF_BOX = 10  # half side of the small landmark boxes (px)


@dataclass(frozen=True)
class RoiBox:
    """One output ROI: ``region`` index into :data:`REGION_NAMES`, the (rows, cols) slice of
    that region's flow field, and the fraction of largest vectors averaged."""

    region: int
    rows: slice
    cols: slice
    top_fraction: float


@dataclass(frozen=True)
class RoiLayout:
    """Where to compute flow on the crop and how to reduce it.

    ``regions``: (rows, cols) slices of the crop image, one per :data:`REGION_NAMES`.
    ``boxes``: the 18 output ROIs in :data:`ROI_NAMES` order.
    ``global_box``: the part of the nose-ridge flow whose top-fraction mean is the global motion.
    """

    regions: tuple[tuple[slice, slice], ...]
    boxes: tuple[RoiBox, ...]
    global_box: RoiBox


def _extent(lm: np.ndarray, first: int, stop: int, pad: int = 0) -> tuple[int, int, int, int]:
    """(x_min, x_max, y_min, y_max) of landmarks first..stop-1, widened by ``pad`` px."""
    pts = lm[first:stop]
    return (
        int(pts[:, 0].min()) - pad,
        int(pts[:, 0].max()) + pad,
        int(pts[:, 1].min()) - pad,
        int(pts[:, 1].max()) + pad,
    )


def _box(region: int, lm: np.ndarray, point: int, origin: tuple[int, int],
         rows: tuple[int, int], cols: tuple[int, int], fraction: float) -> RoiBox:
    """A small box around landmark ``point``: offsets ``rows``/``cols`` from the point's
    position relative to ``origin`` (row, col) of the region."""
    r = int(lm[point, 1]) - origin[0]
    c = int(lm[point, 0]) - origin[1]
    return RoiBox(region, slice(r + rows[0], r + rows[1]), slice(c + cols[0], c + cols[1]),
                  fraction)


def roi_layout(
    lm: np.ndarray,
    *,
    roi_fraction: float = 0.3,
    box_fraction: float = 0.2,
    brow_right_box_fraction: float = 0.3,
    global_fraction: float = 0.7,
) -> RoiLayout:
    """Regions and ROI boxes for crop landmarks ``lm`` (68 x 2 int, (x, y) on the crop).

    ``roi_fraction`` applies to whole regions and eyelids, ``box_fraction`` to the small landmark
    boxes except the right eyebrow's (``brow_right_box_fraction``; the reference uses 0.3 there),
    ``global_fraction`` to the nose ridge.
    """
    lm = np.asarray(lm)
    h = _HALF_BOX
    sym = (-h, h)
    boxes: list[RoiBox] = []
    regions: list[tuple[slice, slice]] = []

    # 0: nose ridge (points 29-30, widened by 13 px): global motion.
    x0, x1, y0, y1 = _extent(lm, 29, 31, pad=13)
    regions.append((slice(y0, y1), slice(x0, x1)))
    global_box = RoiBox(0, slice(15, -10), slice(5, -5), global_fraction)

    # 1: left eyebrow (17-21); boxes around 20, 19, 18 (inner to outer).
    x0, x1, y0, y1 = _extent(lm, 17, 22)
    top = max(0, y0 - 15)
    regions.append((slice(top, y1 + 5), slice(max(0, x0 - 5), x1)))
    m_top = max(0, _MARGIN + min(0, y0 - 15))
    m_bottom = 4 if (y1 + 5 - top - 3) < _MARGIN + m_top else _MARGIN
    boxes.append(RoiBox(1, slice(m_top, -m_bottom), slice(_MARGIN, -_MARGIN), roi_fraction))
    origin = (y0 - 15, x0 - 5)
    boxes += [_box(1, lm, p, origin, sym, sym, box_fraction) for p in (20, 19, 18)]

    # 2: right eyebrow (22-26); boxes around 23, 24, 25.
    x0, x1, y0, y1 = _extent(lm, 22, 27)
    regions.append((slice(max(0, y0 - 15), y1 + 5), slice(x0, x1)))
    m_top = max(0, _MARGIN + min(0, y0 - 15))
    boxes.append(RoiBox(2, slice(m_top, -_MARGIN), slice(_MARGIN, -_MARGIN), roi_fraction))
    origin = (y0 - 15, x0)
    boxes += [_box(2, lm, p, origin, sym, sym, brow_right_box_fraction) for p in (23, 24, 25)]

    # 3: mouth (48-66); boxes around the corners 48, 54 (widened outward), 51, 57, 62.
    x0, x1, y0, y1 = _extent(lm, 48, 67)
    regions.append((slice(y0 - 15, y1 + 10), slice(max(0, x0 - 20), x1 + 20)))
    boxes.append(RoiBox(3, slice(_MARGIN, -_MARGIN), slice(_MARGIN, -_MARGIN), roi_fraction))
    origin = (y0 - 15, x0 - 20)
    boxes.append(_box(3, lm, 48, origin, sym, (-h, 2 * h), box_fraction))
    boxes.append(_box(3, lm, 54, origin, sym, (-2 * h, h), box_fraction))
    boxes += [_box(3, lm, p, origin, sym, sym, box_fraction) for p in (51, 57, 62)]

    # 4: nose (30-35); boxes above-outside the wings 31 and 35.
    x0, x1, y0, y1 = _extent(lm, 30, 36)
    regions.append((slice(y0 - 20, y1 + 5), slice(max(0, x0 - 30), x1 + 30)))
    origin = (y0 - 20, x0 - 30)
    boxes.append(_box(4, lm, 31, origin, (-2 * h, h // 2), (-2 * h, h), box_fraction))
    boxes.append(_box(4, lm, 35, origin, (-2 * h, h // 2), (-h, 2 * h), box_fraction))

    # 5, 6: below each eye (36-41, 42-47): a band one half eye-width high, starting half an
    # eye-width below the eye's vertical centre.
    for region, first in ((5, 36), (6, 42)):
        x0, x1, y0, y1 = _extent(lm, first, first + 6)
        half = (x1 - x0) / 2
        mid = (y1 + y0) / 2
        regions.append((slice(int(mid + half / 2), int(mid + 3 * half / 2)),
                        slice(max(0, x0), x1)))
        boxes.append(RoiBox(region, slice(5, -5), slice(5, -5), roi_fraction))

    assert tuple(b.region for b in boxes) == ROI_REGION
    return RoiLayout(regions=tuple(regions), boxes=tuple(boxes), global_box=global_box)


_SMALL = 2048
"""Boxes up to this many vectors are reduced by a compiled loop, larger ones by numpy."""


def top_fraction_mean(flow: np.ndarray, mag: np.ndarray, fraction: float) -> tuple[float, float]:
    """Mean (x, y) of the vectors of ``flow`` (h, w, 2) whose magnitude ``mag`` (h, w) is among
    the largest ``fraction`` of them; (0, 0) for an empty field.

    The count kept is ``n - int(n * (1 - fraction))`` as in the reference, which sorts all
    magnitudes; a partial partition selects the same set (up to ties of equal magnitude): the
    magnitudes at or above the value a partition puts at position ``n - keep``, or on ties at
    that value an index partition.
    """
    n = mag.size
    if n == 0:
        return 0.0, 0.0
    skip = int(n * (1 - fraction))
    keep = n - skip
    if skip and n <= _SMALL:
        from vrme.features._kernels import top_sums

        count, sx, sy = top_sums(flow[..., 0], flow[..., 1], mag, skip)
        if count == keep:
            return sx / keep, sy / keep
    x = flow[..., 0].ravel()
    y = flow[..., 1].ravel()
    if skip:
        m = mag.ravel()
        # The threshold by a value-only partition, then the indices at or above it (cheaper
        # than an index partition); on ties at the threshold, the index partition.
        idx = np.flatnonzero(m >= np.partition(m, skip)[skip])
        if idx.size != keep:
            idx = m.argpartition(skip)[skip:]
        x, y = x[idx], y[idx]
    return float(_sum(x, dtype=np.float64)) / keep, float(_sum(y, dtype=np.float64)) / keep
