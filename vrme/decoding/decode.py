"""From per-frame model outputs to intervals with an emotion (METHOD.md section 8).

Every function is small and pure. Positions are *indices after frame skipping* within one
video's covered frames (see :func:`vrme.features.windows.covered_frames`) unless a name says
``frame`` (original numbering).

Deliberate differences from the reference:

- Stitching is per video (:func:`stitch_windows`). The reference restarts stitching at each
  batch boundary, which overwrites the first half-window of some videos.
- The fixed interval of ``interval_strategy: 0`` is clipped to the video; the reference can
  emit an onset below 0 or an offset past the last frame.
- The majority vote takes every frame strictly inside the interval, onset+1 .. offset-1; the
  reference's slice also leaves out offset-1.
- A curve with (almost) no variation yields no interval; the reference's zero-padded smoothing
  turns a flat curve into a plateau and reports one peak on it.

Two modes (``decode.mode``), each the reference's :func:`spotting` path of its name:

- ``loso`` (default): the path of its leave-one-subject-out benchmarks (CAS(ME)^3, SAMM-LV):
  extensible intervals on the raw scores, then suppression.
- ``samm_test``: the path of its MEGC SAMM test set (``dataset_name == 'SAMM_test'``): its own
  p and k_p, intervals from fixed levels on the smoothed scores
  (:func:`threshold_interval`), no suppression, the negative logit penalised and a vote wary
  of 'negative' (:func:`penalty_vote`).
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
(:func:`vrme.training.train.decode_hash`): bump it with any change that changes decoded intervals,
and exactly the fold intervals are decoded again (no training)."""

NEUTRAL_CLASS = len(CLASS_NAMES) - 1
NEGATIVE_CLASS = CLASS_NAMES.index("negative")
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


def first_pair_below(s: np.ndarray, indices: range, step: int, level: float) -> int | None:
    """The first ``i`` of ``indices`` such that ``s[i]`` and its neighbour ``s[i + step]``
    (which must exist) are both below ``level``; None if there is none."""
    n = len(s)
    for i in indices:
        j = i + step
        if 0 <= j < n and s[i] < level and s[j] < level:
            return i
    return None


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
    stop = first_pair_below(s, range(onset - 1, lo_ext - 1, -1), -1, mu)
    if stop is not None:
        onset = stop + 1
    stop = first_pair_below(s, range(offset + 1, hi_ext + 1), 1, mu)
    if stop is not None:
        offset = stop - 1
    apex = onset + int(np.argmax(s[onset:offset + 1]))
    return Proposal(onset=int(onset), apex=apex, offset=int(offset), peak=int(peak))


def threshold_interval(smoothed: np.ndarray, peak: int, k_p: int, low: float = 0.2,
                       high: float = 0.8) -> Proposal:
    """``decode.mode: samm_test``: the interval around one peak from fixed levels on the
    *smoothed* scores (the reference's SAMM test-set rule, with its index ranges).

    - Onset: walking down from peak - 1 to peak - k_p, the first i with smoothed[i] and
      smoothed[i - 1] below ``low`` gives onset = i; else, from peak - k_p - 1 down to
      peak - 2*k_p, the first such pair below ``high`` does; else onset = peak - 2*k_p.
    - Offset: walking up from peak + 1 to peak + k_p - 1, the first i with smoothed[i] and
      smoothed[i + 1] below ``low`` gives offset = i + 1; else, from peak + k_p + 1 to
      peak + 2*k_p - 1, the first such pair below ``high`` does; else offset = peak + 2*k_p.
    - Every bound is clipped to [0, n-1]; apex = the highest *smoothed* score in
      [onset, offset] (first one on ties).

    The sides are not mirror images (the onset is the inner frame of its pair, the offset the
    outer one; the offset's walks skip peak + k_p): this is the reference's rule, kept as is.
    """
    s = np.asarray(smoothed, dtype=np.float64)
    n = len(s)
    near_lo, far_lo = max(0, peak - k_p), max(0, peak - 2 * k_p)
    near_hi, far_hi = min(n - 1, peak + k_p), min(n - 1, peak + 2 * k_p)

    onset = first_pair_below(s, range(peak - 1, near_lo - 1, -1), -1, low)
    if onset is None:
        onset = first_pair_below(s, range(near_lo - 1, far_lo - 1, -1), -1, high)
    if onset is None:
        onset = far_lo
    offset = first_pair_below(s, range(peak + 1, near_hi), 1, low)
    if offset is None:
        offset = first_pair_below(s, range(near_hi + 1, far_hi), 1, high)
    offset = far_hi if offset is None else offset + 1
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


def frame_classes(logits: np.ndarray, synergy_strategy: int,
                  negative_penalty: float = 0.0) -> np.ndarray:
    """Per-frame class ids from class logits (n, 5) under a synergy strategy.

    1 (recognition mainly): the neutral logit is set to 0 and ``negative_penalty`` subtracted
    from the negative one (0 except in ``samm_test`` mode), then argmax over all five.
    2 (spotting mainly): argmax over the four emotion classes (never neutral).
    0 (none): plain argmax over all five.
    """
    z = np.array(logits, dtype=np.float64, copy=True)
    if synergy_strategy == 2:
        return np.argmax(z[:, :NEUTRAL_CLASS], axis=1).astype(np.int64)
    if synergy_strategy == 1:
        z[:, NEUTRAL_CLASS] = 0.0
        z[:, NEGATIVE_CLASS] -= negative_penalty
    return np.argmax(z, axis=1).astype(np.int64)


def _inside(classes: np.ndarray, onset: int, offset: int) -> np.ndarray:
    """The classes of the frames strictly inside [onset, offset] (onset+1 .. offset-1)."""
    return np.asarray(classes)[max(0, onset + 1):max(0, offset)]


def _most_frequent(values: np.ndarray) -> int:
    """The most frequent value; ties go to the one met first."""
    uniq, first, counts = np.unique(values, return_index=True, return_counts=True)
    return int(uniq[np.lexsort((first, -counts))[0]])


def majority_vote(classes: np.ndarray, onset: int, offset: int) -> int:
    """Most frequent class among frames strictly inside [onset, offset] (onset+1 .. offset-1).

    Ties go to the class met first in frame order; no frame inside gives neutral (4).
    """
    inside = _inside(classes, onset, offset)
    return _most_frequent(inside) if inside.size else NEUTRAL_CLASS


def penalty_vote(classes: np.ndarray, onset: int, offset: int,
                 min_other_share: float = 0.2) -> int:
    """``samm_test`` mode's vote over the same frames as :func:`majority_vote`: when more than
    ``min_other_share`` of them are not 'negative' (neutral counts as not negative), the most
    frequent class among those wins; otherwise the most frequent of all. Ties go to the class
    met first; no frame inside gives neutral (4)."""
    inside = _inside(classes, onset, offset)
    if inside.size == 0:
        return NEUTRAL_CLASS
    others = inside[inside != NEGATIVE_CLASS]
    if others.size / inside.size > min_other_share:
        return _most_frequent(others)
    return _most_frequent(inside)


def decode_params(cfg: DecodeConfig, k_p: int) -> tuple[float, int]:
    """(p, k_p) the decoder uses for a model whose duration prior is ``k_p``: ``cfg.p`` and
    ``k_p`` in ``loso`` mode; ``samm_test`` mode's own p, and its k_p unless that is null."""
    if cfg.mode == "samm_test":
        return cfg.samm_test.p, int(cfg.samm_test.k_p or k_p)
    return cfg.p, int(k_p)


def propose_intervals(scores: np.ndarray, k_p: int, cfg: DecodeConfig) -> list[Proposal]:
    """Smoothing, threshold, peaks, interval selection and (with the extensible strategy)
    suppression, on one video's per-frame spot scores. ``k_p`` is the model's duration
    prior; p and the k_p used are :func:`decode_params`'. Returns proposals in peak order
    (= onset order in ``loso`` mode).

    As in the reference, suppression is part of the extensible strategy of ``loso`` mode: with
    ``interval_strategy: 0`` (either mode) the fixed intervals of all peaks are kept, and
    ``samm_test`` mode keeps all its :func:`threshold_interval` intervals.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or float(np.ptp(s)) < FLAT_TOLERANCE:
        return []
    p, k_p = decode_params(cfg, k_p)
    smoothed = box_smooth(s, 2 * k_p)
    peaks = [int(pk) for pk in find_score_peaks(smoothed, peak_threshold(smoothed, p), k_p)]
    if cfg.interval_strategy == 0:
        return [fixed_interval(pk, k_p, len(s)) for pk in peaks]
    if cfg.mode == "samm_test":
        t = cfg.samm_test
        return [threshold_interval(smoothed, pk, k_p, t.low_threshold, t.high_threshold)
                for pk in peaks]
    props = [extensible_interval(s, pk, k_p, cfg.onset_divisor, cfg.max_extension)
             for pk in peaks]
    return suppress(props, k_p, cfg.iou_threshold)


def decode_scores(scores: np.ndarray, logits: np.ndarray, k_p: int,
                  cfg: DecodeConfig) -> pd.DataFrame:
    """One video's intervals from its per-frame spot scores (n,) and class logits (n, 5).

    Returns a table with ``INTERVAL_COLUMNS`` (indices after skipping; ``score`` = raw spot score
    at the apex). The emotion is :func:`majority_vote`'s (``loso`` mode) or
    :func:`penalty_vote`'s on penalised logits (``samm_test`` mode). Intervals whose vote is
    neutral are dropped unless ``cfg.neutral_intervals == "keep"``.
    """
    s = np.asarray(scores, dtype=np.float64)
    samm_test = cfg.samm_test if cfg.mode == "samm_test" else None
    classes = frame_classes(logits, cfg.synergy_strategy,
                            samm_test.negative_penalty if samm_test else 0.0)
    rows = []
    for prop in propose_intervals(s, k_p, cfg):
        c = (penalty_vote(classes, prop.onset, prop.offset, samm_test.min_other_share)
             if samm_test else majority_vote(classes, prop.onset, prop.offset))
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
