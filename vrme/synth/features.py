"""A synthetic dataset at the feature level: feature files, ``labels.parquet`` and
``manifest.parquet`` written directly, without rendering frames.

It exercises everything downstream of feature extraction (windows, priors, training, decoding,
leave-one-subject-out scoring) in seconds. The features imitate what section 3 of METHOD.md
produces: per-frame ROI displacements ``D`` (36 rows) made of slow drift and noise, plus, for
every expression, a rise-and-fall bump (a raised cosine from onset through apex to offset)
along an emotion-specific pattern over the 36 rows; window ``w`` starting at index ``s`` holds
``D[s + t] - D[s]`` (motion relative to the window's first frame, so column 0 is zero) plus
measurement noise. Macro-expressions are longer and stronger bumps along random patterns: they
are labelled ``macro`` and act as distractors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vrme.catalog import LABELS_FILE, MANIFEST_FILE
from vrme.config import EMOTION_CLASSES
from vrme.features.windows import n_windows_for
from vrme.schema import (
    LABELS_SCHEMA,
    MANIFEST_SCHEMA,
    VideoFeatures,
    write_table,
    write_video_features,
)

N_ROWS = 36


@dataclass(frozen=True)
class SyntheticFeatureDataset:
    """Where :func:`make_feature_dataset` wrote its files."""

    root: Path
    manifest_path: Path
    labels_path: Path
    features_dir: Path
    subjects: list[str]


def emotion_patterns(seed: int) -> np.ndarray:
    """One unit-norm 36-row motion pattern per emotion class (4, 36), fixed by ``seed``.

    Each emotion moves its own group of ROI rows (brows, eyes, nose, mouth) with its own signs,
    so the emotion is recoverable from the features.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    groups = [np.arange(0, 12), np.arange(12, 24), np.arange(20, 30), np.arange(24, 36)]
    pats = np.zeros((len(EMOTION_CLASSES), N_ROWS))
    for e, rows in enumerate(groups):
        pats[e, rows] = rng.choice([-1.0, 1.0], size=len(rows)) * rng.uniform(0.6, 1.0, len(rows))
        pats[e] /= np.linalg.norm(pats[e])
    return pats


def _bump(n: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """0 outside [onset, offset], rising as a half cosine to 1 at apex, falling back to 0."""
    y = np.zeros(n)
    t = np.arange(n)
    up = (t >= onset) & (t <= apex)
    down = (t > apex) & (t <= offset)
    y[up] = 0.5 - 0.5 * np.cos(np.pi * (t[up] - onset) / max(1, apex - onset))
    y[down] = 0.5 + 0.5 * np.cos(np.pi * (t[down] - apex) / max(1, offset - apex))
    return y


def make_feature_dataset(
    out_dir: str | os.PathLike[str],
    *,
    subjects: int = 4,
    videos_per_subject: int = 2,
    n_frames: int = 600,
    k: int = 30,
    mes_per_video: int = 4,
    macros_per_video: int = 1,
    me_length: tuple[int, int] = (9, 15),
    macro_length: tuple[int, int] = (40, 60),
    amplitude: float = 1.5,
    macro_amplitude: float = 3.0,
    drift: float = 0.03,
    noise: float = 0.2,
    first_frame: int = 1,
    frame_skip: int = 1,
    emotion_weights: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2),
    seed: int = 0,
    dataset: str = "synthetic_features",
) -> SyntheticFeatureDataset:
    """Write a synthetic feature-level dataset under ``out_dir``.

    ``n_frames`` and the lengths are in indices after skipping; labels are written in original
    numbering (frame = first_frame + index * frame_skip). Layout:
    ``<out_dir>/manifest.parquet``, ``<out_dir>/labels.parquet`` and
    ``<out_dir>/features/<subject>/<video>.parquet``. Deterministic in ``seed``.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    pats = emotion_patterns(seed)
    n_win = n_windows_for(n_frames, k)
    if n_win < 1:
        raise ValueError(f"n_frames={n_frames} gives no window of k={k}")
    half = k // 2
    manifest_rows: list[dict] = []
    label_rows: list[dict] = []
    subject_ids = [f"{i + 1:02d}" for i in range(subjects)]
    for subj in subject_ids:
        subj_gain = rng.uniform(0.8, 1.2)
        for v in range(videos_per_subject):
            video = f"{subj}_{v + 1:02d}"
            events = _place_events(rng, n_frames, mes_per_video, macros_per_video, me_length,
                                   macro_length)
            # Slow drift (smoothed random walk) plus jitter, per ROI row.
            walk = np.cumsum(rng.normal(0, drift, size=(n_frames, N_ROWS)), axis=0)
            kernel = np.ones(15) / 15
            disp = np.stack([np.convolve(walk[:, r], kernel, mode="same")
                             for r in range(N_ROWS)], 1)
            for ev_no, (kind, on, ap, off) in enumerate(events, start=1):
                if kind == "micro":
                    e = int(rng.choice(len(EMOTION_CLASSES), p=np.asarray(emotion_weights)))
                    pat = pats[e] + rng.normal(0, 0.05, N_ROWS)
                    amp = amplitude * subj_gain * rng.uniform(0.8, 1.2)
                    emotion = EMOTION_CLASSES[e]
                else:
                    pat = rng.normal(0, 1, N_ROWS)
                    pat /= np.linalg.norm(pat)
                    amp = macro_amplitude * rng.uniform(0.8, 1.2)
                    emotion = None
                disp += amp * _bump(n_frames, on, ap, off)[:, None] * pat[None, :]
                label_rows.append(dict(
                    dataset=dataset, subject=subj, video=video, event=ev_no,
                    onset=first_frame + on * frame_skip, apex=first_frame + ap * frame_skip,
                    offset=first_frame + off * frame_skip, type=kind,
                    emotion_raw=emotion if emotion else "macro", emotion=emotion,
                    source_file="synthetic", source_row=len(label_rows) + 2,
                ))
            starts = np.arange(n_win) * half
            idx = starts[:, None] + np.arange(k)[None, :]
            vals = disp[idx] - disp[starts][:, None, :]  # (n_win, k, 36)
            vals = vals + rng.normal(0, noise, size=vals.shape)
            vals[:, 0, :] = 0.0
            feats = VideoFeatures(
                subject=subj, video=video,
                values=np.ascontiguousarray(vals.transpose(0, 2, 1), dtype=np.float32),
                start_index=starts.astype(np.int32),
                start_frame=(first_frame + starts * frame_skip).astype(np.int64),
                align=np.array(["detected"] * n_win, dtype=object),
                n_frames=n_frames, first_frame=first_frame, frame_skip=frame_skip,
                meta={"synthetic": True, "seed": seed},
            )
            write_video_features(out / "features" / subj / f"{video}.parquet", feats)
            positions = n_frames * frame_skip
            manifest_rows.append(dict(
                dataset=dataset, subject=subj, subject_dir=subj, video=video, source="frames",
                path=f"{subj}/{video}", name_prefix="", name_suffix=".jpg", pad_width=0,
                frame_files=None, first_frame=first_frame, last_frame=first_frame + positions - 1,
                n_frames=positions, n_files=positions, missing_frames=[],
                frame_numbering="contiguous", fps=30.0, width=640, height=480, labelled=True,
            ))
    write_table(pd.DataFrame(manifest_rows), out / MANIFEST_FILE, MANIFEST_SCHEMA)
    write_table(pd.DataFrame(label_rows), out / LABELS_FILE, LABELS_SCHEMA)
    return SyntheticFeatureDataset(root=out, manifest_path=out / MANIFEST_FILE,
                                   labels_path=out / LABELS_FILE,
                                   features_dir=out / "features", subjects=subject_ids)


def _place_events(rng: np.random.Generator, n: int, n_micro: int, n_macro: int,
                  micro_len: tuple[int, int], macro_len: tuple[int, int]
                  ) -> list[tuple[str, int, int, int]]:
    """Non-overlapping (kind, onset, apex, offset) in indices, sorted by onset, with gaps."""
    kinds = ["micro"] * n_micro + ["macro"] * n_macro
    rng.shuffle(kinds)
    lengths = [int(rng.integers(*(micro_len if kd == "micro" else macro_len), endpoint=True))
               for kd in kinds]
    margin, min_gap = 20, 15
    free = n - 2 * margin - sum(lengths) - min_gap * max(0, len(kinds) - 1)
    if free < 0:
        raise ValueError(f"{len(kinds)} events do not fit in {n} frames")
    gaps = rng.dirichlet(np.ones(len(kinds) + 1)) * free if kinds else np.array([free])
    gaps[1:] += min_gap
    events = []
    pos = float(margin)
    for kd, length, gap in zip(kinds, lengths, gaps):
        pos += gap
        on = int(pos)
        off = on + length
        ap = on + int(round(length * rng.uniform(0.35, 0.6)))
        events.append((kd, on, ap, off))
        pos = off + 1
    return events
