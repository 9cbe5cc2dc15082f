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


@dataclass
class FrameListing:
    """The frame files of one folder, understood as a numbered sequence.

    ``numbers`` are the frame numbers in the file names (natural order); ``missing`` the numbers
    between first and last with no file; ``pattern`` is (prefix, suffix, pad_width) when every
    name is ``prefix + number + suffix`` with one padding style, else None (then ``files`` is the
    explicit list in order).
    """

    folder: Path
    files: list[str]
    numbers: list[int]
    missing: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unnumbered: list[str] = field(default_factory=list)
    pattern: tuple[str, str, int] | None = None

    @property
    def first(self) -> int:
        return self.numbers[0]

    @property
    def last(self) -> int:
        return self.numbers[-1]


def list_frames(folder: str | os.PathLike[str]) -> FrameListing:
    """List the numbered image files of ``folder`` in natural order and detect gaps.

    Raises :class:`FrameError` if the folder has no numbered image files.
    """
    folder = Path(folder)
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError as exc:
        raise FrameError(f"cannot list frames in {folder}: {exc.strerror or exc}") from exc
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and ".tmp-" not in n]
    parsed: dict[int, str] = {}
    duplicates: list[str] = []
    unnumbered: list[str] = []
    for name in sorted(images, key=natural_key):
        m = _NUM_RE.match(name)
        if not m:
            unnumbered.append(name)
            continue
        n = int(m.group(2))
        if n in parsed:
            duplicates.append(name)
            continue
        parsed[n] = name
    if not parsed:
        raise FrameError(f"no numbered image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    numbers = sorted(parsed)
    files = [parsed[n] for n in numbers]
    present = set(numbers)
    missing = [n for n in range(numbers[0], numbers[-1] + 1) if n not in present]
    return FrameListing(
        folder=folder,
        files=files,
        numbers=numbers,
        missing=missing,
        duplicates=duplicates,
        unnumbered=unnumbered,
        pattern=_common_pattern(files, numbers),
    )


def _common_pattern(files: list[str], numbers: list[int]) -> tuple[str, str, int] | None:
    """(prefix, suffix, pad) if all names follow one pattern; pad 0 = not padded."""
    prefixes, suffixes, widths, padded = set(), set(), set(), False
    for name, n in zip(files, numbers):
        m = _NUM_RE.match(name)
        assert m is not None
        digits = m.group(2)
        prefixes.add(m.group(1))
        suffixes.add(m.group(3))
        widths.add(len(digits))
        if len(digits) > 1 and digits.startswith("0"):
            padded = True
    if len(prefixes) != 1 or len(suffixes) != 1:
        return None
    prefix, suffix = prefixes.pop(), suffixes.pop()
    if padded:
        if len(widths) != 1:
            return None
        return prefix, suffix, widths.pop()
    # Not padded: names must be exactly str(n).
    for name, n in zip(files, numbers):
        if name != f"{prefix}{n}{suffix}":
            return None
    return prefix, suffix, 0


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


def count_video_frames(path: str | os.PathLike[str]) -> tuple[int, float, int, int]:
    """(frame count, fps, width, height) of a video file, counting frames by decoding.

    The container's frame count is unreliable for many .avi/.mp4 files, so frames are grabbed
    one by one.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FrameError(f"cannot open video {path}")
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
