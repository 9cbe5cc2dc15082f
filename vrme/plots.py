"""Figures of the report and of ``vrme spot``, drawn with matplotlib's Agg backend into PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` (no pyplot, no global state, safe
in worker threads) of a fixed size in pixels (the ``*_SIZE`` constants, width x height at
:data:`DPI`), so a figure's PNG always has the same dimensions. Frame numbers on the axes are
original frame numbers (the numbers in the frame file names).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

DPI = 100
SCORE_SIZE = (1000, 300)
"""Pixels (width, height) of a per-video score curve."""
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
                    threshold: float | None = None, title: str = "") -> bytes:
    """One video's per-frame spot score with its intervals, as PNG bytes (:data:`SCORE_SIZE`).

    ``frames`` (n,) are original frame numbers of the scores ``spot`` (n,) in [0, 1].
    ``gt`` and ``pred`` are interval tables with ``onset``, ``offset`` (original numbers,
    inclusive) and ``emotion`` (``pred`` may have ``apex``): ground truth is drawn as shaded
    bands over the whole height, predictions as solid bars in a lane under the curve (with the
    apex as a tick), both coloured by emotion. ``smoothed``/``threshold``: the decoder's
    smoothed curve and peak threshold, drawn when given.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = _figure(SCORE_SIZE)
    ax = fig.add_axes((0.06, 0.17, 0.74, 0.72))
    frames = np.asarray(frames)
    spot = np.asarray(spot, dtype=np.float64)
    lane = (-0.16, -0.05)
    emotions_seen: list[str] = []
    for row in (gt.itertuples(index=False) if gt is not None else []):
        ax.axvspan(row.onset - 0.5, row.offset + 0.5, ymin=0.0, ymax=1.0,
                   color=emotion_color(row.emotion), alpha=0.22, lw=0)
        emotions_seen.append(str(row.emotion))
    for row in (pred.itertuples(index=False) if pred is not None else []):
        c = emotion_color(row.emotion)
        ax.fill_between([row.onset - 0.5, row.offset + 0.5], lane[0], lane[1], color=c, lw=0)
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
    ax.set_title(title, fontsize=10, loc="left")
    handles = [Line2D([], [], color="black", lw=0.9, label="spot score")]
    if smoothed is not None:
        handles.append(Line2D([], [], color="#ff7f0e", lw=1.0, ls="--", label="smoothed"))
    if threshold is not None:
        handles.append(Line2D([], [], color="#ff7f0e", lw=0.8, ls=":", label="peak threshold"))
    if gt is not None:
        handles.append(Patch(facecolor="#bbbbbb", alpha=0.5, label="ground truth (band)"))
    if pred is not None:
        handles.append(Patch(facecolor="#444444", label="predicted (bar below)"))
    for e in EMOTION_COLORS:
        if e in emotions_seen:
            handles.append(Patch(facecolor=emotion_color(e), label=e))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.81, 0.53), fontsize=8,
               frameon=False)
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
