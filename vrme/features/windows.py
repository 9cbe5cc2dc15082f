"""Windows and per-frame pseudo-labels (METHOD.md sections 2, 4 and 7).

Units: every ``*_index`` value here is an *index after frame skipping* (index j is position
j * frame_skip; its original number is first_frame + j * frame_skip). ``onset``/``apex``/``offset``
without a suffix are original frame numbers, as in ``labels.parquet``.

Deliberate difference from the reference: a label's frame number becomes an index with the
video's real first frame number, ``(frame - first_frame) // frame_skip``; the reference subtracts
a blanket 1 (it assumes every video starts at frame 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vrme.catalog import video_file
from vrme.config import CLASS_NAMES, EMOTION_CLASSES
from vrme.errors import DataError, LabelError
from vrme.io import read_parquet_metadata

log = logging.getLogger(__name__)

NEUTRAL_CLASS = len(EMOTION_CLASSES)
"""Class id of neutral (no micro-expression) frames: 4."""

CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

EVENT_COLUMNS = [
    "subject", "video", "onset", "apex", "offset", "emotion",
    "onset_index", "apex_index", "offset_index", "class_id",
]


def frame_to_index(frames: np.ndarray | int, first_frame: int, frame_skip: int) -> np.ndarray:
    """Original frame numbers -> indices after skipping: ``(frame - first_frame) // frame_skip``."""
    return (np.asarray(frames, dtype=np.int64) - int(first_frame)) // int(frame_skip)


def n_windows_for(n_frames: int, k: int) -> int:
    """Windows of a video of ``n_frames`` indices (after skipping): ``n // (k/2) - 1``, >= 0."""
    return max(0, int(n_frames) // (k // 2) - 1)


def covered_frames(n_windows: int, k: int) -> int:
    """Indices covered by ``n_windows`` windows of length ``k``, stride k/2 (0 if none)."""
    return (n_windows + 1) * (k // 2) if n_windows > 0 else 0


def micro_events(labels: pd.DataFrame) -> pd.DataFrame:
    """The micro-expression rows of a labels table, in table order.

    A row whose offset is before its onset takes its apex as offset when the apex is usable
    (the reference's rule for an offset written as 0); otherwise it is a :class:`LabelError`
    naming the spreadsheet row. A micro row without an emotion class is a LabelError as well.
    """
    ev = labels[labels["type"] == "micro"].copy()
    bad_offset = ev["offset"].astype("Int64") < ev["onset"].astype("Int64")
    for i in np.flatnonzero(bad_offset.fillna(False).to_numpy()):
        row = ev.iloc[i]
        where = _where(row)
        apex = row["apex"]
        if pd.notna(apex) and int(apex) >= int(row["onset"]):
            log.warning("%s: offset %s before onset %s; using apex %s as offset",
                        where, row["offset"], row["onset"], apex)
            ev.iloc[i, ev.columns.get_loc("offset")] = int(apex)
        else:
            raise LabelError(f"{where}: offset {row['offset']} is before onset {row['onset']}")
    unknown = ~ev["emotion"].isin(EMOTION_CLASSES)
    if unknown.any():
        row = ev[unknown].iloc[0]
        raise LabelError(f"{_where(row)}: emotion {row['emotion']!r} is not one of "
                         f"{', '.join(EMOTION_CLASSES)}")
    return ev


def _where(row: pd.Series) -> str:
    src = row.get("source_file")
    r = row.get("source_row")
    place = f"{src} row {r}" if isinstance(src, str) and pd.notna(r) else "labels"
    return f"{place} (subject {row['subject']}, video {row['video']})"


def video_events(labels: pd.DataFrame, subject: str, video: str, first_frame: int,
                 frame_skip: int) -> pd.DataFrame:
    """One video's micro-expressions with indices after skipping (columns ``EVENT_COLUMNS``).

    ``labels`` is a labels table (original numbering); rows of other videos are ignored.
    """
    ev = micro_events(labels)
    ev = ev[(ev["subject"].astype(str) == str(subject)) & (ev["video"].astype(str) == str(video))]
    return events_to_index(ev, first_frame, frame_skip)


def events_to_index(ev: pd.DataFrame, first_frame: int, frame_skip: int) -> pd.DataFrame:
    """Add ``onset_index``, ``apex_index`` (-1 when not annotated), ``offset_index`` and
    ``class_id`` to micro-expression rows of one video (original numbering in, indices out)."""
    out = pd.DataFrame({
        "subject": ev["subject"].astype(str).to_numpy(),
        "video": ev["video"].astype(str).to_numpy(),
        "onset": ev["onset"].astype("int64").to_numpy(),
        "apex": ev["apex"].astype("Int64").to_numpy(),
        "offset": ev["offset"].astype("int64").to_numpy(),
        "emotion": ev["emotion"].astype(str).to_numpy(),
    })
    out["onset_index"] = frame_to_index(out["onset"].to_numpy(), first_frame, frame_skip)
    out["offset_index"] = frame_to_index(out["offset"].to_numpy(), first_frame, frame_skip)
    apex = out["apex"].fillna(-1).astype("int64").to_numpy()
    out["apex_index"] = np.where(apex >= 0, frame_to_index(apex, first_frame, frame_skip), -1)
    out["class_id"] = out["emotion"].map(CLASS_ID).astype("int64")
    return out[EVENT_COLUMNS].reset_index(drop=True)


def frame_pseudo_labels(events: pd.DataFrame, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame targets of one video from its events (indices after skipping).

    For every event, indices ``onset_index + 1 .. offset_index - 1`` get spot label 1 and the
    event's class; every other index gets spot 0 and class neutral (4). Events are written in
    table order, so a later event wins where two overlap. Indices outside ``[0, n_frames)``
    are ignored. Returns ``(spot, cls)``: float32 and int64 arrays of length ``n_frames``.
    """
    spot = np.zeros(int(n_frames), dtype=np.float32)
    cls = np.full(int(n_frames), NEUTRAL_CLASS, dtype=np.int64)
    for on, off, c in zip(events["onset_index"], events["offset_index"], events["class_id"]):
        lo, hi = max(int(on) + 1, 0), min(int(off) - 1, int(n_frames) - 1)
        if lo <= hi:
            spot[lo:hi + 1] = 1.0
            cls[lo:hi + 1] = int(c)
    return spot, cls


def window_targets(spot: np.ndarray, cls: np.ndarray, n_windows: int,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut per-frame targets into windows: window w takes indices [w*k/2, w*k/2 + k).

    Returns ``(spot_w, cls_w)`` of shape (n_windows, k). ``spot``/``cls`` must cover
    :func:`covered_frames` indices.
    """
    half = k // 2
    need = covered_frames(n_windows, k)
    if len(spot) < need:
        raise ValueError(f"targets cover {len(spot)} indices, windows need {need}")
    if n_windows == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    idx = np.arange(n_windows)[:, None] * half + np.arange(k)[None, :]
    return spot[idx], cls[idx]


def shuffle_events(events: pd.DataFrame, n_frames: dict[tuple[str, str], int],
                   seed: int) -> pd.DataFrame:
    """Control experiment: move every event to a random place in its own video.

    Length (in indices), emotion and order are kept; the new onset is uniform over the
    positions where the event fits inside ``n_frames[(subject, video)]`` (indices after
    skipping). Original-numbering columns are left unchanged (they are not used for training).
    """
    rng = np.random.default_rng(seed)
    out = events.copy()
    for i in range(len(out)):
        n = int(n_frames[(str(out.at[i, "subject"]), str(out.at[i, "video"]))])
        length = int(out.at[i, "offset_index"] - out.at[i, "onset_index"])
        start = int(rng.integers(0, max(1, n - length)))
        shift = start - int(out.at[i, "onset_index"])
        out.at[i, "onset_index"] += shift
        out.at[i, "offset_index"] += shift
        if out.at[i, "apex_index"] >= 0:
            out.at[i, "apex_index"] += shift
    return out


# -- videos and their feature files --------------------------------------------------------


@dataclass(frozen=True)
class VideoRef:
    """One video's feature file, known from its metadata only (values not loaded).

    ``n_frames`` is the number of indices after skipping; ``n_windows`` the file's rows.
    """

    subject: str
    video: str
    path: Path
    n_frames: int
    n_windows: int
    first_frame: int
    frame_skip: int
    k: int
    meta: dict

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.video)


def scan_video(features_dir: str | os.PathLike[str], subject: str, video: str,
               k: int | None = None, frame_skip: int | None = None,
               first_frame: int | None = None) -> VideoRef:
    """Read one feature file's metadata (not its values) and check it against expectations.

    ``k``, ``frame_skip`` and ``first_frame`` (from the config and the manifest), when given,
    must match what the file records; a mismatch or a missing file is a :class:`DataError`.
    """
    path = video_file(features_dir, subject, video)
    if not path.is_file():
        raise DataError(f"feature file missing: {path} (subject {subject}, video {video}); "
                        "run the features step first")
    meta = read_parquet_metadata(path).get("vrme")
    if not isinstance(meta, dict) or "k" not in meta:
        raise DataError(f"{path}: not a vrme feature file (no 'vrme' metadata)")
    n_rows = pq.read_metadata(path).num_rows
    ref = VideoRef(subject=str(subject), video=str(video), path=path,
                   n_frames=int(meta["n_frames"]), n_windows=int(n_rows),
                   first_frame=int(meta["first_frame"]), frame_skip=int(meta["frame_skip"]),
                   k=int(meta["k"]), meta=meta)
    for name, want in (("k", k), ("frame_skip", frame_skip), ("first_frame", first_frame)):
        got = getattr(ref, name)
        if want is not None and int(want) != got:
            raise DataError(f"{path}: {name} is {got} in the feature file but {want} is expected "
                            "(config or manifest); rebuild the features")
    expected = n_windows_for(ref.n_frames, ref.k)
    if ref.n_windows != expected:
        raise DataError(f"{path}: {ref.n_windows} windows but {ref.n_frames} frames with k={ref.k} "
                        f"give {expected}")
    return ref


def video_targets(ref: VideoRef, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Window targets ``(spot_w, cls_w)``, each (n_windows, k), of one video from its events
    (indices after skipping)."""
    spot, cls = frame_pseudo_labels(events, max(ref.n_frames, covered_frames(ref.n_windows, ref.k)))
    return window_targets(spot, cls, ref.n_windows, ref.k)


@dataclass
class TrainingSelection:
    """Which windows of which training videos a fold trains on.

    ``windows[i]`` are the sorted window numbers chosen in ``videos[i]``; ``n_me`` windows
    contain an ME frame, ``n_free`` are sampled ME-free ones; ``class_counts`` counts the frame
    classes over all chosen windows (k frames per window, so overlapping frames count twice).
    """

    videos: list[VideoRef]
    windows: list[np.ndarray]
    n_me: int
    n_free: int
    n_free_available: int
    class_counts: np.ndarray


def select_training_windows(videos: list[VideoRef],
                            events_by_video: dict[tuple[str, str], pd.DataFrame],
                            ratio: float, seed: int, n_classes: int = len(CLASS_NAMES)
                            ) -> TrainingSelection:
    """Every window that contains an ME frame, plus ``int(n_me * ratio)`` ME-free windows drawn
    at random (seeded, without replacement) from all training videos together.

    When fewer ME-free windows exist, all are taken (the reference takes all but two).
    ``events_by_video`` maps (subject, video) to that video's events (indices after skipping);
    a video without an entry has none. Only metadata and labels are used: no values are read.
    """
    me_sel: list[np.ndarray] = []
    free_pool: list[tuple[int, int]] = []
    targets: list[tuple[np.ndarray, np.ndarray]] = []
    empty = pd.DataFrame(columns=EVENT_COLUMNS)
    for vi, ref in enumerate(videos):
        spot_w, cls_w = video_targets(ref, events_by_video.get(ref.key, empty))
        targets.append((spot_w, cls_w))
        has_me = spot_w.sum(axis=1) > 0
        me_sel.append(np.flatnonzero(has_me))
        free_pool.extend((vi, int(w)) for w in np.flatnonzero(~has_me))
    n_me = int(sum(len(s) for s in me_sel))
    n_take = min(int(n_me * ratio), len(free_pool))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(free_pool), size=n_take, replace=False) if n_take else []
    chosen: list[list[int]] = [list(s) for s in me_sel]
    for j in picked:
        vi, w = free_pool[int(j)]
        chosen[vi].append(w)
    windows = [np.array(sorted(c), dtype=np.int64) for c in chosen]
    counts = np.zeros(n_classes, dtype=np.int64)
    for (spot_w, cls_w), sel in zip(targets, windows):
        if len(sel):
            counts += np.bincount(cls_w[sel].ravel(), minlength=n_classes)[:n_classes]
    return TrainingSelection(videos=list(videos), windows=windows, n_me=n_me, n_free=n_take,
                             n_free_available=len(free_pool), class_counts=counts)
