"""From per-frame model outputs to intervals with an emotion (METHOD.md section 8).

Every function is small and pure. Positions are *indices after frame skipping* within one
video's covered frames (see :func:`vrme.windows.covered_frames`) unless a name says ``frame``
(original numbering).

Deliberate differences from the reference:

- Stitching is per video (:func:`stitch_windows`). The reference restarts stitching at each
  batch boundary, which overwrites the first half-window of some videos.
- The fixed interval of ``interval_strategy: 0`` is clipped to the video; the reference can
  emit an onset below 0 or an offset past the last frame.
- The majority vote takes every frame strictly inside the interval, onset+1 .. offset-1; the
  reference's slice also leaves out offset-1.
- A curve with (almost) no variation yields no interval; the reference's zero-padded smoothing
  turns a flat curve into a plateau and reports one peak on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import find_peaks

from vrme.config import CLASS_NAMES, DecodeConfig

DECODE_VERSION = 1
"""Version of the decoding numerics. Part of every fold's decode hash
(:func:`vrme.train.decode_hash`): bump it with any change that changes decoded intervals, and
exactly the fold intervals are decoded again (no training)."""

NEUTRAL_CLASS = len(CLASS_NAMES) - 1
FLAT_TOLERANCE = 1e-6
"""A score curve whose max - min is below this has no peak."""

INTERVAL_COLUMNS = ["onset_index", "apex_index", "offset_index", "peak_index", "class_id",
                    "emotion", "score"]
OUTPUT_COLUMNS = ["subject", "video", "onset", "apex", "offset", "emotion", "score"]


@dataclass(frozen=True)
class Proposal:
    """A candidate interval, inclusive indices after skipping; ``peak`` is the smoothed-curve
    peak that produced it, ``apex`` the highest raw score inside."""

    onset: int
    apex: int
    offset: int
    peak: int


def stitch_windows(per_window: np.ndarray) -> np.ndarray:
    """Per-window outputs (n_windows, k, ...) -> per-frame sequence ((n_windows+1)*k/2, ...).

    The first window gives all its k frames; every later window w gives its second half,
    indices (w+1)*k/2 .. (w+2)*k/2 - 1. Windows overlap by half, so this covers every index once.
    """
    per_window = np.asarray(per_window)
    n, k = per_window.shape[:2]
    if n == 0:
        return per_window.reshape((0,) + per_window.shape[2:])
    half = k // 2
    parts = [per_window[0]] + [per_window[w, half:] for w in range(1, n)]
    return np.concatenate(parts, axis=0)


def box_smooth(scores: np.ndarray, width: int) -> np.ndarray:
    """Moving average with a box of ``width`` samples, zero-padded, same length as the input
    (numpy ``convolve`` mode ``same``, as the reference). The width is capped at the length."""
    scores = np.asarray(scores, dtype=np.float64)
    width = max(1, min(int(width), len(scores)))
    return np.convolve(scores, np.ones(width) / width, mode="same")


def peak_threshold(smoothed: np.ndarray, p: float) -> float:
    """Peak height threshold = mean + p * (max - mean) of the smoothed curve."""
    m = float(np.mean(smoothed))
    return m + p * (float(np.max(smoothed)) - m)


def find_score_peaks(smoothed: np.ndarray, threshold: float, distance: int) -> np.ndarray:
    """Indices of the smoothed curve's peaks at or above ``threshold``, at least ``distance``
    apart (scipy ``find_peaks``)."""
    if len(smoothed) < 3:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = find_peaks(smoothed, height=threshold, distance=max(1, int(distance)))
    return peaks.astype(np.int64)


def fixed_interval(peak: int, k_p: int, n: int) -> Proposal:
    """``interval_strategy: 0``: [peak - k_p, peak + k_p] clipped to [0, n-1], apex = peak."""
    return Proposal(onset=max(0, peak - k_p), apex=int(peak), offset=min(n - 1, peak + k_p),
                    peak=int(peak))


def extensible_interval(scores: np.ndarray, peak: int, k_p: int, onset_divisor: float = 1.5,
                        max_extension: int = 5) -> Proposal:
    """The extensible interval selection around one peak, on the raw (unsmoothed) scores.

    With mu = mean of ``scores`` (the whole video):

    1. Core: onset = the frame before the first rise above mu/``onset_divisor`` in
       (peak - k_p, peak); offset = the frame after the last fall above that level in
       (peak, peak + k_p). Without such a frame the side stays at peak -/+ k_p.
    2. Extension: walking outward from each side, the first pair of consecutive frames below
       mu (the inner one at index > 0, resp. < n-1) stops it; the side moves to the frame just
       inside that pair. The walk goes at most ``max_extension * k_p`` from the peak; if it
       finds no stop, that side keeps its core position (reference behaviour).
    3. Apex = the highest raw score in [onset, offset] (first one on ties).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    mu = float(s.mean())
    low = mu / onset_divisor
    lo0, hi0 = max(0, peak - k_p), min(n - 1, peak + k_p)

    onset = lo0
    for i in range(lo0 + 1, peak):
        if s[i] > s[i - 1] and s[i] > low:
            onset = i - 1
            break
    offset = hi0
    for i in range(hi0 - 1, peak, -1):
        if s[i] > s[i + 1] and s[i] > low:
            offset = i + 1
            break

    lo_ext, hi_ext = max(0, peak - k_p * max_extension), min(n - 1, peak + k_p * max_extension)
    for i in range(onset - 1, lo_ext - 1, -1):
        if i > 0 and s[i] < mu and s[i - 1] < mu:
            onset = i + 1
            break
    for j in range(offset + 1, hi_ext + 1):
        if j < n - 1 and s[j] < mu and s[j + 1] < mu:
            offset = j - 1
            break
    apex = onset + int(np.argmax(s[onset:offset + 1]))
    return Proposal(onset=int(onset), apex=apex, offset=int(offset), peak=int(peak))


def interval_iou(a: Proposal, b: Proposal) -> float:
    """Overlap of two proposals as the reference's suppression measures it: lengths are
    offset - onset (not +1) and the union is the span from the first onset to the last offset."""
    inter = max(0, min(a.offset, b.offset) - max(a.onset, b.onset))
    union = max(a.offset, b.offset) - min(a.onset, b.onset)
    return inter / union if union else 0.0


def suppress(proposals: Sequence[Proposal], k_p: int, iou_threshold: float = 0.2) -> list[Proposal]:
    """Non-maximum suppression in onset order: a proposal is kept only if, against every kept
    one, its IoU is below ``iou_threshold`` and its apex is more than k_p away."""
    kept: list[Proposal] = []
    for b in sorted(proposals, key=lambda x: x.onset):
        if all(interval_iou(b, a) < iou_threshold and abs(b.apex - a.apex) > k_p for a in kept):
            kept.append(b)
    return kept


def frame_classes(logits: np.ndarray, synergy_strategy: int) -> np.ndarray:
    """Per-frame class ids from class logits (n, 5) under a synergy strategy.

    1 (recognition mainly): the neutral logit is set to 0, then argmax over all five.
    2 (spotting mainly): argmax over the four emotion classes (never neutral).
    0 (none): plain argmax over all five.
    """
    z = np.array(logits, dtype=np.float64, copy=True)
    if synergy_strategy == 2:
        return np.argmax(z[:, :NEUTRAL_CLASS], axis=1).astype(np.int64)
    if synergy_strategy == 1:
        z[:, NEUTRAL_CLASS] = 0.0
    return np.argmax(z, axis=1).astype(np.int64)


def majority_vote(classes: np.ndarray, onset: int, offset: int) -> int:
    """Most frequent class among frames strictly inside [onset, offset] (onset+1 .. offset-1).

    Ties go to the class met first in frame order; no frame inside gives neutral (4).
    """
    inside = np.asarray(classes)[max(0, onset + 1):max(0, offset)]
    if inside.size == 0:
        return NEUTRAL_CLASS
    values, first, counts = np.unique(inside, return_index=True, return_counts=True)
    best = np.lexsort((first, -counts))[0]
    return int(values[best])


def propose_intervals(scores: np.ndarray, k_p: int, cfg: DecodeConfig) -> list[Proposal]:
    """Smoothing, threshold, peaks, interval selection and (with the extensible strategy)
    suppression, on one video's per-frame spot scores. Returns proposals in onset order.

    As in the reference, suppression is part of the extensible strategy: with
    ``interval_strategy: 0`` the fixed intervals of all peaks are kept.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or float(np.ptp(s)) < FLAT_TOLERANCE:
        return []
    smoothed = box_smooth(s, 2 * k_p)
    peaks = find_score_peaks(smoothed, peak_threshold(smoothed, cfg.p), k_p)
    if cfg.interval_strategy == 1:
        props = [extensible_interval(s, int(pk), k_p, cfg.onset_divisor, cfg.max_extension)
                 for pk in peaks]
        return suppress(props, k_p, cfg.iou_threshold)
    return [fixed_interval(int(pk), k_p, len(s)) for pk in peaks]


def decode_scores(scores: np.ndarray, logits: np.ndarray, k_p: int,
                  cfg: DecodeConfig) -> pd.DataFrame:
    """One video's intervals from its per-frame spot scores (n,) and class logits (n, 5).

    Returns a table with ``INTERVAL_COLUMNS`` (indices after skipping; ``score`` = raw spot score
    at the apex). Intervals whose vote is neutral are dropped unless
    ``cfg.neutral_intervals == "keep"``.
    """
    s = np.asarray(scores, dtype=np.float64)
    classes = frame_classes(logits, cfg.synergy_strategy)
    rows = []
    for prop in propose_intervals(s, k_p, cfg):
        c = majority_vote(classes, prop.onset, prop.offset)
        if c == NEUTRAL_CLASS and cfg.neutral_intervals == "drop":
            continue
        rows.append((prop.onset, prop.apex, prop.offset, prop.peak, c, CLASS_NAMES[c],
                     float(s[prop.apex])))
    df = pd.DataFrame(rows, columns=INTERVAL_COLUMNS)
    return df.astype({"onset_index": "int64", "apex_index": "int64", "offset_index": "int64",
                      "peak_index": "int64", "class_id": "int64", "score": "float64"})


def decode_video(scores: np.ndarray, logits: np.ndarray, k_p: int, cfg: DecodeConfig, *,
                 subject: str, video: str, first_frame: int, frame_skip: int) -> pd.DataFrame:
    """:func:`decode_scores`, mapped back to original frame numbers
    (frame = first_frame + index * frame_skip). Columns ``OUTPUT_COLUMNS``."""
    iv = decode_scores(scores, logits, k_p, cfg)
    out = pd.DataFrame({
        "subject": pd.Series([str(subject)] * len(iv), dtype=object),
        "video": pd.Series([str(video)] * len(iv), dtype=object),
        "onset": first_frame + iv["onset_index"].to_numpy(np.int64) * frame_skip,
        "apex": first_frame + iv["apex_index"].to_numpy(np.int64) * frame_skip,
        "offset": first_frame + iv["offset_index"].to_numpy(np.int64) * frame_skip,
        "emotion": iv["emotion"].astype(object).to_numpy(),
        "score": iv["score"].to_numpy(np.float64),
    })
    return out[OUTPUT_COLUMNS]


def empty_intervals() -> pd.DataFrame:
    """An empty intervals table with ``OUTPUT_COLUMNS``."""
    return pd.DataFrame({
        "subject": pd.Series(dtype=object), "video": pd.Series(dtype=object),
        "onset": pd.Series(dtype="int64"), "apex": pd.Series(dtype="int64"),
        "offset": pd.Series(dtype="int64"), "emotion": pd.Series(dtype=object),
        "score": pd.Series(dtype="float64"),
    })
