"""Frame listing and streaming frame access.

A video is either a folder of numbered image files (CAS(ME)^3, SAMM-LV, MEGC) or a video file
(.mp4/.avi). Frames are addressed by *position*: 0-based, counting from the first frame number,
with gaps in the numbering filled (see :class:`FrameSource`). Frames are read one at a time, so
memory does not grow with video length.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vrme.errors import FrameError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")

_NUM_RE = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically ('img2' < 'img10')."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


MAX_FRAME_NUMBER = 2**31 - 1
"""Largest frame number vrme accepts (in a file name or a label cell)."""


@dataclass
class FrameListing:
    """The frame files of one folder: the files that follow the video's one naming pattern.

    ``pattern`` is (prefix, suffix, pad_width): every frame is named
    ``prefix + number + suffix``, the number zero-padded to ``pad_width`` digits (0 = not
    padded). ``files``/``numbers`` are those frames in number order; ``gaps`` the runs of
    numbers between the first and the last with no file, as inclusive (start, end) pairs;
    ``ignored`` every other file of the folder (another pattern, no number, not an image), in
    natural order.
    """

    folder: Path
    files: list[str]
    numbers: list[int]
    pattern: tuple[str, str, int]
    gaps: list[tuple[int, int]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.numbers[0]

    @property
    def last(self) -> int:
        return self.numbers[-1]

    @property
    def longest_gap(self) -> int:
        """Length of the longest run of missing numbers (0 = contiguous)."""
        return max((b - a + 1 for a, b in self.gaps), default=0)

    @property
    def missing(self) -> list[int]:
        """Every missing number (check :attr:`longest_gap` first: a gap can be huge)."""
        return [n for a, b in self.gaps for n in range(a, b + 1)]

    def describe_pattern(self) -> str:
        return describe_pattern(*self.pattern)


def describe_pattern(prefix: str, suffix: str, pad: int) -> str:
    """A naming pattern as users read it: '<n>.jpg', '006_1_<nnnn>.jpg'."""
    return f"{prefix}<{'n' * pad if pad else 'n'}>{suffix}"


def _fits(name: str, prefix: str, suffix: str, pad: int, number: int) -> bool:
    return name == frame_name(prefix, suffix, pad, number)


def list_frames(folder: str | os.PathLike[str], prefix: str | None = None) -> FrameListing:
    """The frames of ``folder``: the image files that follow its one naming pattern.

    A pattern is a prefix, a number (zero-padded to one width, or not padded) and an image
    extension. ``prefix`` is the layout's (CAS(ME)^3 ``''``: ``0.jpg``; SAMM-LV
    ``'<video>_'``: ``006_1_0001.jpg``); ``None`` (unlabelled layouts) lets the files decide.
    The pattern most files follow is the video's; every other file is listed in ``ignored``.
    Raises :class:`FrameError` naming the folder if no file follows a pattern, if two patterns
    are about as common (the second has at least half as many files the first does not
    cover: which one is the video?), or if a frame number is beyond :data:`MAX_FRAME_NUMBER`.
    """
    folder = Path(folder)
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError as exc:
        raise FrameError(f"cannot list frames in {folder}: {exc.strerror or exc}") from exc
    names = sorted((n for n in names if ".tmp-" not in n), key=natural_key)
    groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
    widths: dict[tuple[str, str], set[int]] = {}
    for name in names:
        m = _NUM_RE.match(name)
        if not m or m.group(3).lower() not in IMAGE_EXTENSIONS:
            continue
        pre, digits, suf = m.groups()
        if prefix is not None and pre != prefix:
            continue
        groups.setdefault((pre, suf), []).append((name, int(digits)))
        widths.setdefault((pre, suf), {0})
        if len(digits) > 1 and digits[0] == "0":
            widths[(pre, suf)].add(len(digits))
    candidates: dict[tuple[str, str, int], dict[int, str]] = {}
    for (pre, suf), members in groups.items():
        for pad in sorted(widths[(pre, suf)]):
            fit = {n: name for name, n in members if _fits(name, pre, suf, pad, n)}
            if fit:
                candidates[(pre, suf, pad)] = fit
    if not candidates:
        what = (f"named like {describe_pattern(prefix, '.jpg', 0)}" if prefix is not None
                else f"with a number in the name ({', '.join(IMAGE_EXTENSIONS)})")
        found = f" (found: {_some(names)})" if names else " (the folder is empty)"
        raise FrameError(f"no image files {what} in {folder}{found}")
    ranked = sorted(candidates.items(), key=lambda kv: (-len(kv[1]), kv[0][2] == 0, kv[0]))
    best_key, best = ranked[0]
    chosen = set(best.values())
    for key, files in ranked[1:]:
        extra = [n for n in files.values() if n not in chosen]
        if len(extra) * 2 >= len(best):
            raise FrameError(
                f"{folder}: frames follow two naming patterns, {len(best)} file(s) like "
                f"{describe_pattern(*best_key)} and {len(files)} like {describe_pattern(*key)}: "
                "keep one video's frames per folder")
    numbers = sorted(best)
    if numbers[-1] > MAX_FRAME_NUMBER:
        raise FrameError(f"{folder}: frame number {numbers[-1]} in {best[numbers[-1]]!r} is out "
                         f"of range (at most {MAX_FRAME_NUMBER})")
    gaps = [(a + 1, b - 1) for a, b in zip(numbers, numbers[1:]) if b - a > 1]
    return FrameListing(
        folder=folder,
        files=[best[n] for n in numbers],
        numbers=numbers,
        pattern=best_key,
        gaps=gaps,
        ignored=[n for n in names if n not in chosen],
    )


def _some(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                       else "")


def frame_name(prefix: str, suffix: str, pad: int, number: int) -> str:
    """File name of frame ``number`` under a (prefix, suffix, pad) pattern."""
    return f"{prefix}{number:0{pad}d}{suffix}" if pad else f"{prefix}{number}{suffix}"


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as 8-bit grayscale; :class:`FrameError` names the file on failure."""
    import cv2

    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise FrameError(f"cannot read frame {p}: {exc.strerror or exc}") from exc
    if data.size == 0:
        raise FrameError(f"frame {p} is an empty file")
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FrameError(f"frame {p} is not a decodable image")
    if p.suffix.lower() in (".jpg", ".jpeg") and b"\xff\xd9" not in data[-64:].tobytes():
        # OpenCV decodes a truncated JPEG silently (grey fill); refuse it.
        raise FrameError(f"frame {p} is a truncated JPEG (no end-of-image marker)")
    return img


class FrameSource:
    """Streaming access to the frames of one video described by a manifest row.

    Positions run 0..n_frames-1; position p is frame number ``first_frame + p``. Frames whose
    number is missing from the folder (``missing_frames``) are served as the previous available
    frame (the ingest step reported the gap). Video files are decoded sequentially.

    A frame file whose size differs from the video's (the row's ``width`` x ``height``, taken
    from its first frame at ingestion) raises :class:`FrameError` like an unreadable one: the
    crop boxes are pixel coordinates of that size, so such a frame cannot be used as it is.
    """

    def __init__(self, row: Mapping[str, Any], root: str | os.PathLike[str]):
        self.root = Path(root)
        self.subject = str(row["subject"])
        self.video = str(row["video"])
        self.source = str(row["source"])
        self.path = self.root / str(row["path"])
        self.first_frame = int(row["first_frame"])
        self.n_frames = int(row["n_frames"])
        self.prefix = str(row.get("name_prefix") or "")
        self.suffix = str(row.get("name_suffix") or "")
        self.pad = int(row.get("pad_width") or 0)
        files = row.get("frame_files")
        self.files: list[str] | None = list(files) if files is not None and len(files) else None
        missing = row.get("missing_frames")
        self.missing = frozenset(int(m) for m in missing) if missing is not None else frozenset()
        w, h = int(row.get("width") or 0), int(row.get("height") or 0)
        self.size: tuple[int, int] | None = (h, w) if w > 0 and h > 0 else None
        self._numbers_index: dict[int, str] | None = None
        self._cap: Any = None
        self._cap_pos = -1

    # -- addressing -------------------------------------------------------------------
    def frame_number(self, position: int) -> int:
        """Original frame number of ``position``."""
        return self.first_frame + position

    def frame_path(self, position: int) -> Path:
        """File that holds ``position`` (for a gap: the nearest earlier existing frame)."""
        if self.source != "frames":
            return self.path
        number = self.frame_number(position)
        while number in self.missing and number > self.first_frame:
            number -= 1
        if self.files is not None:
            if self._numbers_index is None:
                self._numbers_index = {}
                for name in self.files:
                    m = _NUM_RE.match(name)
                    if m:
                        self._numbers_index[int(m.group(2))] = name
            return self.path / self._numbers_index[number]
        return self.path / frame_name(self.prefix, self.suffix, self.pad, number)

    # -- reading ----------------------------------------------------------------------
    def read(self, position: int) -> np.ndarray:
        """Grayscale uint8 frame at ``position``."""
        if not 0 <= position < self.n_frames:
            raise IndexError(f"{self.subject}/{self.video}: position {position} out of range")
        if self.source != "frames":
            return self._read_video(position)
        path = self.frame_path(position)
        img = read_gray(path)
        if self.size is not None and img.shape[:2] != self.size:
            raise FrameError(f"frame {path} is {img.shape[1]} x {img.shape[0]} px; the video's "
                             f"frames are {self.size[1]} x {self.size[0]}")
        return img

    def iter_positions(self, positions: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (position, frame) for increasing ``positions``, one frame in memory at a time."""
        for p in positions:
            yield p, self.read(p)

    def _read_video(self, position: int) -> np.ndarray:
        import cv2

        if self._cap is None or position < self._cap_pos + 1:
            self.close()
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                raise FrameError(f"cannot open video {self.path}")
            self._cap_pos = -1
        while self._cap_pos < position - 1:
            if not self._cap.grab():
                raise FrameError(f"{self.path}: cannot decode frame {self._cap_pos + 1}")
            self._cap_pos += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise FrameError(f"{self.path}: cannot decode frame {position}")
        self._cap_pos = position
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame

    def close(self) -> None:
        """Release an open video file."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_video(path: str | os.PathLike[str]) -> Any:
    """An opened ``cv2.VideoCapture`` of a video file, or FrameError naming the file: missing,
    a folder, empty (0 bytes), or not openable as a video (damaged, truncated, another kind of
    file)."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise FrameError(f"video {p} not found")
    if not p.is_file():
        raise FrameError(f"video {p} is not a file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise FrameError(f"cannot read video {p}: {exc.strerror or exc}") from exc
    if size == 0:
        raise FrameError(f"video {p} is an empty file (0 bytes)")
    quiet = "OPENCV_FFMPEG_LOGLEVEL" not in os.environ
    if quiet:  # FFmpeg's own message ('moov atom not found') would precede ours
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
    try:
        cap = cv2.VideoCapture(str(p))
    finally:
        if quiet:
            os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    if not cap.isOpened():
        cap.release()
        raise FrameError(f"cannot open video {p} ({size:,} bytes): damaged, truncated or not a "
                         "video file")
    return cap


def check_video(path: str | os.PathLike[str], prefix: str | None = None) -> None:
    """Quick check that ``path`` is a video vrme can read, before anything slow starts: a video
    file that opens and decodes its first frame, or a folder whose frames (see
    :func:`list_frames`) start with a decodable image. Raises :class:`FrameError` naming the
    file or folder."""
    p = Path(path)
    if p.is_dir():
        listing = list_frames(p, prefix)
        read_gray(p / listing.files[0])
        return
    if p.exists() and not p.name.lower().endswith(VIDEO_EXTENSIONS):
        raise FrameError(f"{p}: not a video file ({', '.join(VIDEO_EXTENSIONS)}) or a folder of "
                         "frames")
    cap = _open_video(p)
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise FrameError(f"video {p} opens but its first frame cannot be decoded (damaged or "
                         "truncated?)")


def count_video_frames(path: str | os.PathLike[str]) -> tuple[int, float, int, int]:
    """(frame count, fps, width, height) of a video file, counting frames by decoding.

    The container's frame count is unreliable for many .avi/.mp4 files, so frames are grabbed
    one by one. Raises :class:`FrameError` for a missing, empty, unopenable or frameless file.
    """
    import cv2

    cap = _open_video(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise FrameError(f"video {path} has no decodable frames")
    return n, fps, width, height
