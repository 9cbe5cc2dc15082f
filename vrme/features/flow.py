"""Stage 2: ROI optical-flow window features (METHOD.md 2-3), streamed and cached to Parquet.

Reads the landmarks written by :mod:`vrme.features.align` (it never runs dlib) and, for every window
w of k frames (indices w*k/2 .. w*k/2 + k - 1 after frame skipping), computes a 36 x k float32
matrix: for every later frame of the window, the face crop (the window's crop box, resized to
``align.crop_size``) is compared with the window's first frame by Farneback optical flow on 7
regions; each of the 18 ROIs of :mod:`vrme.features.rois` gives the mean of its largest flow vectors
minus the global (nose-ridge) motion. When the global motion exceeds ``realign_threshold_px2`` the
crop box is shifted by it (rounded) and the flow recomputed, at most ``realign_max_iter`` times; the
shift carries over to the window's later frames. Column 0 is zero. A ``late`` window
(``missing_face: reference``) is compared with its first frame that has a face instead; the
columns up to that frame are zero.

The flow is ``cv2.calcOpticalFlowFarneback`` on every frame pair with ``flow_impl: opencv``
(the reference's numbers exactly) or, by default (``fast``),
:class:`vrme.features.farneback.Farneback`, which expands each window's first-frame regions once
(the same flows to float rounding).

Frames are streamed: every frame is decoded once and fed to the (at most two) windows that
contain it, so memory does not depend on the video's length. A video's windows are split into
chunks that run on worker processes; the numbers do not depend on the split.

Output: ``features/<dataset>/<feature-hash>/<subject>/<video>.parquet`` written with
:func:`vrme.schema.write_video_features`; its metadata (``meta``) records the parameters and their
hash, library versions, the frames' fingerprint, window counts per alignment flag, the frames
replaced under ``bad_frame: repeat_previous``, the number of re-alignment shifts and which
flow kernels ran (``flow_kernel``: ``c`` or ``numba`` for the fast path, ``opencv``). A file with
the same parameter hash and fingerprint, made by the kernels this process runs
(:func:`flow_kernel_here`), is reused; anything else is recomputed.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vrme.catalog import stage_dir, video_file
from vrme.config import AlignConfig, Config, FeatureConfig, stable_hash
from vrme.errors import FrameError, NoFaceError, UserError
from vrme.features.align import (
    VideoLandmarks,
    align_hash,
    align_params,
    landmarks_path,
    read_landmarks,
    run_align,
    window_counts,
)
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
from vrme.features.rois import (
    N_ROWS,
    ROI_NAMES,
    ROIS_OF_REGION,
    RoiLayout,
    roi_layout,
    top_fraction_mean,
)
from vrme.interrupt import check as check_interrupt
from vrme.io import read_parquet_metadata
from vrme.record import library_versions, peak_rss_mb

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FEATURES_FORMAT = 1
FEATURES_VERSION = 1
"""Version of the feature numerics (flow, ROIs, re-alignment). Part of :func:`feature_params`:
bump it with any change that changes a feature value, and exactly the features (and what is
made from them) recompute; the landmarks are kept."""

__all__ = [
    "VideoStatus",
    "extract_video_features",
    "feature_params",
    "feature_hash",
    "feature_path",
    "features_dir",
    "landmarks_path",
    "run_features",
    "window_features",
]


# -- parameters and paths ------------------------------------------------------------------------


def feature_params(cfg: Config) -> dict[str, Any]:
    """Everything a video's features depend on besides its frames."""
    feats = cfg.features.model_dump(mode="json")
    return {"align": align_params(cfg), "features": feats,
            "frame_skip": int(cfg.dataset.frame_skip), "format": FEATURES_FORMAT,
            "version": FEATURES_VERSION}


def feature_hash(cfg: Config) -> str:
    """Short hash of :func:`feature_params` (the feature cache folder name); for a
    multi-dataset config, the hash of its datasets' feature hashes (the union's folder of
    links, :mod:`vrme.data.union`)."""
    if cfg.datasets:
        return stable_hash([feature_hash(p) for p in cfg.parts()])
    return stable_hash(feature_params(cfg))


def features_dir(cfg: Config) -> Path:
    """``<out>/features/<dataset>/<feature-hash>``."""
    return stage_dir(cfg, "features", feature_hash(cfg))


def feature_path(cfg: Config, subject: str, video: str) -> Path:
    """Feature file of one video."""
    return video_file(features_dir(cfg), subject, video)


# -- one window ----------------------------------------------------------------------------------


@dataclass
class FlowParams:
    """Per-frame parameters, unpacked once from the config (floats and ints only)."""

    crop_size: int
    farneback: tuple[float, int, int, int, int, float]
    realign: bool
    max_iter: int
    threshold: float
    fractions: dict[str, float]
    flow_impl: str = "fast"

    @classmethod
    def from_sections(cls, align: AlignConfig, f: FeatureConfig) -> "FlowParams":
        """The flow parameters of the ``align`` and ``features`` config sections."""
        fb = f.farneback
        return cls(
            crop_size=align.crop_size,
            farneback=(fb.pyr_scale, fb.levels, fb.winsize, fb.iterations, fb.poly_n,
                       fb.poly_sigma),
            realign=f.realign,
            max_iter=f.realign_max_iter,
            threshold=f.realign_threshold_px2,
            fractions={
                "roi_fraction": f.roi_top_fraction,
                "box_fraction": f.box_top_fraction,
                "brow_right_box_fraction": f.brow_right_box_top_fraction,
                "global_fraction": f.global_top_fraction,
            },
            flow_impl=f.flow_impl,
        )


class _Window:
    """A window being computed: its crop box (shifted by re-alignment), ROI layout, the first
    frame's regions and the output matrix."""

    __slots__ = ("start", "ref", "box", "layout", "prev", "out", "active", "means")

    def __init__(self, start: int, k: int, box: np.ndarray | None, layout: RoiLayout | None,
                 ref: int | None = None):
        self.start = start
        self.ref = start if ref is None else ref  # the frame the others are compared with
        self.box = None if box is None else [int(v) for v in box]
        self.layout = layout
        self.prev: list[Any] = []  # per region: what _Flow.prepare made of the first frame
        self.out = np.zeros((N_ROWS, k), dtype=np.float32)
        self.means = np.zeros((N_ROWS // 2, 2), dtype=np.float64)
        self.active = box is not None


def flow_kernel_here(flow_impl: str) -> str:
    """The ``flow_kernel`` a feature file made in this process records: ``opencv`` for
    ``flow_impl: opencv``, else the fast path's kernels (:func:`vrme.features.farneback.
    kernel_name`). A cached file made by other kernels is computed again."""
    if flow_impl != "fast":
        return "opencv"
    from vrme.features.farneback import kernel_name

    return kernel_name()


class _Flow:
    """Farneback optical flow from a window's first-frame region to later regions, with
    timing and call counting.

    ``prepare(first)`` makes what later calls compare against (``None`` for an empty region);
    ``flow(prepared, cur)`` returns the flow as an (h, w, 2) array (x, y). With
    ``flow_impl: opencv`` every call is ``cv2.calcOpticalFlowFarneback`` on the two images, as
    in the reference; with ``fast`` the first image is expanded once per window and each flow
    computed by :class:`vrme.features.farneback.Farneback` (the same numbers to float rounding)."""

    def __init__(self, params: tuple[float, int, int, int, int, float], impl: str = "fast"):
        import cv2

        self._cv2 = cv2
        self.params = params
        self.fast = None
        if impl == "fast":
            from vrme.features.farneback import Farneback

            self.fast = Farneback(*params)
        self.kernel = "opencv" if self.fast is None else self.fast.kernel
        self.seconds = 0.0
        self.calls = 0

    def prepare(self, first: np.ndarray) -> Any:
        if first.shape[0] == 0 or first.shape[1] == 0:
            return None
        if self.fast is None:
            return first
        t = time.thread_time()
        prepared = self.fast.prepare(first)
        self.seconds += time.thread_time() - t
        return prepared

    def flow(self, prepared: Any, cur: np.ndarray) -> np.ndarray:
        t = time.thread_time()
        if self.fast is None:
            f = self._cv2.calcOpticalFlowFarneback(prepared, cur, None, *self.params, 0)
        else:
            f = self.fast.flow(prepared, cur).transpose(1, 2, 0)
        self.seconds += time.thread_time() - t
        self.calls += 1
        return f


def _start_window(win: _Window, img: np.ndarray, size: int, flow_fn: _Flow) -> None:
    import cv2

    assert win.box is not None and win.layout is not None
    t, b, left, r = win.box
    crop = cv2.resize(img[t:b, left:r], (size, size))
    win.prev = [flow_fn.prepare(np.ascontiguousarray(crop[rs, cs]))
                for rs, cs in win.layout.regions]


def _region_means(win: _Window, region: int, crop: np.ndarray,
                  flow_fn: _Flow) -> tuple[float, float]:
    """Flow of one region of ``crop`` against the window's first frame; the top-fraction
    means of the region's ROIs go into ``win.means``. Returns the global box's mean for
    region 0, else (0, 0)."""
    import cv2

    layout = win.layout
    assert layout is not None
    prev = win.prev[region]
    if prev is None:
        return 0.0, 0.0  # an empty region: its ROIs keep mean 0, like the reference's lids
    rs, cs = layout.regions[region]
    f = flow_fn.flow(prev, np.ascontiguousarray(crop[rs, cs]))
    mag = cv2.magnitude(f[..., 0], f[..., 1])
    if region == 0:
        g = layout.global_box
        return top_fraction_mean(f[g.rows, g.cols], mag[g.rows, g.cols], g.top_fraction)
    means = win.means
    for n in ROIS_OF_REGION[region]:
        b = layout.boxes[n]
        means[n] = top_fraction_mean(f[b.rows, b.cols], mag[b.rows, b.cols], b.top_fraction)
    return 0.0, 0.0


def _step(win: _Window, img: np.ndarray, col: int, p: FlowParams, flow_fn: _Flow) -> int:
    """Fill column ``col`` of ``win`` from frame ``img``; return the re-alignment shifts made."""
    import cv2

    size = p.crop_size
    assert win.layout is not None and win.box is not None
    t, b, left, r = win.box
    crop = cv2.resize(img[t:b, left:r], (size, size))
    gx, gy = _region_means(win, 0, crop, flow_fn)
    shifts = 0
    if p.realign:
        while gx * gx + gy * gy > p.threshold:
            if shifts >= p.max_iter:
                break
            shifts += 1
            # The shift is measured on the crop but applied in frame pixels, as the
            # reference does.
            dx, dy = int(round(gx)), int(round(gy))
            left, t = max(0, left + dx), max(0, t + dy)
            r, b = r + dx, b + dy
            crop = cv2.resize(img[t:b, left:r], (size, size))
            gx, gy = _region_means(win, 0, crop, flow_fn)
        win.box = [t, b, left, r]
    means = win.means
    means.fill(0.0)
    for region in range(1, len(win.prev)):
        _region_means(win, region, crop, flow_fn)
    means[:, 0] -= gx
    means[:, 1] -= gy
    win.out[:, col] = means.reshape(-1)
    return shifts


def window_features(frames: list[np.ndarray], crop_box: np.ndarray, crop_landmarks: np.ndarray,
                    p: FlowParams, offset: int = 0) -> np.ndarray:
    """The 36 x k matrix of one window from its k frames (grayscale, full size), the crop box
    (top, bottom, left, right) and the landmarks on the crop (68 x 2), both found on frame
    ``offset`` (> 0: a ``late`` window; columns 0..offset are zero). For tests and tools;
    videos go through :func:`extract_video_features`. ``p``: :meth:`FlowParams.from_sections`."""
    layout = roi_layout(crop_landmarks, **p.fractions)
    win = _Window(0, len(frames), crop_box, layout, offset)
    flow_fn = _Flow(p.farneback, p.flow_impl)
    _start_window(win, frames[offset], p.crop_size, flow_fn)
    for col in range(offset + 1, len(frames)):
        _step(win, frames[col], col, p, flow_fn)
    return win.out


# -- chunks --------------------------------------------------------------------------------------


@dataclass
class WindowPlan:
    """What a worker needs for one window: its crop box and crop landmarks (None = zeros) and
    the frame of the window they were found on (``offset``; > 0 for a ``late`` window)."""

    crop_box: np.ndarray | None
    crop_landmarks: np.ndarray | None
    offset: int = 0


@dataclass
class FeatureChunk:
    """Features of windows [w0, w0 + len(values)) of a video."""

    w0: int
    values: np.ndarray
    bad_frames: list[int]
    frames_read: int
    farneback_calls: int
    realign_shifts: int
    timings: dict[str, float]
    peak_rss_mb: float = 0.0
    flow_kernel: str = ""


def feature_chunk(cfg: Config, row: Mapping[str, Any], root: str | os.PathLike[str], w0: int,
                  plans: list[WindowPlan]) -> FeatureChunk:
    """Compute windows w0 .. w0+len(plans)-1 of one video, streaming its frames (worker
    function)."""
    t_all = time.thread_time()
    p = FlowParams.from_sections(cfg.align, cfg.features)
    k = cfg.features.k
    half = k // 2
    w1 = w0 + len(plans)
    reader = IndexReader(row, root, cfg.dataset.frame_skip, cfg.features.bad_frame)
    flow_fn = _Flow(p.farneback, p.flow_impl)
    values = np.zeros((len(plans), N_ROWS, k), dtype=np.float32)
    active: list[tuple[int, _Window]] = []
    shifts = 0
    try:
        for j in range(w0 * half, (w1 - 1) * half + k):
            check_interrupt("features")
            img = reader.read(j)
            if j % half == 0 and w0 <= j // half < w1:
                wp = plans[j // half - w0]
                layout = (roi_layout(wp.crop_landmarks, **p.fractions)
                          if wp.crop_box is not None else None)
                active.append((j // half, _Window(j, k, wp.crop_box, layout, j + wp.offset)))
            for _, win in active:
                if not win.active or j < win.ref:
                    continue  # a late window's frames before its face stay zero columns
                if j == win.ref:
                    _start_window(win, img, p.crop_size, flow_fn)
                else:
                    shifts += _step(win, img, j - win.start, p, flow_fn)
            while active and active[0][1].start + k - 1 <= j:
                w, win = active.pop(0)
                values[w - w0] = win.out
    finally:
        reader.close()
    total = time.thread_time() - t_all
    timings = {"decode": reader.decode_s, "flow": flow_fn.seconds,
               "rest": max(0.0, total - reader.decode_s - flow_fn.seconds)}
    return FeatureChunk(w0, values, sorted(reader.bad), reader.reads, flow_fn.calls, shifts,
                        timings, peak_rss_mb(), flow_fn.kernel)


# -- videos --------------------------------------------------------------------------------------


def _window_plans(features: FeatureConfig,
                  vl: VideoLandmarks) -> tuple[list[WindowPlan], np.ndarray]:
    plans: list[WindowPlan] = []
    flags = np.empty(vl.n_windows, dtype=object)
    for w in range(vl.n_windows):
        status = str(vl.status[w])
        if status == "none" or (status == "reused" and features.missing_face == "zeros"):
            plans.append(WindowPlan(None, None))
            flags[w] = "none"
        else:
            assert vl.face_offset is not None
            plans.append(WindowPlan(vl.crop_box[w].copy(), vl.crop_landmarks[w].copy(),
                                    int(vl.face_offset[w])))
            flags[w] = status
    return plans, flags


def _finish_features(cfg: Config, row: Mapping[str, Any], out_path: Path, meta: dict[str, Any],
                     vl: VideoLandmarks, flags: np.ndarray, n_indices: int, t0: float,
                     chunks: list[FeatureChunk]) -> VideoStatus:
    from vrme.schema import VideoFeatures, write_video_features

    subject, video = str(row["subject"]), str(row["video"])
    values = np.concatenate([c.values for c in chunks], axis=0)
    bad = sorted({b for c in chunks for b in c.bad_frames})
    counts = window_counts(flags)
    meta = dict(meta, counts=counts, bad_frames=bad, n_bad_frames=len(bad),
                realign_shifts=int(sum(c.realign_shifts for c in chunks)),
                flow_kernel=",".join(sorted({c.flow_kernel for c in chunks})))
    feats = VideoFeatures(
        subject=subject,
        video=video,
        values=values,
        start_index=vl.start_index,
        start_frame=vl.start_frame,
        align=flags,
        n_frames=n_indices,
        first_frame=int(row["first_frame"]),
        frame_skip=int(cfg.dataset.frame_skip),
        meta=meta,
    )
    write_video_features(out_path, feats)
    timings: dict[str, float] = {}
    for c in chunks:
        for key, v in c.timings.items():
            timings[key] = timings.get(key, 0.0) + v
    timings["farneback_calls"] = float(sum(c.farneback_calls for c in chunks))
    return VideoStatus(stage="features", subject=subject, video=video, status="computed",
                       path=str(out_path), n_indices=n_indices, n_windows=len(values),
                       frames_read=sum(c.frames_read for c in chunks), counts=counts,
                       bad_frames=bad, seconds=time.perf_counter() - t0, timings=timings,
                       peak_rss_mb=max(c.peak_rss_mb for c in chunks))


def plan_features(cfg: Config, row: Mapping[str, Any], root: str | os.PathLike[str],
                  lm_path: Path | None = None, out_path: Path | None = None, workers: int = 1,
                  force: bool = False) -> VideoJob:
    """Decide what one video's features need: nothing (cached / skipped) or window chunks for
    :func:`feature_chunk`. Raises :class:`UserError` when its landmarks are missing or stale
    and :class:`NoFaceError` when they show no face at all."""
    root = Path(root)
    subject, video = str(row["subject"]), str(row["video"])
    out_path = Path(out_path) if out_path is not None else feature_path(cfg, subject, video)
    lm_path = Path(lm_path) if lm_path is not None else landmarks_path(cfg, subject, video)
    job = VideoJob(subject=subject, video=video, stage="features",
                   skip_errors=(NoFaceError, FrameError))
    t0 = time.perf_counter()
    n_indices = index_count(int(row["n_frames"]), cfg.dataset.frame_skip)
    n_windows = window_count(n_indices, cfg.features.k)
    if n_windows == 0:
        job.status = VideoStatus(stage="features", subject=subject, video=video,
                                 status="skipped", n_indices=n_indices,
                                 reason=f"{n_indices} frames after skipping: shorter than one "
                                 f"window of k={cfg.features.k} plus a half")
        return job
    params = feature_params(cfg)
    params_hash = stable_hash(params)
    fingerprint = frames_fingerprint(row, root, cfg.dataset.frame_skip)
    if not force and cached_output_valid(out_path, params_hash, fingerprint,
                                         flow_kernel_here(cfg.features.flow_impl)):
        meta = read_parquet_metadata(out_path)["vrme"]
        job.status = VideoStatus(stage="features", subject=subject, video=video,
                                 status="cached", path=str(out_path), n_indices=n_indices,
                                 n_windows=n_windows, counts=dict(meta.get("counts", {})),
                                 bad_frames=list(meta.get("bad_frames", [])))
        return job
    if not cached_output_valid(lm_path, stable_hash(align_params(cfg)), fingerprint):
        raise UserError(f"{subject}/{video}: landmarks {lm_path} are missing or were made "
                        "from other frames or parameters; run `vrme align` first")
    vl = read_landmarks(lm_path)
    if vl.n_windows != n_windows:
        raise UserError(f"{lm_path}: {vl.n_windows} windows, expected {n_windows}")
    counts = vl.counts()
    if counts["none"] == n_windows:
        raise NoFaceError(f"{subject}/{video}: no face detected in any of {n_windows} windows")
    plans, flags = _window_plans(cfg.features, vl)
    meta = {
        "stage": "features",
        "params": params,
        "params_hash": params_hash,
        "align_hash": align_hash(cfg),
        "fingerprint": fingerprint,
        "versions": library_versions(),
        "roi_names": list(ROI_NAMES),
        "rows": "ROI r: row 2r = x, row 2r+1 = y (px on the crop), minus global motion",
    }
    # A video file is decoded sequentially: one chunk, or every chunk would decode from the
    # start.
    ranges = (chunk_windows(n_windows, workers) if row.get("source", "frames") == "frames"
              else [(0, n_windows)])
    for w0, w1 in ranges:
        job.chunks.append((cfg, dict(row), str(root), w0, plans[w0:w1]))
        job.frames.append((w1 - w0 + 1) * (cfg.features.k // 2))
    job.finish = functools.partial(_finish_features, cfg, dict(row), out_path, meta, vl, flags,
                                   n_indices, t0)
    return job


def extract_video_features(cfg: Config, row: Mapping[str, Any],
                           root: str | os.PathLike[str] | None = None,
                           landmarks_file: str | os.PathLike[str] | None = None,
                           out_path: str | os.PathLike[str] | None = None,
                           force: bool = False) -> VideoStatus:
    """Compute one video's window features in this process and write them (skipped if the
    cached file matches). ``row``: a manifest row; ``landmarks_file`` defaults to
    :func:`landmarks_path` (must exist: run :func:`vrme.features.align.align_video` first);
    ``out_path`` to :func:`feature_path`. Raises :class:`NoFaceError` for a video without a
    face and :class:`FrameError` for an unreadable frame under ``bad_frame: fail``."""
    r = dataset_root(cfg.dataset, root)
    job = plan_features(cfg, row, r, Path(landmarks_file) if landmarks_file else None,
                        Path(out_path) if out_path else None, 1, force)
    if job.status is not None:
        return job.status
    assert job.finish is not None
    return job.finish([feature_chunk(*args) for args in job.chunks])


def run_features(cfg: Config, manifest: pd.DataFrame | list[Mapping[str, Any]],
                 root: str | os.PathLike[str] | None = None, workers: int | None = None,
                 progress: bool = True, force: bool = False,
                 align_first: bool = True) -> list[VideoStatus]:
    """Compute the features of every video of ``manifest`` in this process, one after another
    (an orchestrator runs videos side by side as tasks); ``workers``: split each video's
    windows into that many chunks (the numbers do not depend on it). With ``align_first`` the
    landmark stage runs
    first (cached videos cost only a fingerprint). Videos with no face, or with a bad frame
    (unreadable, or of another size) that ``bad_frame`` does not replace, are reported as
    skipped with the reason naming the file; the run goes on."""
    r = dataset_root(cfg.dataset, root)
    n_workers = max(1, int(workers or 1))
    rows = ([dict(x) for x in manifest.to_dict(orient="records")]
            if hasattr(manifest, "to_dict") else [dict(x) for x in manifest])
    skipped: dict[tuple[str, str], VideoStatus] = {}
    if align_first:
        for st in run_align(cfg, rows, r, n_workers, progress=progress):
            if st.status == "skipped":
                skipped[(st.subject, st.video)] = VideoStatus(
                    stage="features", subject=st.subject, video=st.video, status="skipped",
                    reason=st.reason, n_indices=st.n_indices)
    jobs: list[VideoJob] = []
    for row in rows:
        key = (str(row["subject"]), str(row["video"]))
        if key in skipped:
            jobs.append(VideoJob(subject=key[0], video=key[1], stage="features",
                                 status=skipped[key]))
            continue
        try:
            jobs.append(plan_features(cfg, row, r, workers=n_workers, force=force))
        except NoFaceError as exc:
            jobs.append(VideoJob(subject=key[0], video=key[1], stage="features",
                                 status=VideoStatus(stage="features", subject=key[0],
                                                    video=key[1], status="skipped",
                                                    reason=str(exc))))
    return run_jobs(jobs, feature_chunk, progress=progress, label="features")
