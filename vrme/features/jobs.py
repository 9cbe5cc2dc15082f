"""Shared machinery of the per-video stages (alignment, flow features).

- :class:`VideoStatus`: what happened to one video in a stage (computed / cached / skipped).
- :class:`IndexReader`: frames by *index* (after frame skipping), with the bad-frame policy.
- :func:`frames_fingerprint`: what a cache entry records (with
:func:`vrme.record.library_versions`).
- :func:`window_count`, :func:`chunk_windows`: window arithmetic and work splitting.
- :func:`run_jobs`: runs the chunks of videos in this process with a progress bar and hands
  each video's chunk results, in order, to its finishing function. Videos run side by side only
  as tasks of the orchestrator's task runner (one way to run in parallel, with its caching and
  failure handling).

A video's windows are split into chunks of consecutive windows; every window depends only on
its own frames and its landmarks, so the numbers do not depend on how the work was split.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from vrme.config import DatasetConfig
from vrme.data.frames import FrameSource
from vrme.errors import FrameError, UserError
from vrme.io import read_parquet_metadata
from vrme.progress import ProgressBar

log = logging.getLogger(__name__)

Status = Literal["computed", "cached", "skipped"]


@dataclass
class VideoStatus:
    """Outcome of one stage for one video.

    ``n_indices``: frames after skipping; ``frames_read``: frames decoded for this run (0 when
    cached); ``counts``: windows per alignment flag; ``bad_frames``: original numbers of
    unreadable frames replaced by a neighbour; ``timings``: CPU seconds spent per part
    (decode, detect, flow, rest), summed over workers; ``seconds``: wall time;
    ``peak_rss_mb``: the largest peak resident memory of the processes that computed it.
    """

    stage: str
    subject: str
    video: str
    status: Status
    reason: str = ""
    path: str | None = None
    n_indices: int = 0
    n_windows: int = 0
    frames_read: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    bad_frames: list[int] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


# -- windows -----------------------------------------------------------------------------------


def index_count(n_frames: int, frame_skip: int) -> int:
    """Frames left after keeping every ``frame_skip``-th of ``n_frames`` (positions)."""
    return -(-int(n_frames) // int(frame_skip))


def window_count(n_indices: int, k: int) -> int:
    """Windows of length ``k`` and stride k/2 over ``n_indices`` frames (after skipping)."""
    return max(0, n_indices // (k // 2) - 1)


def chunk_windows(n_windows: int, workers: int, max_chunk: int = 96,
                  min_chunk: int = 8) -> list[tuple[int, int]]:
    """Split windows 0..n_windows-1 into ranges [w0, w1) of consecutive windows.

    A short video is split into about ``workers`` chunks (so one video can use every core), a
    long one into chunks of at most ``max_chunk`` windows.
    """
    if n_windows <= 0:
        return []
    size = max(min_chunk, min(max_chunk, math.ceil(n_windows / max(1, workers))))
    n_chunks = math.ceil(n_windows / size)
    bounds = np.linspace(0, n_windows, n_chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# -- frames ------------------------------------------------------------------------------------


class IndexReader:
    """Reads frames by index j (position j * frame_skip) as grayscale uint8.

    A bad frame is a file that cannot be read or decoded, or whose size is not the video's.
    ``bad_frame='fail'`` raises :class:`FrameError` naming the file (the stages then skip the
    video); ``'repeat_previous'`` replaces a bad frame with the nearest good frame before it
    (after it at the start of a video) and records its original number in :attr:`bad`. The
    replacement depends only on the frames, never on the order of reads, so chunks agree with a
    whole-video pass.
    """

    def __init__(self, row: Mapping[str, Any], root: str | os.PathLike[str], frame_skip: int,
                 bad_frame: str = "fail"):
        self.source = FrameSource(row, root)
        self.skip = int(frame_skip)
        self.policy = bad_frame
        self.n_indices = index_count(self.source.n_frames, self.skip)
        self.bad: set[int] = set()
        self.decode_s = 0.0
        self.reads = 0
        self._last: tuple[int, np.ndarray] | None = None  # last good (index, frame)
        self._resolved: dict[int, int] = {}  # bad index -> index of its replacement
        self._error = ""  # why the last bad frame was bad

    def frame_number(self, index: int) -> int:
        """Original frame number of index ``index``."""
        return self.source.frame_number(index * self.skip)

    def _try(self, index: int) -> np.ndarray | None:
        t = time.thread_time()
        try:
            img = self.source.read(index * self.skip)
        except FrameError as exc:
            if self.policy == "fail":
                raise
            self._error = str(exc)
            return None
        finally:
            self.decode_s += time.thread_time() - t
            self.reads += 1
        self._last = (index, img)
        return img

    def read(self, index: int) -> np.ndarray:
        """The frame at ``index`` (or its replacement under ``repeat_previous``)."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        img = self._try(index)
        if img is not None:
            return img
        self.bad.add(self.frame_number(index))
        log.warning("%s/%s: bad frame %d replaced by a neighbour (%s)", self.source.subject,
                    self.source.video, self.frame_number(index), self._error)
        return self._replacement(index)

    def _replacement(self, index: int) -> np.ndarray:
        prev = self._resolved.get(index - 1)
        order: list[int]
        if prev is not None and prev < index:
            order = [prev]
        else:
            order = list(range(index - 1, -1, -1))
        order += list(range(index + 1, self.n_indices))
        for j in order:
            img = self._last[1] if self._last is not None and self._last[0] == j else self._try(j)
            if img is not None:
                self._resolved[index] = j
                return img
            if j != index:
                self.bad.add(self.frame_number(j))
        raise FrameError(
            f"{self.source.subject}/{self.source.video}: no readable frame in {self.source.path}"
        )

    def close(self) -> None:
        self.source.close()


def frames_fingerprint(row: Mapping[str, Any], root: str | os.PathLike[str],
                       frame_skip: int) -> str:
    """Fingerprint (16 hex) of the files a video's indices read: names, sizes, mtimes."""
    src = FrameSource(row, root)
    h = hashlib.sha256()
    if src.source != "frames":
        paths = [src.path]
    else:
        seen: dict[Path, None] = {}
        for j in range(index_count(src.n_frames, frame_skip)):
            seen.setdefault(src.frame_path(j * frame_skip), None)
        paths = list(seen)
    h.update(f"{src.n_frames}:{frame_skip}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p.name}\0missing\n".encode())
    return h.hexdigest()[:16]


def dataset_root(dataset: DatasetConfig, root: str | os.PathLike[str] | None) -> Path:
    """``root``, else ``dataset.root``; :class:`UserError` when neither is set."""
    r = root if root is not None else dataset.root
    if r is None:
        raise UserError("no dataset root: set dataset.root in the config or pass --root")
    return Path(r)


def cached_output_valid(path: Path, params_hash: str, fingerprint: str,
                        flow_kernel: str | None = None) -> bool:
    """True when the landmarks or features file ``path`` exists and was made with these
    parameters (hash) from these frames (fingerprint) and, for features (``flow_kernel``
    given), by the flow kernels this process runs (``c``, ``numba`` or ``opencv``: the fast
    path's two kernels agree only to float rounding)."""
    if not path.is_file():
        return False
    try:
        meta = read_parquet_metadata(path).get("vrme", {})
    except (OSError, pa.ArrowInvalid):
        return False
    return (meta.get("params_hash") == params_hash and meta.get("fingerprint") == fingerprint
            and (flow_kernel is None or meta.get("flow_kernel") == flow_kernel))


# -- running many videos --------------------------------------------------------------------


@dataclass
class VideoJob:
    """One video's pending work: ``chunks`` are argument tuples for the chunk function,
    ``frames`` the frames each chunk will process (for progress), ``finish`` turns the list of
    chunk results (in chunk order) into the video's status. A job with ``status`` set is
    already resolved (cached or skipped) and has no chunks."""

    subject: str
    video: str
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    finish: Callable[[list[Any]], VideoStatus] | None = None
    status: VideoStatus | None = None
    skip_errors: tuple[type[BaseException], ...] = ()
    stage: str = ""


def run_jobs(jobs: Sequence[VideoJob], work: Callable[..., Any],
             progress: bool = True, label: str = "videos") -> list[VideoStatus]:
    """Run every job's chunks (``work(*chunk)``) in this process, one after another; return
    statuses in job order. Videos run side by side only through the orchestrator's task
    runner (one task per video or batch, :mod:`tasks.pipeline`): there is one way to run them
    in parallel, with its caching and failure handling.

    A chunk or finish that raises one of its job's ``skip_errors`` marks that video skipped
    (with the error as reason) and the run goes on; any other error stops the run.
    """
    import cv2

    t0 = time.perf_counter()
    results: list[VideoStatus | None] = [j.status for j in jobs]
    total_frames = sum(sum(j.frames) for j in jobs if j.status is None)
    bar = ProgressBar(progress and total_frames > 0, label, total_frames, unit="frames",
                      rate=True).start()
    bar.note(f"{sum(r is not None for r in results)}/{len(jobs)} videos")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallelism is by task, one OpenCV thread each
    try:
        for i, j in enumerate(jobs):
            if j.status is not None:
                continue
            try:
                parts = []
                for c, args in enumerate(j.chunks):
                    parts.append(work(*args))
                    bar.advance(j.frames[c])
                assert j.finish is not None
                results[i] = j.finish(parts)
            except j.skip_errors as exc:
                log.warning("%s/%s skipped: %s", j.subject, j.video, exc)
                results[i] = VideoStatus(stage=j.stage, subject=j.subject, video=j.video,
                                         status="skipped", reason=str(exc),
                                         seconds=time.perf_counter() - t0)
            bar.note(f"{sum(r is not None for r in results)}/{len(jobs)} videos")
    finally:
        cv2.setNumThreads(threads)
        bar.close()
    return [r for r in results if r is not None]
