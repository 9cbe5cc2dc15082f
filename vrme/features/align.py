"""Stage 1: face alignment of every window's first frame (METHOD.md 3.1), cached to Parquet.

For the first frame of every window (index w * k/2 after frame skipping) the dlib frontal face
detector finds the face and the 68-point shape predictor its landmarks. The crop box comes from
the inner eye corners (points 39 and 42): with g = int(half their horizontal distance) and c
their (integer) midpoint, rows c_y - int(3.5 g) .. c_y + int(5.5 g) and columns
c_x -+ int(4.5 g), the top and left edges clipped at 0. The crop is resized to
``align.crop_size`` squared and the landmarks are located again on it (detector + predictor on
the crop); when the detector finds no face on the crop, the frame landmarks are mapped into the
crop instead (recorded as ``mapped``), as the reference does.

A window whose first frame shows no detectable face reuses the crop box and crop landmarks of
the nearest window that has one (ties: the earlier window), flagged ``reused``. Under
``features.missing_face: reference`` it is instead searched frame by frame, as the reference
extractor does: the first later frame of the window with a face (offset 1 .. k-2; a face found on
the last frame would leave nothing to compare) becomes the window's alignment, flagged ``late``,
its offset recorded in ``face_offset``; a window without any gets ``none``. A video with no face
in any window raises :class:`~vrme.errors.NoFaceError` (its landmarks file is written all the
same, so the finding is cached).

Landmarks file, ``landmarks/<dataset>/<align-hash>/<subject>/<video>.parquet``, one row per
window (:data:`LANDMARKS_SCHEMA`):

- ``window``, ``start_index`` (after skipping), ``start_frame`` (original numbering)
- ``status``: detected | reused | late | none
- ``face_offset``: frame of the window (0 = its first) the alignment was found on; 0 unless
  ``late``
- ``source_window``: the window whose detection is used (itself when detected; -1 for none)
- ``face_box``: detector box (left, top, right, bottom) on the source window's frame, px
- ``landmarks``: 68 (x, y) pairs on that frame, flattened x0, y0, x1, y1, ...
- ``crop_box``: (top, bottom, left, right): the crop is ``frame[top:bottom, left:right]``;
  bottom and right may exceed the frame (slicing clips them)
- ``crop_landmarks``: 68 (x, y) pairs on the resized crop
- ``crop_landmarks_from``: detected (on the crop) | mapped (from the frame landmarks) | ""

Schema metadata key ``vrme`` holds the parameters, their hash, library versions, the input
frames' fingerprint and counts.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vrme.catalog import stage_dir, video_file
from vrme.config import AlignConfig, Config, stable_hash
from vrme.errors import FrameError, NoFaceError, UserError
from vrme.features.jobs import (
    IndexReader,
    VideoJob,
    VideoStatus,
    cached_output_valid,
    chunk_windows,
    dataset_root,
    frames_fingerprint,
    index_count,
    run_jobs,
    window_count,
)
from vrme.interrupt import check as check_interrupt
from vrme.io import read_parquet_metadata, write_parquet_atomic
from vrme.record import library_versions, peak_rss_mb

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

N_LANDMARKS = 68
LANDMARKS_FORMAT = 2
ALIGN_VERSION = 1
"""Version of the alignment numerics (detection, landmarks, crop box). Part of
:func:`align_params`: bump it with any change that changes a landmarks file."""

LANDMARKS_SCHEMA = pa.schema(
    [
        ("window", pa.int32()),
        ("start_index", pa.int32()),
        ("start_frame", pa.int64()),
        ("status", pa.string()),
        ("face_offset", pa.int32()),
        ("source_window", pa.int32()),
        ("face_box", pa.list_(pa.int32(), 4)),
        ("landmarks", pa.list_(pa.int32(), 2 * N_LANDMARKS)),
        ("crop_box", pa.list_(pa.int32(), 4)),
        ("crop_landmarks", pa.list_(pa.int32(), 2 * N_LANDMARKS)),
        ("crop_landmarks_from", pa.string()),
    ]
)


# -- models ------------------------------------------------------------------------------------


def predictor_file(align: AlignConfig) -> Path:
    """Path of the 68-landmark model: ``align.predictor``, or with ``auto`` the file shipped in
    the ``face-recognition-models`` package (located without importing it)."""
    if align.predictor != "auto":
        p = Path(align.predictor)
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                "align.predictor is 'auto' but the face-recognition-models package is not "
                "installed; install it or set align.predictor to shape_predictor_68_face_"
                "landmarks.dat"
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        p = folder / "models" / "shape_predictor_68_face_landmarks.dat"
    if not p.is_file():
        raise UserError(f"landmark model {p} not found (align.predictor)")
    return p


class _Serialized:
    """A dlib model shared by the threads of a process, called under a lock: dlib's detector is
    not safe for concurrent calls (its documentation), and its calls hold the GIL anyway."""

    def __init__(self, model: Any):
        self._model = model
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            return self._model(*args)


_MODELS: dict[str, tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()
MODEL_LOAD_SECONDS: dict[str, float] = {}
"""CPU seconds each landmark model took to load in this process (for benchmarks)."""


def load_models(predictor_path: str) -> tuple[Any, Any]:
    """(dlib frontal face detector, dlib shape predictor), loaded once per process and shared
    by its threads (each call goes through a lock; the thread-pool task runner runs several
    videos in one process). Loading both takes about a second of CPU."""
    with _MODELS_LOCK:
        if predictor_path not in _MODELS:
            import dlib

            t = time.process_time()
            _MODELS[predictor_path] = (_Serialized(dlib.get_frontal_face_detector()),
                                       _Serialized(dlib.shape_predictor(predictor_path)))
            MODEL_LOAD_SECONDS[predictor_path] = time.process_time() - t
        return _MODELS[predictor_path]


# -- one frame ---------------------------------------------------------------------------------


@dataclass
class FrameAlignment:
    """Face, landmarks and crop found on one frame (all int, px).

    ``face_box`` (left, top, right, bottom); ``landmarks`` (68, 2) (x, y) on the frame;
    ``crop_box`` (top, bottom, left, right); ``crop_landmarks`` (68, 2) on the resized crop;
    ``crop_landmarks_from`` 'detected' or 'mapped'.
    """

    face_box: np.ndarray
    landmarks: np.ndarray
    crop_box: np.ndarray
    crop_landmarks: np.ndarray
    crop_landmarks_from: str


def _shape_points(shape: Any) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)


def crop_box_from_landmarks(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the face crop from the inner eye corners 39 and 42."""
    lx, ly = int(landmarks[39, 0]), int(landmarks[39, 1])
    rx, ry = int(landmarks[42, 0]), int(landmarks[42, 1])
    g = int((rx - lx) / 2)
    cx, cy = int((rx + lx) / 2), int((ry + ly) / 2)
    top = max(cy - int(3.5 * g), 0)
    bottom = cy + int(5.5 * g)
    left = max(cx - int(4.5 * g), 0)
    right = cx + int(4.5 * g)
    return top, bottom, left, right


def crop_face(img: np.ndarray, box: tuple[int, int, int, int] | np.ndarray,
              size: int) -> np.ndarray:
    """``img[top:bottom, left:right]`` resized to ``size`` x ``size`` (bilinear)."""
    import cv2

    top, bottom, left, right = (int(v) for v in box)
    return cv2.resize(img[top:bottom, left:right], (size, size))


def align_frame(img: np.ndarray, detector: Any, predictor: Any, crop_size: int,
                upsample: int = 0) -> FrameAlignment | None:
    """Detect the face on ``img`` (grayscale uint8), its landmarks, the crop box and the
    landmarks on the ``crop_size`` crop; None when no face is found or the crop is empty."""
    faces = detector(img, upsample)
    if len(faces) == 0:
        return None
    f = faces[0]
    lm = _shape_points(predictor(img, f))
    top, bottom, left, right = crop_box_from_landmarks(lm)
    h, w = img.shape[:2]
    if min(bottom, h) - top < 2 or min(right, w) - left < 2:
        log.debug("degenerate crop box %s", (top, bottom, left, right))
        return None
    crop = crop_face(img, (top, bottom, left, right), crop_size)
    faces_c = detector(crop, upsample)
    if len(faces_c):
        crop_lm = _shape_points(predictor(crop, faces_c[0]))
        source = "detected"
    else:
        # Map the frame landmarks into the crop with the unclipped box size, truncating.
        crop_lm = np.empty_like(lm)
        crop_lm[:, 0] = np.trunc((lm[:, 0] - left) * (crop_size / (right - left)))
        crop_lm[:, 1] = np.trunc((lm[:, 1] - top) * (crop_size / (bottom - top)))
        source = "mapped"
    return FrameAlignment(
        face_box=np.array([f.left(), f.top(), f.right(), f.bottom()], dtype=np.int64),
        landmarks=lm,
        crop_box=np.array([top, bottom, left, right], dtype=np.int64),
        crop_landmarks=crop_lm,
        crop_landmarks_from=source,
    )


# -- a video's landmarks -------------------------------------------------------------------------


@dataclass
class VideoLandmarks:
    """The landmarks table of one video as arrays (see the module docstring).

    Shapes: ``status`` (n,) str; ``face_offset`` (n,); ``source_window`` (n,); ``face_box``
    (n, 4); ``landmarks``
    (n, 68, 2); ``crop_box`` (n, 4); ``crop_landmarks`` (n, 68, 2); ``crop_landmarks_from``
    (n,) str. ``meta`` is the file's metadata.
    """

    subject: str
    video: str
    start_index: np.ndarray
    start_frame: np.ndarray
    status: np.ndarray
    source_window: np.ndarray
    face_box: np.ndarray
    landmarks: np.ndarray
    crop_box: np.ndarray
    crop_landmarks: np.ndarray
    crop_landmarks_from: np.ndarray
    meta: dict[str, Any]
    face_offset: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.face_offset is None:
            self.face_offset = np.zeros(len(self.status), dtype=np.int64)

    @property
    def n_windows(self) -> int:
        return int(len(self.status))

    def counts(self) -> dict[str, int]:
        """Windows per status: detected, reused and none, and late when there are any."""
        return window_counts(self.status)


def window_counts(status: np.ndarray) -> dict[str, int]:
    """Windows per alignment flag (detected, reused, none; late only when present)."""
    out = {s: int((status == s).sum()) for s in ("detected", "reused", "none")}
    late = int((status == "late").sum())
    if late:
        out["late"] = late
    return out


def fill_missing(found: list[FrameAlignment | None], start_index: np.ndarray,
                 start_frame: np.ndarray, subject: str, video: str,
                 meta: dict[str, Any], offsets: list[int] | None = None,
                 reuse: bool = True) -> VideoLandmarks:
    """Build a video's landmarks from per-window detections (``offsets``: the frame of each
    window they were found on, > 0 = ``late``). With ``reuse`` a window without a face gets the
    nearest detected window's alignment (ties: the earlier one); without it, or if no window
    has a face, status none."""
    n = len(found)
    detected = np.array([f is not None for f in found], dtype=bool)
    offset = np.zeros(n, dtype=np.int64) if offsets is None else np.asarray(offsets, np.int64)
    offset = np.where(detected, offset, 0)
    idx = np.flatnonzero(detected)
    source = np.full(n, -1, dtype=np.int64)
    if not reuse:
        source[detected] = idx
    elif idx.size:
        pos = np.searchsorted(idx, np.arange(n))
        left = idx[np.clip(pos - 1, 0, idx.size - 1)]
        right = idx[np.clip(pos, 0, idx.size - 1)]
        w = np.arange(n)
        use_right = (np.abs(right - w) < np.abs(w - left)) | (left > w)
        source = np.where(use_right, right, left)
        source[detected] = np.flatnonzero(detected)
    status = np.where(detected, np.where(offset > 0, "late", "detected"),
                      np.where(source >= 0, "reused", "none")).astype(object)
    face_box = np.zeros((n, 4), np.int64)
    lms = np.zeros((n, N_LANDMARKS, 2), np.int64)
    crop_box = np.zeros((n, 4), np.int64)
    crop_lms = np.zeros((n, N_LANDMARKS, 2), np.int64)
    how = np.full(n, "", dtype=object)
    for w in range(n):
        if source[w] < 0:
            continue
        f = found[int(source[w])]
        assert f is not None
        face_box[w], lms[w], crop_box[w], crop_lms[w] = (f.face_box, f.landmarks, f.crop_box,
                                                          f.crop_landmarks)
        how[w] = f.crop_landmarks_from
    return VideoLandmarks(subject, video, np.asarray(start_index), np.asarray(start_frame),
                          status, source, face_box, lms, crop_box, crop_lms, how, meta, offset)


def write_landmarks(path: str | os.PathLike[str], vl: VideoLandmarks) -> Path:
    """Write one video's landmarks atomically (schema :data:`LANDMARKS_SCHEMA`)."""
    n = vl.n_windows

    def fixed(a: np.ndarray, width: int) -> pa.Array:
        flat = pa.array(np.ascontiguousarray(a, dtype=np.int32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width)

    table = pa.table(
        {
            "window": pa.array(np.arange(n, dtype=np.int32)),
            "start_index": pa.array(np.asarray(vl.start_index, dtype=np.int32)),
            "start_frame": pa.array(np.asarray(vl.start_frame, dtype=np.int64)),
            "status": pa.array([str(s) for s in vl.status], pa.string()),
            "face_offset": pa.array(np.asarray(vl.face_offset, dtype=np.int32)),
            "source_window": pa.array(np.asarray(vl.source_window, dtype=np.int32)),
            "face_box": fixed(vl.face_box, 4),
            "landmarks": fixed(vl.landmarks, 2 * N_LANDMARKS),
            "crop_box": fixed(vl.crop_box, 4),
            "crop_landmarks": fixed(vl.crop_landmarks, 2 * N_LANDMARKS),
            "crop_landmarks_from": pa.array([str(s) for s in vl.crop_landmarks_from],
                                            pa.string()),
        },
        schema=LANDMARKS_SCHEMA,
    )
    meta = dict(vl.meta, subject=vl.subject, video=vl.video, format=LANDMARKS_FORMAT)
    return write_parquet_atomic(path, table, {"vrme": meta})


def read_landmarks(path: str | os.PathLike[str]) -> VideoLandmarks:
    """Read a landmarks file written by :func:`write_landmarks`."""
    meta = read_parquet_metadata(path).get("vrme", {})
    t = pq.read_table(path, schema=LANDMARKS_SCHEMA)
    n = t.num_rows

    def fixed(name: str, shape: tuple[int, ...]) -> np.ndarray:
        col = t.column(name).combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False) if n else np.zeros(0, np.int32)
        return np.asarray(flat, dtype=np.int64).reshape((n, *shape))

    return VideoLandmarks(
        subject=str(meta.get("subject", "")),
        video=str(meta.get("video", "")),
        start_index=t.column("start_index").to_numpy(),
        start_frame=t.column("start_frame").to_numpy(),
        status=np.asarray(t.column("status").to_pylist(), dtype=object),
        source_window=t.column("source_window").to_numpy().astype(np.int64),
        face_box=fixed("face_box", (4,)),
        landmarks=fixed("landmarks", (N_LANDMARKS, 2)),
        crop_box=fixed("crop_box", (4,)),
        crop_landmarks=fixed("crop_landmarks", (N_LANDMARKS, 2)),
        crop_landmarks_from=np.asarray(t.column("crop_landmarks_from").to_pylist(), dtype=object),
        meta=meta,
        face_offset=t.column("face_offset").to_numpy().astype(np.int64),
    )


# -- parameters and paths ------------------------------------------------------------------------


def align_params(cfg: Config) -> dict[str, Any]:
    """Everything the landmarks of a video depend on besides its frames."""
    return {
        "align": cfg.align.model_dump(mode="json"),
        "frame_skip": int(cfg.dataset.frame_skip),
        "k": int(cfg.features.k),
        "bad_frame": cfg.features.bad_frame,
        # Where a window's face is looked for: its first frame, or (missing_face: reference)
        # each of its frames in turn.
        "face_search": "window" if cfg.features.missing_face == "reference" else "first_frame",
        "format": LANDMARKS_FORMAT,
        "version": ALIGN_VERSION,
    }


def align_hash(cfg: Config) -> str:
    """Short hash of :func:`align_params` (the landmarks cache folder name)."""
    return stable_hash(align_params(cfg))


def landmarks_dir(cfg: Config) -> Path:
    """``<out>/landmarks/<dataset>/<align-hash>``."""
    return stage_dir(cfg, "landmarks", align_hash(cfg))


def landmarks_path(cfg: Config, subject: str, video: str) -> Path:
    """Landmarks file of one video."""
    return video_file(landmarks_dir(cfg), subject, video)


# -- chunks and videos ---------------------------------------------------------------------------


@dataclass
class AlignChunk:
    """Detections of windows [w0, w1) of a video (None = no face) and the frame of each window
    they were found on (``offsets``, 0 = the first)."""

    w0: int
    found: list[FrameAlignment | None]
    bad_frames: list[int]
    frames_read: int
    timings: dict[str, float]
    peak_rss_mb: float = 0.0
    offsets: list[int] = field(default_factory=list)


def align_chunk(cfg: Config, row: Mapping[str, Any], root: str | os.PathLike[str],
                w0: int, w1: int) -> AlignChunk:
    """Detect the face on the first frame of windows w0..w1-1 of one video (worker function);
    under ``missing_face: reference`` a window without one is searched frame by frame (frames
    are read in increasing order and each is detected once, even where windows overlap)."""
    t_all = time.thread_time()
    detector, predictor = load_models(str(predictor_file(cfg.align)))
    k = cfg.features.k
    half = k // 2
    search = cfg.features.missing_face == "reference"
    reader = IndexReader(row, root, cfg.dataset.frame_skip, cfg.features.bad_frame)
    found: list[FrameAlignment | None] = []
    offsets: list[int] = []
    tried: dict[int, FrameAlignment | None] = {}
    detect_s = 0.0

    def detect(j: int) -> FrameAlignment | None:
        nonlocal detect_s
        if j not in tried:
            img = reader.read(j)
            t = time.thread_time()
            tried[j] = align_frame(img, detector, predictor, cfg.align.crop_size,
                                   cfg.align.detector_upsample)
            detect_s += time.thread_time() - t
        return tried[j]

    try:
        for w in range(w0, w1):
            check_interrupt("alignment")
            start = w * half
            for j in [j for j in tried if j < start]:
                del tried[j]
            fa, offset = detect(start), 0
            # The reference's rule: the first frame with a face starts the window; one found
            # on its last frame leaves nothing to compare (all zeros either way).
            for off in range(1, k - 1) if search and fa is None else ():
                fa = detect(start + off)
                if fa is not None:
                    offset = off
                    break
            found.append(fa)
            offsets.append(offset)
    finally:
        reader.close()
    total = time.thread_time() - t_all
    timings = {"decode": reader.decode_s, "detect": detect_s,
               "rest": max(0.0, total - reader.decode_s - detect_s)}
    return AlignChunk(w0, found, sorted(reader.bad), reader.reads, timings, peak_rss_mb(),
                      offsets)


def _finish_align(cfg: Config, row: Mapping[str, Any], out_path: Path, meta: dict[str, Any],
                  n_indices: int, t0: float, chunks: list[AlignChunk]) -> VideoStatus:
    subject, video = str(row["subject"]), str(row["video"])
    found = [f for c in chunks for f in c.found]
    half = cfg.features.k // 2
    start_index = np.arange(len(found), dtype=np.int64) * half
    start_frame = int(row["first_frame"]) + start_index * int(cfg.dataset.frame_skip)
    bad = sorted({b for c in chunks for b in c.bad_frames})
    meta = dict(meta, bad_frames=bad, n_bad_frames=len(bad))
    offsets = [o for c in chunks for o in c.offsets]
    vl = fill_missing(found, start_index, start_frame, subject, video, meta, offsets,
                      reuse=cfg.features.missing_face != "reference")
    counts = vl.counts()
    vl.meta["counts"] = counts
    write_landmarks(out_path, vl)
    timings: dict[str, float] = {}
    for c in chunks:
        for key, v in c.timings.items():
            timings[key] = timings.get(key, 0.0) + v
    if counts["none"] == vl.n_windows:
        raise NoFaceError(f"{subject}/{video}: no face detected in any of {vl.n_windows} "
                          "windows")
    if counts["reused"]:
        log.info("%s/%s: %d of %d windows had no face; nearest landmarks reused", subject,
                 video, counts["reused"], vl.n_windows)
    if counts.get("late"):
        log.info("%s/%s: %d of %d windows start at a later frame with a face (missing_face: "
                 "reference)", subject, video, counts["late"], vl.n_windows)
    return VideoStatus(stage="align", subject=subject, video=video, status="computed",
                       path=str(out_path), n_indices=n_indices, n_windows=vl.n_windows,
                       frames_read=sum(c.frames_read for c in chunks), counts=counts,
                       bad_frames=bad, seconds=time.perf_counter() - t0, timings=timings,
                       peak_rss_mb=max(c.peak_rss_mb for c in chunks))


def plan_align(cfg: Config, row: Mapping[str, Any], root: str | os.PathLike[str],
               out_path: Path | None = None, workers: int = 1, force: bool = False) -> VideoJob:
    """Decide what aligning one video needs: nothing (cached / too short / no face cached) or
    a list of window chunks for :func:`align_chunk`."""
    root = Path(root)
    subject, video = str(row["subject"]), str(row["video"])
    out_path = Path(out_path) if out_path is not None else landmarks_path(cfg, subject, video)
    job = VideoJob(subject=subject, video=video, stage="align",
                   skip_errors=(NoFaceError, FrameError))
    t0 = time.perf_counter()
    n_indices = index_count(int(row["n_frames"]), cfg.dataset.frame_skip)
    n_windows = window_count(n_indices, cfg.features.k)
    if n_windows == 0:
        job.status = VideoStatus(stage="align", subject=subject, video=video, status="skipped",
                                 reason=f"{n_indices} frames after skipping: shorter than one "
                                 f"window of k={cfg.features.k} plus a half",
                                 n_indices=n_indices)
        return job
    params = align_params(cfg)
    params_hash = stable_hash(params)
    fingerprint = frames_fingerprint(row, root, cfg.dataset.frame_skip)
    if not force and cached_output_valid(out_path, params_hash, fingerprint):
        meta = read_parquet_metadata(out_path)["vrme"]
        counts = meta.get("counts", {})
        status = VideoStatus(stage="align", subject=subject, video=video, status="cached",
                             path=str(out_path), n_indices=n_indices, n_windows=n_windows,
                             counts=counts, bad_frames=list(meta.get("bad_frames", [])))
        if counts.get("none", 0) == n_windows:
            status.status, status.reason = "skipped", "no face detected in any window (cached)"
        job.status = status
        return job
    meta = {
        "stage": "align",
        "params": params,
        "params_hash": params_hash,
        "fingerprint": fingerprint,
        "versions": library_versions(),
        "n_indices": n_indices,
        "first_frame": int(row["first_frame"]),
        "frame_skip": int(cfg.dataset.frame_skip),
    }
    # A video file is decoded sequentially: one chunk, or every chunk would decode from the
    # start.
    ranges = (chunk_windows(n_windows, workers, max_chunk=64, min_chunk=4)
              if row.get("source", "frames") == "frames" else [(0, n_windows)])
    for w0, w1 in ranges:
        job.chunks.append((cfg, dict(row), str(root), w0, w1))
        job.frames.append(w1 - w0)
    job.finish = functools.partial(_finish_align, cfg, dict(row), out_path, meta, n_indices, t0)
    return job


def align_video(cfg: Config, row: Mapping[str, Any], root: str | os.PathLike[str] | None = None,
                out_path: str | os.PathLike[str] | None = None,
                force: bool = False) -> VideoStatus:
    """Align one video in this process and write its landmarks file (skipped if cached).

    ``row`` is a manifest row; ``out_path`` defaults to :func:`landmarks_path`. Returns the
    video's status; raises :class:`NoFaceError` when no window shows a face and
    :class:`FrameError` for an unreadable frame under ``bad_frame: fail``.
    """
    job = plan_align(cfg, row, dataset_root(cfg.dataset, root),
                     Path(out_path) if out_path is not None else None, 1, force)
    if job.status is not None:
        if job.status.status == "skipped" and "no face" in job.status.reason:
            raise NoFaceError(f"{job.subject}/{job.video}: {job.status.reason}")
        return job.status
    assert job.finish is not None
    return job.finish([align_chunk(*args) for args in job.chunks])


def _rows(manifest: pd.DataFrame | list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if hasattr(manifest, "to_dict"):
        return [dict(r) for r in manifest.to_dict(orient="records")]
    return [dict(r) for r in manifest]


def run_align(cfg: Config, manifest: pd.DataFrame | list[Mapping[str, Any]],
              root: str | os.PathLike[str] | None = None, workers: int | None = None,
              progress: bool = True, force: bool = False) -> list[VideoStatus]:
    """Align every video of ``manifest`` in this process, one after another (an orchestrator
    runs videos side by side as tasks); cached videos are skipped. ``workers``: split each
    video's windows into that many chunks (the numbers do not depend on it). A video with no
    face, or with a bad frame that ``bad_frame`` does not replace, is reported as skipped
    (the reason names the file) and the run goes on."""
    root_p = dataset_root(cfg.dataset, root)
    chunks = max(1, int(workers or 1))
    jobs = [plan_align(cfg, r, root_p, None, chunks, force) for r in _rows(manifest)]
    return run_jobs(jobs, align_chunk, progress=progress, label="align")

