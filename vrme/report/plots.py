"""Figures of the report and of ``vrme spot``, drawn with matplotlib's Agg backend into PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` (no pyplot, no global state, safe
in worker threads) of a fixed size in pixels (the ``*_SIZE`` constants, width x height at
:data:`DPI`), so a figure's PNG always has the same dimensions. Frame numbers on the axes are
original frame numbers (the numbers in the frame file names).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

DPI = 100
SCORE_SIZE = (1000, 330)
"""Pixels (width, height) of a per-video score curve."""
LOSS_WIDTH = 1000
LOSS_COLUMNS = 6
"""Folds per row of the loss-curve small multiples."""
LOSS_PANEL_HEIGHT = 140
LOSS_MARGIN = 50
LOSS_PANELS_PER_PNG = 36
"""Folds per loss-curve figure (more folds make more figures)."""
CONFUSION_SIZE = (560, 460)
SUBJECT_F1_SIZE = (800, 360)
DURATION_SIZE = (700, 360)

EMOTION_COLORS: dict[str, str] = {
    "negative": "#d62728",
    "positive": "#2ca02c",
    "surprise": "#1f77b4",
    "others": "#9467bd",
    "neutral": "#7f7f7f",
}
"""Colour of each emotion in every figure."""


def emotion_color(emotion: str) -> str:
    """The colour of ``emotion`` (grey for anything unknown)."""
    return EMOTION_COLORS.get(str(emotion), "#7f7f7f")


def _figure(size: tuple[int, int]):  # noqa: ANN202 - matplotlib Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    # No bbox_inches="tight": it would change the pixel size from figure to figure.
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels of PNG ``data``, read from its IHDR chunk; ValueError if
    ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def score_curve_png(frames: np.ndarray, spot: np.ndarray, *, gt: pd.DataFrame | None = None,
                    pred: pd.DataFrame | None = None, smoothed: np.ndarray | None = None,
                    threshold: float | None = None, title: str = "",
                    clock: tuple[float, float] | None = None) -> bytes:
    """One video's per-frame spot score with its intervals, as PNG bytes (:data:`SCORE_SIZE`).

    ``frames`` (n,) are original frame numbers of the scores ``spot`` (n,) in [0, 1].
    ``gt`` and ``pred`` are interval tables with ``onset``, ``offset`` (original numbers,
    inclusive) and ``emotion`` (``pred`` may have ``apex``): ground truth is drawn as shaded
    bands over the whole height, predictions as bars in a lane under the curve (with the apex
    as a tick), both coloured by emotion. An optional ``status`` column marks the STRS outcome:
    a prediction 'TP' is drawn solid, 'FP' hatched, 'unscored' as an outline; a true interval
    'missed' gets a dashed outline. ``smoothed``/``threshold``: the decoder's smoothed curve and
    peak threshold, drawn when given. ``clock`` = (first frame number, fps) adds a top axis in
    seconds from the video's first frame.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    fig = _figure(SCORE_SIZE)
    ax = fig.add_axes((0.06, 0.15, 0.74, 0.66))
    frames = np.asarray(frames)
    spot = np.asarray(spot, dtype=np.float64)
    lane = (-0.16, -0.05)
    emotions_seen: list[str] = []
    statuses_seen: set[str] = set()
    for row in (gt.itertuples(index=False) if gt is not None else []):
        ax.axvspan(row.onset - 0.5, row.offset + 0.5, ymin=0.0, ymax=1.0,
                   color=emotion_color(row.emotion), alpha=0.22, lw=0)
        if getattr(row, "status", None) == "missed":
            ax.add_patch(Rectangle((row.onset - 0.5, lane[1] + 0.01), row.offset - row.onset + 1,
                                   1.04 - lane[1] - 0.01, fill=False, ec="black", lw=0.9,
                                   ls="--"))
            statuses_seen.add("missed")
        emotions_seen.append(str(row.emotion))
    for row in (pred.itertuples(index=False) if pred is not None else []):
        c = emotion_color(row.emotion)
        status = getattr(row, "status", "TP")
        x0, w = row.onset - 0.5, row.offset - row.onset + 1
        if status == "FP":
            ax.add_patch(Rectangle((x0, lane[0]), w, lane[1] - lane[0], fc="white", ec=c,
                                   hatch="////", lw=1.0))
        elif status == "unscored":
            ax.add_patch(Rectangle((x0, lane[0]), w, lane[1] - lane[0], fill=False, ec=c,
                                   lw=1.0))
        else:
            ax.add_patch(Rectangle((x0, lane[0]), w, lane[1] - lane[0], fc=c, ec=c, lw=0.5))
        statuses_seen.add(str(status))
        apex = getattr(row, "apex", None)
        if apex is not None and pd.notna(apex):
            ax.plot([apex, apex], [lane[0], lane[1] + 0.03], color="black", lw=1)
        emotions_seen.append(str(row.emotion))
    ax.axhline(0, color="#cccccc", lw=0.6)
    ax.plot(frames, spot, color="black", lw=0.9)
    if smoothed is not None:
        ax.plot(frames, np.asarray(smoothed), color="#ff7f0e", lw=1.0, ls="--")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="#ff7f0e", lw=0.8, ls=":")
    if len(frames):
        ax.set_xlim(float(frames[0]) - 0.5, float(frames[-1]) + 0.5)
    ax.set_ylim(lane[0] - 0.02, 1.05)
    ax.set_xlabel("frame (original numbering)")
    ax.set_ylabel("spot score")
    if clock is not None and clock[1] and np.isfinite(clock[0]) and np.isfinite(clock[1]):
        first, fps = float(clock[0]), float(clock[1])
        top = ax.secondary_xaxis("top", functions=(lambda f: (f - first) / fps,
                                                   lambda t: t * fps + first))
        top.set_xlabel(f"seconds from the first frame ({fps:g} fps)", fontsize=8)
        top.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10, x=0.06, y=0.985, ha="left")
    handles = [Line2D([], [], color="black", lw=0.9, label="spot score")]
    if smoothed is not None:
        handles.append(Line2D([], [], color="#ff7f0e", lw=1.0, ls="--", label="smoothed"))
    if threshold is not None:
        handles.append(Line2D([], [], color="#ff7f0e", lw=0.8, ls=":", label="peak threshold"))
    if gt is not None:
        handles.append(Patch(facecolor="#bbbbbb", alpha=0.5, label="ground truth (band)"))
    if "missed" in statuses_seen:
        handles.append(Patch(fill=False, ec="black", ls="--", label="missed ground truth"))
    if pred is not None:
        if "status" in pred:
            handles.append(Patch(fc="#444444", ec="#444444", label="predicted TP (bar below)"))
            handles.append(Patch(fc="white", ec="#444444", hatch="////", label="predicted FP"))
            if "unscored" in statuses_seen:
                handles.append(Patch(fill=False, ec="#444444", label="predicted, not scored"))
        else:
            handles.append(Patch(facecolor="#444444", label="predicted (bar below)"))
    for e in EMOTION_COLORS:
        if e in emotions_seen:
            handles.append(Patch(facecolor=emotion_color(e), label=e))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.81, 0.5), fontsize=8,
               frameon=False)
    return _png(fig)


def loss_curves_size(n_panels: int) -> tuple[int, int]:
    """Pixels (width, height) of a :func:`loss_curves_png` figure with ``n_panels`` folds:
    :data:`LOSS_COLUMNS` panels a row, :data:`LOSS_PANEL_HEIGHT` pixels a row."""
    rows = max(1, math.ceil(max(1, n_panels) / LOSS_COLUMNS))
    return (LOSS_WIDTH, LOSS_MARGIN + rows * LOSS_PANEL_HEIGHT)


def loss_curves_png(folds: Sequence[str], histories: Sequence[Sequence[dict] | None],
                    notes: Sequence[str] | None = None, title: str = "") -> bytes:
    """Training curves of several folds as small multiples (one panel per fold, a shared y
    axis, logarithmic when the values span a decade or more), PNG bytes of
    :func:`loss_curves_size`. ``histories[i]`` is fold ``folds[i]``'s
    ``history`` (per epoch: ``epoch``, ``loss``, ``mse``, ``ce``) or None for a fold without
    one (drawn as an empty panel saying so); ``notes[i]`` is added to the panel title (e.g. how
    the fold was made). Values that cannot be drawn (non-finite; <= 0 on a log axis) are left
    out and counted in the panel."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    size = loss_curves_size(len(folds))
    fig = _figure(size)
    n = max(1, len(folds))
    cols = min(n, LOSS_COLUMNS)
    rows = math.ceil(n / LOSS_COLUMNS)
    series = (("loss", "black", "-"), ("mse", "#1f77b4", "--"), ("ce", "#d62728", ":"))
    vals = [v for h in histories if h for r in h for k, _, _ in series
            if isinstance(v := r.get(k), (int, float)) and math.isfinite(v) and v > 0]
    lo, hi = (min(vals), max(vals)) if vals else (0.1, 1.0)
    log = hi >= 10 * lo  # a log axis when the curves span a decade or more
    lo, hi = (lo / 1.3, hi * 1.3) if log else (0.0, hi * 1.05)
    decades = math.log10(hi / lo) if log else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)  # about 3 to 8 labelled ticks
    top_px, left, right = 30, 0.05, 0.01
    w = (1.0 - left - right) / cols
    h_frac = LOSS_PANEL_HEIGHT / size[1]
    for i, fold in enumerate(folds):
        r, c = divmod(i, LOSS_COLUMNS)
        y0 = 1.0 - (top_px / size[1]) - (r + 1) * h_frac
        ax = fig.add_axes((left + c * w + 0.03 * w, y0 + 0.24 * h_frac, 0.9 * w,
                           0.6 * h_frac))
        hist = histories[i] or []
        note = (notes[i] if notes is not None else "") or ""
        # A plain text, not set_title: matplotlib re-measures every axis to place a title.
        ax.text(0.5, 1.03, f"fold {fold}" + (f" ({note})" if note else ""), fontsize=8,
                ha="center", va="bottom", transform=ax.transAxes)
        if log:
            ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        # Few ticks and no minor ones: tick objects are most of the drawing time.
        if log:
            ax.yaxis.set_major_locator(LogLocator(subs=subs, numticks=12))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.tick_params(labelsize=7)
        if c:  # the y axis is shared: labelled on the first panel of each row only
            ax.tick_params(axis="y", which="both", labelleft=False)
        if not hist:
            ax.set_xticks([])
            ax.text(0.5, 0.5, "no training history", transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="#d62728")
            continue
        epochs = np.asarray([float(e.get("epoch", j + 1)) for j, e in enumerate(hist)])
        bad = 0
        for key, color, ls in series:
            y = np.asarray([float(e[key]) if isinstance(e.get(key), (int, float)) else np.nan
                            for e in hist])
            ok = np.isfinite(y) & ((y > 0) if log else True)
            bad += int((~ok & np.asarray([key in e for e in hist])).sum())
            ax.plot(epochs, np.where(ok, y, np.nan), color=color, ls=ls, lw=1.0)
        ax.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
        if bad:
            ax.text(0.97, 0.95, f"{bad} value(s) not drawn", transform=ax.transAxes,
                    ha="right", va="top", fontsize=7, color="#d62728")
        if r == rows - 1 or i + LOSS_COLUMNS >= len(folds):
            ax.set_xlabel("epoch", fontsize=7, labelpad=1)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=col, ls=ls, lw=1.0, label=k)
                        for k, col, ls in series], loc="upper right", ncol=3, fontsize=8,
               frameon=False, bbox_to_anchor=(0.99, 1.0))
    fig.suptitle(title, fontsize=10, x=0.01, y=0.995, ha="left", va="top")
    return _png(fig)


def confusion_png(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str],
                  title: str = "") -> bytes:
    """A confusion matrix of counts (rows = true emotion, columns = predicted) as PNG bytes
    (:data:`CONFUSION_SIZE`)."""
    fig = _figure(CONFUSION_SIZE)
    ax = fig.add_axes((0.2, 0.2, 0.62, 0.68))
    m = np.asarray(matrix, dtype=np.float64)
    im = ax.imshow(m if m.size else np.zeros((1, 1)), cmap="Blues", vmin=0,
                   vmax=max(1.0, float(m.max()) if m.size else 1.0), aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel("predicted emotion")
    ax.set_ylabel("true emotion")
    ax.set_title(title, fontsize=10)
    hi = float(m.max()) if m.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if hi and m[i, j] > hi / 2 else "black", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(im, ax=ax, fraction=0.05)
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return _png(fig)


def subject_f1_png(subjects: Sequence[str], f1: Sequence[float], pooled: float | None = None,
                   title: str = "") -> bytes:
    """Spotting F1 of every subject (fold) as bars, with the pooled F1 as a line; PNG bytes
    (:data:`SUBJECT_F1_SIZE`). Missing values (NaN) are drawn as empty slots marked 'n/a'."""
    fig = _figure(SUBJECT_F1_SIZE)
    ax = fig.add_axes((0.08, 0.2, 0.9, 0.7))
    vals = np.asarray([np.nan if v is None else float(v) for v in f1], dtype=np.float64)
    x = np.arange(len(subjects))
    ax.bar(x, np.nan_to_num(vals), color="#1f77b4")
    for i, v in enumerate(vals):
        if np.isnan(v):
            ax.text(i, 0.02, "n/a", ha="center", fontsize=8, color="#d62728")
    if pooled is not None and np.isfinite(pooled):
        ax.axhline(pooled, color="#ff7f0e", ls="--", lw=1.2, label=f"pooled F1 {pooled:.3f}")
        ax.legend(fontsize=8, loc="upper right")
    step = max(1, len(subjects) // 40)
    ax.set_xticks(x[::step], [str(s) for s in subjects][::step], rotation=90 if len(x) > 12
                  else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.6, max(len(subjects), 1) - 0.4)
    ax.set_xlabel("subject (fold)")
    ax.set_ylabel("spot F1")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def durations_png(pred_frames: np.ndarray, gt_frames: np.ndarray, fps: float | None = None,
                  title: str = "") -> bytes:
    """Histograms of predicted and true micro-expression durations (offset - onset + 1, in
    original frames) on shared bins; PNG bytes (:data:`DURATION_SIZE`). With ``fps`` the top
    axis shows milliseconds."""
    fig = _figure(DURATION_SIZE)
    ax = fig.add_axes((0.1, 0.14, 0.86, 0.62))
    p = np.asarray(pred_frames, dtype=np.float64)
    g = np.asarray(gt_frames, dtype=np.float64)
    both = np.concatenate([p, g]) if (p.size or g.size) else np.array([1.0])
    lo, hi = float(both.min()), float(both.max())
    bins = np.linspace(lo - 0.5, hi + 0.5, int(min(40, max(5, hi - lo + 1))) + 1)
    if g.size:
        ax.hist(g, bins=bins, alpha=0.55, color="#2ca02c", label=f"ground truth (n={g.size})")
    if p.size:
        ax.hist(p, bins=bins, alpha=0.55, color="#1f77b4", label=f"predicted (n={p.size})")
    ax.set_xlabel("duration (frames, original numbering)")
    ax.set_ylabel("intervals")
    if p.size or g.size:
        ax.legend(fontsize=8)
    if fps:
        top = ax.secondary_xaxis("top", functions=(lambda f: f * 1000.0 / fps,
                                                   lambda ms: ms * fps / 1000.0))
        top.set_xlabel("duration (ms)", fontsize=8)
    fig.suptitle(title, fontsize=10, y=0.99)
    return _png(fig)


SWEEP_SIZE = (1000, 420)


def metric_bars_png(settings: Sequence[str], metrics: dict[str, Sequence[float | None]],
                    title: str = "") -> bytes:
    """Grouped bars: one group per setting (a sweep's rows), one bar per metric (STRS, spot F1,
    analysis F1); a missing value (undefined STRS) is drawn as no bar and marked n/a."""
    fig = _figure(SWEEP_SIZE)
    ax = fig.add_subplot(111)
    names = list(metrics)
    x = np.arange(len(settings))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = [np.nan if v is None else float(v) for v in metrics[name]]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, label=name)
        for p, v in zip(pos, vals):
            if np.isnan(v):
                ax.text(p, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([s if len(s) <= 40 else s[:37] + "..." for s in settings], rotation=20,
                       ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    fig.subplots_adjust(bottom=0.3, left=0.07, right=0.98)
    return _png(fig)
