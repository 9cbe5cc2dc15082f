"""Priors of one leave-one-subject-out fold (METHOD.md section 5), stored as ``priors.json``.

- Duration prior ``k_p`` = int((median(offset_index - onset_index) + 1) / 2), in indices after
  skipping: half the length of a typical micro-expression. The decoder's smoothing width,
  peak distance and interval half-width all derive from it.
- Class prior: "balanced" class weights over the frames of the fold's training windows,
  neutral weight multiplied by ``neutral_weight_factor`` (6), or set to 0 under synergy
  strategy 0.

Deliberate difference from the reference: with ``priors.scope: fold`` (the default) k_p comes
from the training subjects' labels only. The reference computes it over every subject, the
held-out one included, which leaks test labels into the decoder; ``scope: global`` reproduces
that, for comparison only. (The reference's class weights already use training windows only.)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vrme.config import CLASS_NAMES, PriorConfig
from vrme.errors import DataError
from vrme.io import write_json_atomic

PRIORS_VERSION = 1


@dataclass
class Priors:
    """Everything one fold's training and decoding take from labels.

    ``k_p`` and ``median_duration`` are in indices after skipping. ``class_weights`` and
    ``class_counts`` are indexed by class id (negative, positive, surprise, others, neutral).
    ``subjects`` are the subjects whose labels gave ``k_p``.
    """

    k_p: int
    class_weights: list[float]
    class_counts: list[int]
    median_duration: int
    n_events: int
    subjects: list[str]
    scope: str
    frame_skip: int
    neutral_weight_factor: float
    synergy_strategy: int
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    version: int = PRIORS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Priors:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``priors.json`` atomically."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Priors:
        """Read a ``priors.json`` written by :meth:`save`."""
        import json

        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: not a readable priors.json ({exc})") from exc


def median_duration(durations: np.ndarray | list[int]) -> int:
    """The median of integer durations as the reference takes it: the element at position
    ``n // 2`` of the sorted list (the upper median when ``n`` is even)."""
    d = np.sort(np.asarray(durations, dtype=np.int64))
    if d.size == 0:
        raise DataError("no micro-expression in the training subjects: cannot estimate k_p")
    return int(d[d.size // 2])


def duration_prior(durations: np.ndarray | list[int]) -> int:
    """k_p = int((median duration + 1) / 2), durations = offset - onset in indices after
    skipping; at least 1."""
    return max(1, int((median_duration(durations) + 1) / 2))


def balanced_class_weights(counts: np.ndarray | list[int], neutral_weight_factor: float = 6.0,
                           synergy_strategy: int = 1) -> np.ndarray:
    """Class weights of the recognition loss from frame counts per class (index = class id).

    "Balanced" as scikit-learn computes it, ``n_frames / (n_classes * count_c)``, over all
    classes (neutral included), then the neutral weight (last class) times
    ``neutral_weight_factor``, or 0 under synergy strategy 0. A class with no frame gets
    weight 0 (it never occurs as a target, so its weight has no effect; scikit-learn would
    refuse instead).
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    w = np.zeros_like(c)
    present = c > 0
    if total > 0:
        w[present] = total / (len(c) * c[present])
    w[-1] = 0.0 if synergy_strategy == 0 else w[-1] * neutral_weight_factor
    return w


def estimate_priors(durations: np.ndarray | list[int], class_counts: np.ndarray | list[int],
                    cfg: PriorConfig, *, synergy_strategy: int, subjects: list[str],
                    frame_skip: int) -> Priors:
    """Priors from event durations (offset_index - onset_index, indices after skipping) of the
    subjects in ``subjects`` and frame class counts of the training windows.

    ``cfg.k_p``, when set, replaces the estimated k_p (the median is still recorded).
    """
    durations = np.asarray(durations, dtype=np.int64)
    med = median_duration(durations) if durations.size else 0
    if cfg.k_p is not None:
        k_p = int(cfg.k_p)
    else:
        k_p = duration_prior(durations)
    weights = balanced_class_weights(class_counts, cfg.neutral_weight_factor, synergy_strategy)
    return Priors(
        k_p=k_p,
        class_weights=[float(x) for x in weights],
        class_counts=[int(x) for x in np.asarray(class_counts)],
        median_duration=med,
        n_events=int(durations.size),
        subjects=sorted(str(s) for s in subjects),
        scope=cfg.scope,
        frame_skip=int(frame_skip),
        neutral_weight_factor=float(cfg.neutral_weight_factor),
        synergy_strategy=int(synergy_strategy),
    )
