"""Synthetic micro-expression datasets in the exact on-disk layouts of CAS(ME)^3, SAMM-LV and
CAS(ME)^2.

The generator renders long 8-bit grayscale face videos from the astronaut photo shipped with
scikit-image (``skimage.data.astronaut()``). Each synthetic *subject* is that face with its own
scale, position, mirror flip, in-plane tilt, lighting, background and sensor noise. Facial
movements are smooth landmark-driven warps: the astronaut's 68 dlib landmarks are located once,
each action unit (AU) is a displacement field made of Gaussian radial basis functions around its
landmarks (normalised so that its largest displacement is 1 px), and a frame is

    background + warpAffine(remap(face, amplitude(t) * field), head pose(t)) * gain(t) + noise.

Events (frame numbers below are in the *original numbering*, i.e. the numbers in the jpg names,
onset..offset inclusive):

- micro-expressions (MEs): 0.2-0.5 s, raised-cosine rise to the apex and fall back, apex
  displacement 1.3-2.4 px; brow raise (AU 1+2) = surprise, brow lower (AU 4) = negative, lip-corner
  pull (AU 12) = positive, nose wrinkle (AU 9) / lip press (AU 24) / eye squint (AU 7) = others;
- macro-expressions: 0.5-4 s, 3.5-8 px, any of the same AUs;
- distractors that are never labelled: blinks, slow head drift, small head jerks, a slow global
  brightness flicker and per-frame Gaussian sensor noise.

MEs are kept at least 1 s apart from each other and from macro-expressions, and at least 0.5 s
from both ends of a video; blinks and jerks avoid MEs. Every random choice is drawn from numpy
Generators seeded by ``(seed, subject)`` and ``(seed, subject, video)``, so one video can be
regenerated alone and the same spec always gives byte-identical frames and spreadsheets.

Layouts written (DATASETS.md; each layout's folder and frame names and its spreadsheet writer
are declared by its module in ``vrme/data/layouts/``, :class:`vrme.data.layouts.Rendering`):

- ``casme3``: ``OUT/data/spNO.<i>/<video>/color/<n>.jpg`` (n from 0, not padded; videos ``a``,
  ``b``, ...), ``OUT/casme3_label.xlsx`` (sheet ``label``, header in row 1). As in the real part A
  spreadsheet, every row is a micro-expression: **macro-expressions are rendered but not
  labelled** in this layout; they are the movements a spotter must learn to ignore.
- ``samm-lv``: ``OUT/SAMM_longvideos/<sss>_<v>/<sss>_<v>_<nnnn>.jpg`` (n from 1, 4 digits),
  ``OUT/SAMM_LongVideos_V3_Release.xlsx`` (preamble rows 1-9, header row 10; MEs typed
  ``Micro - 1/2`` and macro-expressions typed ``Macro``) and ``OUT/SAMM_Micro_FACS_Codes_v2.xlsx``
  (sheet ``MICRO_ONLY``, preamble rows 1-13, header row 14; MEs only, with the emotion).
- ``casme2``: ``OUT/rawpic/s<NN>/<NN>_<code><name>/img<nnn>.jpg`` (n from 1, at least 3 digits;
  subject ``i`` in folder ``s<14+i>``, videos the release's stimulus codes ``0101``, ``0102``,
  ``0401``, ...), ``OUT/CAS(ME)^2code_final.xlsx`` (sheets ``CASFEcode_final``, no header row,
  every ME and macro-expression; ``naming rule1`` and ``naming rule2``).

Every layout also gets ``OUT/ground_truth.csv`` (STRS format: subject, video, onset, offset,
emotion; MEs only, emotion mapped to negative/positive/surprise/others, subject = fold id),
``OUT/synth_events.csv`` (every ME and macro-expression, with its AU and amplitude),
``OUT/synth_distractors.csv`` (blinks and head jerks) and, written last,
``OUT/synth_spec.json`` (the spec and counts; its presence marks a complete dataset).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import logging
import math
import os
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vrme.data import layouts as layouts
from vrme.errors import UserError
from vrme.progress import ProgressBar
from vrme.interrupt import check as check_interrupt
from vrme.data.layouts.casme3 import HEADER as CASME3_HEADER  # noqa: F401 - re-exported
from vrme.data.layouts.casme3 import LABEL_FILE as CASME3_LABEL_FILE  # noqa: F401
from vrme.data.layouts.samm_lv import (  # noqa: F401 - re-exported
    SAMM_FACS_FILE,
    SAMM_FACS_HEADER,
    SAMM_MACRO_TYPE,
    SAMM_MICRO_TYPE,
    SAMM_RELEASE_FILE,
    SAMM_RELEASE_HEADER,
)

# pandas and vrme.io (pyarrow) are imported where used: rendering workers never need them and
# start faster without.
if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import Config

_TMP_MARK = ".tmp-"  # the temporary-name mark of vrme.io (readers skip such names)
_SERIAL_FRAME_BUDGET = 1000
"""Below this many 640 x 480-equivalent frames in all, videos render in this process (starting
worker processes would cost more than it saves)."""

log = logging.getLogger(__name__)

SynthLayout = str
"""A layout ``vrme synth`` renders: :func:`vrme.data.layouts.synth_names` (casme2, casme3,
samm-lv)."""

GROUND_TRUTH_COLUMNS = ["subject", "video", "onset", "offset", "emotion"]

EVENT_COLUMNS = [
    "subject",
    "subject_dir",
    "video",
    "event",
    "onset",
    "apex",
    "offset",
    "type",
    "emotion_raw",
    "emotion",
    "au",
    "action",
    "objective_class",
    "amplitude_px",
]
"""Columns of :attr:`SynthResult.events` (frame numbers in original numbering, inclusive)."""

DISTRACTOR_COLUMNS = ["subject", "subject_dir", "video", "type", "onset", "offset", "size"]

# Landmarks (dlib 68-point scheme) whose neighbourhood each action moves. Tests and users can
# measure an action's motion around these points.
AU_LANDMARKS: dict[str, tuple[int, ...]] = {
    "brow_raise": tuple(range(17, 27)),
    "brow_lower": (18, 19, 20, 21, 22, 23, 24, 25),
    "lip_corner_pull": (48, 49, 59, 54, 53, 55),
    "nose_wrinkle": (27, 28, 29, 31, 32, 33, 34, 35, 50, 51, 52),
    "lip_press": (49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 61, 62, 63, 65, 66, 67),
    "eye_squint": (36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47),
    "blink": (36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47),
}

ME_ACTIONS: dict[str, tuple[str, ...]] = {
    "surprise": ("brow_raise",),
    "negative": ("brow_lower",),
    "positive": ("lip_corner_pull",),
    "others": ("nose_wrinkle", "lip_press", "eye_squint"),
}
"""Emotion class -> the actions that express it in a synthetic ME."""

_ACTION_AU = {
    "brow_raise": "1+2",
    "brow_lower": "4",
    "lip_corner_pull": "12",
    "nose_wrinkle": "9",
    "lip_press": "24",
    "eye_squint": "7",
}
# Objective classes (Davison et al. 2018): I = AU6/12, II = AU1+2/5, IV = AU4/7, VI = AU9/10,
# VII = others.
_ACTION_OBJECTIVE = {
    "brow_raise": 2,
    "brow_lower": 4,
    "lip_corner_pull": 1,
    "nose_wrinkle": 6,
    "lip_press": 7,
    "eye_squint": 4,
}

# Fixed timestamp for every spreadsheet, so that the same spec gives byte-identical files.
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_FIXED_XLSX_TIME = "2020-01-01T00:00:00Z"


class SynthError(UserError):
    """A synthetic dataset cannot be generated as asked (bad spec, occupied output folder)."""


# ---------------------------------------------------------------------------------------------
# Spec and result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    ``seconds`` is the length of every video; ``fps`` (frames/s) defaults to the layout's rate
    (30 for casme3 and casme2, 200 for samm-lv). ``mes_per_video`` / ``macros_per_video`` are targets: events
    that do not fit a short video (each needs its own length plus 1 s of separation) are left
    out with a warning. ``head_motion`` and ``noise`` scale head drift/jerks and sensor noise
    (0 switches them off); ``blinks_per_minute`` is the mean blink rate (0 = none).
    ``samm_unannotated_apex`` writes apex -1 for the first ME of the samm-lv spreadsheets, to
    exercise readers' "not annotated" path. ``workers`` = processes rendering videos in
    parallel (None = up to the CPU count; 1 = in this process). Output does not depend on it.
    """

    layout: SynthLayout = "casme3"
    subjects: int = 4
    videos: int = 2
    seconds: float = 20.0
    fps: float | None = None
    width: int = 640
    height: int = 480
    mes_per_video: int = 4
    macros_per_video: int = 1
    seed: int = 0
    jpeg_quality: int = 90
    head_motion: float = 1.0
    noise: float = 1.0
    blinks_per_minute: float = 12.0
    samm_unannotated_apex: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        found = layouts.rendered(str(self.layout))
        if found is None or found.rendering is None:
            raise SynthError(f"synth layout must be one of {', '.join(layouts.synth_names())}, "
                             f"got {self.layout!r}")
        r = found.rendering
        object.__setattr__(self, "layout", r.name)
        object.__setattr__(self, "fps", float(r.fps if self.fps is None else self.fps))
        checks = [
            (self.subjects >= 1, "subjects must be >= 1"),
            (self.videos >= 1, "videos must be >= 1"),
            (self.seconds > 0, "seconds must be > 0"),
            (self.fps is not None and self.fps > 0, "fps must be > 0"),
            (self.width >= 160 and self.height >= 120, "frames must be at least 160 x 120 px"),
            (self.mes_per_video >= 0 and self.macros_per_video >= 0, "event counts must be >= 0"),
            (self.seed >= 0, "seed must be >= 0"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be in 1..100"),
            (self.head_motion >= 0 and self.noise >= 0, "head_motion and noise must be >= 0"),
            (self.blinks_per_minute >= 0, "blinks_per_minute must be >= 0"),
            (self.workers is None or self.workers >= 1, "workers must be >= 1"),
            (r.max_subjects is None or self.subjects <= r.max_subjects,
             f"{r.name} allows {r.max_subjects} subjects"),
            (r.max_videos is None or self.videos <= r.max_videos,
             f"{r.name} allows {r.max_videos} videos per subject"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SynthError(f"invalid synth spec: {msg}")
        if self.frames_per_video < 2:
            raise SynthError("invalid synth spec: a video needs at least 2 frames "
                             f"(seconds={self.seconds}, fps={self.fps})")

    @property
    def frames_per_video(self) -> int:
        """Frames in every video (``round(seconds * fps)``)."""
        return int(round(self.seconds * float(self.fps or 0)))

    @property
    def rendering(self) -> layouts.Rendering:
        """How the layout is written (folder and frame names, spreadsheets)."""
        return _rendering(self.layout)

    @property
    def first_frame(self) -> int:
        """Number of the first frame in the jpg names: 0 for casme3, 1 for samm-lv and
        casme2."""
        return self.rendering.first_frame

    def as_dict(self) -> dict[str, Any]:
        """The fields that determine the output (``workers`` does not)."""
        d = dataclasses.asdict(self)
        d.pop("workers")
        return d


@dataclass
class SynthResult:
    """What :func:`generate_dataset` wrote.

    ``events``: one row per ME and macro-expression (:data:`EVENT_COLUMNS`; frame numbers in
    original numbering, inclusive; in casme3 the macro rows are rendered but not in the
    spreadsheet). ``distractors``: blinks and head jerks. ``videos``: subject, subject_dir,
    video, path (relative to ``out_dir``), n_frames, first_frame. ``label_files``: the
    spreadsheets; ``ground_truth``: the STRS-format CSV; ``seconds``: wall time taken.
    """

    out_dir: Path
    spec: SynthSpec
    events: pd.DataFrame
    distractors: pd.DataFrame
    videos: pd.DataFrame
    label_files: list[Path]
    ground_truth: Path
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return int(self.videos["n_frames"].sum()) if len(self.videos) else 0


# ---------------------------------------------------------------------------------------------
# Names and ids
# ---------------------------------------------------------------------------------------------


def _rendering(layout: str) -> layouts.Rendering:
    found = layouts.rendered(layout)
    if found is None or found.rendering is None:
        raise SynthError(f"synth layout must be one of {', '.join(layouts.synth_names())}, "
                         f"got {layout!r}")
    return found.rendering


def subject_names(layout: str, index: int) -> tuple[str, str]:
    """(subject_dir, fold id) of 1-based subject ``index``: casme3 ('spNO.3', '3'),
    samm-lv ('003', '003'), casme2 ('s17', 's17')."""
    return _rendering(layout).subject_names(index)


def video_name(layout: str, subject_dir: str, index: int) -> str:
    """Name of 1-based video ``index`` of a subject: casme3 'a'..'z', then 'a1'..'z1', ...;
    samm-lv '<sss>_<index>'; casme2 '<NN>_<code>' (the manifest's video name)."""
    return _rendering(layout).video_name(subject_dir, index)


def frame_relpath(layout: str, subject_dir: str, video: str, number: int) -> str:
    """Path of frame ``number`` (original numbering) relative to the dataset root."""
    return _rendering(layout).frame_relpath(subject_dir, video, number)


def video_relpath(layout: str, subject_dir: str, video: str) -> str:
    """Folder holding a video's frames, relative to the dataset root."""
    return _rendering(layout).video_folder(subject_dir, video)


# ---------------------------------------------------------------------------------------------
# The source face
# ---------------------------------------------------------------------------------------------


def predictor_path() -> Path:
    """Path of dlib's 68-landmark model shipped in the face-recognition-models package
    (found without importing that package). Raises :class:`SynthError` if it is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SynthError("package face-recognition-models is not installed: it provides "
                         "shape_predictor_68_face_landmarks.dat")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / \
        "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise SynthError(f"dlib landmark model not found: {path}")
    return path


@dataclass(frozen=True)
class SourceFace:
    """The photo every subject is rendered from: 8-bit grayscale image and its 68 dlib
    landmarks (x, y in pixels of that image)."""

    image: np.ndarray
    landmarks: np.ndarray


def astronaut_face() -> SourceFace:
    """Load ``skimage.data.astronaut()`` as grayscale and locate its 68 landmarks with dlib."""
    import cv2
    import dlib
    import skimage.data

    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    detector = dlib.get_frontal_face_detector()
    faces = detector(gray, 1)
    if len(faces) == 0:  # pragma: no cover - the photo is fixed
        raise SynthError("dlib found no face in skimage.data.astronaut()")
    face = max(faces, key=lambda r: r.width() * r.height())
    shape = dlib.shape_predictor(str(predictor_path()))(gray, face)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    return SourceFace(image=gray, landmarks=pts)


# ---------------------------------------------------------------------------------------------
# Subjects: base image and action fields
# ---------------------------------------------------------------------------------------------


@dataclass
class _Field:
    """A unit displacement field restricted to its region of support (rows y0:y1, cols x0:x1):
    backward map = grid - amplitude * (dx, dy)."""

    y0: int
    y1: int
    x0: int
    x1: int
    gx: np.ndarray
    gy: np.ndarray
    dx: np.ndarray
    dy: np.ndarray


@dataclass
class SynthSubject:
    """One synthetic subject: static layers and action geometry, all in frame pixels.

    ``fields`` maps an action name (:data:`AU_LANDMARKS`) to its unit displacement field;
    ``eyes`` hold the blink geometry; ``center`` is the head's rotation centre (x, y);
    ``noise_sigma`` the sensor noise (grey levels).
    """

    index: int
    subject_dir: str
    fold: str
    foreground: np.ndarray  # uint8 (H, W): the lit person premultiplied by the mask
    mask: np.ndarray  # uint8 (H, W): 255 on the person, soft edge
    background: np.ndarray  # uint8 (H, W), static
    landmarks: np.ndarray  # (68, 2) in frame pixels
    fields: dict[str, _Field]
    eyes: list[_Eye]
    center: tuple[float, float]
    noise_sigma: float
    flipped: bool


def _subject_rng(seed: int, subject: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0x5B1E, subject])


def _video_seed(seed: int, subject: int, video: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, 0x7D10, subject, video])


def _ellipse_mask(shape: tuple[int, int], center: tuple[float, float],
                  axes: tuple[float, float]) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (((xx - center[0]) / axes[0]) ** 2 + ((yy - center[1]) / axes[1]) ** 2 <= 1.0).astype(
        np.float32
    )


def _background(rng: np.random.Generator, h: int, w: int, source: np.ndarray) -> np.ndarray:
    """A static background: the photo's own, a gradient wall, a cloudy texture or panels."""
    import cv2

    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)).astype(np.float32)
    level = rng.uniform(50, 200)
    if kind == 0:
        return source
    if kind == 1:
        return level + rng.uniform(30, 90) * ramp
    if kind == 2:
        small = rng.normal(0, 1, (max(4, h // 24), max(4, w // 24))).astype(np.float32)
        cloud = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        cloud = cv2.GaussianBlur(cloud, (0, 0), 6)
        return level + rng.uniform(10, 30) * cloud + rng.uniform(10, 50) * ramp
    panels = np.full((h, w), level, np.float32)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 8, w // 2)), y0 + int(rng.integers(h // 8, h // 2))
        panels[y0:y1, x0:x1] = rng.uniform(30, 220)
    return cv2.GaussianBlur(panels, (0, 0), 1.5) + rng.uniform(10, 40) * ramp


def _rbf_field(h: int, w: int, points: np.ndarray, vectors: np.ndarray,
               sigma: tuple[float, float]) -> _Field:
    """Sum of anisotropic Gaussians ``vectors[i] * exp(-d^2/2s^2)`` around ``points``,
    normalised to a largest displacement of 1, cropped to where it exceeds 0.5 %."""
    sx, sy = sigma
    pad_x, pad_y = 3.5 * sx, 3.5 * sy
    x0 = int(max(0, math.floor(points[:, 0].min() - pad_x)))
    x1 = int(min(w, math.ceil(points[:, 0].max() + pad_x) + 1))
    y0 = int(max(0, math.floor(points[:, 1].min() - pad_y)))
    y1 = int(min(h, math.ceil(points[:, 1].max() + pad_y) + 1))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx = np.zeros_like(gx)
    dy = np.zeros_like(gx)
    for (px, py), (vx, vy) in zip(points, vectors, strict=True):
        g = np.exp(-0.5 * (((gx - px) / sx) ** 2 + ((gy - py) / sy) ** 2))
        dx += vx * g
        dy += vy * g
    mag = np.hypot(dx, dy)
    peak = float(mag.max())
    dx /= peak
    dy /= peak
    rows = np.where((mag / peak).max(axis=1) > 0.005)[0]
    cols = np.where((mag / peak).max(axis=0) > 0.005)[0]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sl = (slice(r0, r1), slice(c0, c1))
    return _Field(y0=y0 + int(r0), y1=y0 + int(r1), x0=x0 + int(c0), x1=x0 + int(c1),
                  gx=np.ascontiguousarray(gx[sl]), gy=np.ascontiguousarray(gy[sl]),
                  dx=np.ascontiguousarray(dx[sl]), dy=np.ascontiguousarray(dy[sl]))


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def _action_fields(lm: np.ndarray, h: int, w: int) -> dict[str, _Field]:
    """Unit displacement fields of every action from the subject's landmarks (frame pixels)."""
    eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    iod = float(np.linalg.norm(eye_r - eye_l))  # inter-ocular distance, sets every sigma
    up = np.array([0.0, -1.0])
    # "up" and "sideways" follow the face's own axes (the subject may be tilted).
    across = _unit(eye_r - eye_l)
    face_up = np.array([across[1], -across[0]])
    if np.dot(face_up, up) < 0:
        face_up = -face_up
    mid_eyes = (eye_l + eye_r) / 2
    mouth_c = lm[48:68].mean(axis=0)

    def toward_mid(ids: Sequence[int], origin: np.ndarray) -> np.ndarray:
        return _unit(origin - lm[list(ids)])

    fields: dict[str, _Field] = {}
    s = 0.22 * iod
    # AU 1+2: both brows move up.
    ids = list(range(17, 27))
    fields["brow_raise"] = _rbf_field(h, w, lm[ids], np.tile(face_up, (len(ids), 1)), (s, s))
    # AU 4: inner brows down and together.
    ids = [18, 19, 20, 21, 22, 23, 24, 25]
    inward = toward_mid(ids, mid_eyes)
    inward_x = np.outer(inward @ across, across)
    vec = _unit(-face_up * 1.0 + 0.6 * _unit(inward_x))
    weight = np.array([0.5, 0.8, 1.0, 1.0, 1.0, 1.0, 0.8, 0.5])[:, None]
    fields["brow_lower"] = _rbf_field(h, w, lm[ids], vec * weight, (s, s))
    # AU 12: lip corners out and up.
    ids = [48, 54, 49, 53, 59, 55]
    out = _unit(np.outer((lm[ids] - mouth_c) @ across, across))
    vec = _unit(0.75 * out + 0.65 * face_up) * np.array([1, 1, 0.5, 0.5, 0.5, 0.5])[:, None]
    fields["lip_corner_pull"] = _rbf_field(h, w, lm[ids], vec, (0.8 * s, 0.8 * s))
    # AU 9: nose wings and upper lip up, the nose ridge skin slightly.
    ids = [31, 32, 33, 34, 35, 29, 50, 51, 52]
    weight = np.array([1, 0.8, 0.7, 0.8, 1, 0.4, 0.5, 0.5, 0.5])[:, None]
    fields["nose_wrinkle"] = _rbf_field(
        h, w, lm[ids], np.tile(face_up, (len(ids), 1)) * weight, (0.7 * s, 0.7 * s)
    )
    # AU 24: upper lip down, lower lip up (lips pressed).
    upper, lower = [49, 50, 51, 52, 53], [55, 56, 57, 58, 59]
    vec = np.vstack([np.tile(-face_up, (5, 1)), np.tile(face_up, (5, 1))])
    fields["lip_press"] = _rbf_field(h, w, lm[upper + lower], vec, (0.6 * s, 0.45 * s))
    # AU 7: lower lids up, upper lids slightly down.
    low, top = [40, 41, 46, 47], [37, 38, 43, 44]
    vec = np.vstack([np.tile(face_up, (4, 1)), np.tile(-face_up * 0.35, (4, 1))])
    fields["eye_squint"] = _rbf_field(h, w, lm[low + top], vec, (0.5 * s, 0.4 * s))
    return fields


@dataclass
class _Eye:
    """One eye's blink geometry on a region (rows y0:y1, cols x0:x1): per column, the lid
    crease ``yc``, the upper-lid margin ``yu`` and the eye opening ``open`` (px)."""

    y0: int
    y1: int
    x0: int
    x1: int
    gx: np.ndarray
    gy: np.ndarray
    yc: np.ndarray
    yu: np.ndarray
    open: np.ndarray

    def blink_map(self, closure: float) -> np.ndarray:
        """Backward map (rows) of the eye closed by ``closure`` (0 open .. 1 shut): the lid
        skin between crease and margin stretches down over the eye, which it occludes."""
        margin = self.yu + closure * self.open
        lid = (self.gy >= self.yc) & (self.gy <= margin)
        squeeze = (self.yu - self.yc) / np.maximum(margin - self.yc, 1e-6)
        return np.where(lid, self.yc + (self.gy - self.yc) * squeeze, self.gy).astype(np.float32)


def _eyes(lm: np.ndarray, h: int, w: int) -> list[_Eye]:
    """Blink geometry of both eyes from the 68 landmarks (frame pixels)."""
    eyes = []
    for ids in ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)):
        p = lm[list(ids)]
        upper = p[[0, 1, 2, 3]]
        lower = p[[0, 5, 4, 3]]
        upper = upper[np.argsort(upper[:, 0])]
        lower = lower[np.argsort(lower[:, 0])]
        eye_w = float(np.ptp(p[:, 0]))
        x0 = int(max(0, math.floor(p[:, 0].min()) - 2))
        x1 = int(min(w, math.ceil(p[:, 0].max()) + 3))
        crease = float(upper[:, 1].min()) - 0.3 * eye_w
        y0 = int(max(0, math.floor(crease) - 2))
        y1 = int(min(h, math.ceil(lower[:, 1].max()) + 3))
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        xs = np.arange(x0, x1, dtype=np.float64)
        yu = np.interp(xs, upper[:, 0], upper[:, 1])
        yl = np.interp(xs, lower[:, 0], lower[:, 1])
        inside = (xs > p[:, 0].min()) & (xs < p[:, 0].max())
        opening = np.where(inside, np.maximum(yl - yu, 0.0), 0.0)
        eyes.append(_Eye(y0=y0, y1=y1, x0=x0, x1=x1, gx=gx, gy=gy,
                         yc=np.full((1, x1 - x0), crease, np.float32),
                         yu=yu[None, :].astype(np.float32),
                         open=opening[None, :].astype(np.float32)))
    return eyes


def build_subject(spec: SynthSpec, index: int, source: SourceFace) -> SynthSubject:
    """Subject ``index`` (1-based) of ``spec``, rendered from ``source``: its static layers
    (frame size ``spec.width`` x ``spec.height``), landmarks and action fields.

    Depends only on (spec.seed, index, spec.width, spec.height, spec.noise, spec.layout).
    """
    import cv2

    rng = _subject_rng(spec.seed, index)
    h, w = spec.height, spec.width
    subject_dir, fold = subject_names(spec.layout, index)
    src = source.image.astype(np.float32)
    lm = source.landmarks
    lm_w = float(np.ptp(lm[:, 0]))
    lm_h = float(np.ptp(lm[:, 1]))
    lm_c = np.array([lm[:, 0].min() + lm_w / 2, lm[:, 1].min() + lm_h / 2])

    # Geometry: face (forehead to chin ~ 1.3 x the landmark box) 40-52 % of the frame height.
    face_h = rng.uniform(0.40, 0.52) * h
    scale = face_h / (1.3 * lm_h)
    flipped = bool(rng.random() < 0.5)
    tilt = math.radians(rng.uniform(-4.0, 4.0))
    target = np.array([w / 2 + rng.uniform(-0.06, 0.06) * w,
                       h / 2 + rng.uniform(-0.03, 0.05) * h])
    fx = -1.0 if flipped else 1.0
    rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
    lin = scale * rot @ np.diag([fx, 1.0])
    affine = np.hstack([lin, (target - lin @ lm_c)[:, None]]).astype(np.float64)

    # The person: head ellipse plus shoulders, soft edged.
    mask_src = np.maximum(
        _ellipse_mask(src.shape, (lm_c[0], lm_c[1] - 0.3 * lm_h), (0.85 * lm_w, 1.0 * lm_h)),
        _ellipse_mask(src.shape, (lm_c[0], lm[:, 1].max() + 2.5 * lm_h),
                      (2.4 * lm_w, 2.5 * lm_h)),
    )
    mask_src = cv2.GaussianBlur(mask_src, (0, 0), 0.06 * lm_h)
    face = cv2.warpAffine(src, affine, (w, h), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT101)
    mask = cv2.warpAffine(mask_src, affine, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    landmarks = (lm @ affine[:, :2].T) + affine[:, 2]

    # Lighting: gamma, gain, offset and a side light across the face.
    gamma = rng.uniform(0.8, 1.25)
    gain = rng.uniform(0.75, 1.15)
    offset = rng.uniform(-12, 12)
    side = rng.uniform(-0.3, 0.3)
    xx = np.arange(w, dtype=np.float32)[None, :]
    side_light = 1.0 + side * np.clip((xx - target[0]) / (scale * lm_w), -1.5, 1.5)
    face = 255.0 * (np.clip(face, 0, 255) / 255.0) ** gamma * gain * side_light + offset
    face = np.clip(face, 0, 255).astype(np.float32)
    background = np.clip(_background(rng, h, w, face), 0, 255)
    foreground = np.clip(np.rint(face * mask), 0, 255).astype(np.uint8)
    mask8 = np.clip(np.rint(mask * 255), 0, 255).astype(np.uint8)

    fields = _action_fields(landmarks, h, w)
    noise_sigma = float(rng.uniform(1.0, 2.5) * spec.noise)
    return SynthSubject(
        index=index, subject_dir=subject_dir, fold=fold, foreground=foreground, mask=mask8,
        background=np.rint(background).astype(np.uint8), landmarks=landmarks, fields=fields,
        eyes=_eyes(landmarks, h, w), center=(float(target[0]), float(target[1])),
        noise_sigma=noise_sigma, flipped=flipped,
    )


# ---------------------------------------------------------------------------------------------
# Timelines: events and distractors of one video
# ---------------------------------------------------------------------------------------------


@dataclass
class _Event:
    type: str  # micro | macro
    action: str
    emotion: str | None
    emotion_raw: str
    amplitude: float
    onset: int  # positions (0-based)
    apex: int
    offset: int


@dataclass
class _Timeline:
    n: int
    events: list[_Event]
    blinks: list[tuple[int, int]]
    jerks: list[tuple[int, int, float]]
    amps: dict[str, np.ndarray]  # action -> amplitude (px) per position
    tx: np.ndarray
    ty: np.ndarray
    theta: np.ndarray  # radians
    gain: np.ndarray


def _raised_cosine(n_up: int) -> np.ndarray:
    """n_up + 1 samples from 0 to 1 along a raised cosine."""
    if n_up <= 0:
        return np.ones(1)
    return 0.5 * (1 - np.cos(np.pi * np.arange(n_up + 1) / n_up))


def _schedule(rng: np.random.Generator, spec: SynthSpec, n: int) -> list[_Event]:
    """Place the MEs and macro-expressions of one video (positions), >= 1 s apart."""
    fps = float(spec.fps or 0)
    gap = max(2, int(math.ceil(fps)))
    margin = max(1, int(math.ceil(0.5 * fps)))
    n_me, n_macro = spec.mes_per_video, spec.macros_per_video
    emotions = list(ME_ACTIONS)
    start = int(rng.integers(len(emotions)))
    me_emotions = [emotions[(start + i) % len(emotions)] for i in range(n_me)]
    me_lengths = [max(3, int(round(rng.uniform(0.2, 0.5) * fps))) for _ in range(n_me)]
    macro_lengths = [max(4, int(round(rng.uniform(0.5, 4.0) * fps))) for _ in range(n_macro)]

    def needed(lengths: list[int]) -> int:
        return 2 * margin + sum(lengths) + gap * max(0, len(lengths) - 1)

    dropped_macro = dropped_me = 0
    min_macro = max(4, int(round(0.5 * fps)))
    while macro_lengths and needed(me_lengths + macro_lengths) > n:
        # Shorten the longest macro-expression first (not below 0.5 s), then drop one.
        j = int(np.argmax(macro_lengths))
        excess = needed(me_lengths + macro_lengths) - n
        if macro_lengths[j] > min_macro:
            macro_lengths[j] = max(min_macro, macro_lengths[j] - excess)
            continue
        macro_lengths.pop()
        dropped_macro += 1
    while me_lengths and needed(me_lengths) > n:
        me_lengths.pop()
        me_emotions.pop()
        dropped_me += 1
    if dropped_me or dropped_macro:
        log.warning("a %.1f s video holds only %d ME(s) and %d macro-expression(s) "
                    "(asked %d and %d): each needs its length plus 1 s of separation",
                    n / fps, len(me_lengths), len(macro_lengths), n_me, n_macro)

    kinds: list[tuple[str, int, str | None]] = [("micro", ln, e)
                                                for ln, e in zip(me_lengths, me_emotions,
                                                                 strict=True)]
    kinds += [("macro", ln, None) for ln in macro_lengths]
    order = rng.permutation(len(kinds))
    kinds = [kinds[i] for i in order]
    slack = n - needed([k[1] for k in kinds])
    parts = rng.dirichlet(np.ones(len(kinds) + 1)) * slack if kinds else np.zeros(1)
    extra = np.floor(parts).astype(int)

    raw_table = spec.rendering.raw_emotions
    events: list[_Event] = []
    pos = margin
    actions_all = [a for a in _ACTION_AU]
    for i, (kind, length, emotion) in enumerate(kinds):
        pos += int(extra[i]) + (gap if i else 0)
        onset, offset = pos, pos + length - 1
        if kind == "micro":
            assert emotion is not None
            action = str(rng.choice(ME_ACTIONS[emotion]))
            words, probs = raw_table[emotion]
            raw = str(rng.choice(words, p=probs))
            amplitude = float(rng.uniform(1.3, 2.4))
            apex = onset + int(round(rng.uniform(0.35, 0.6) * (length - 1)))
        else:
            action = str(rng.choice(actions_all))
            raw = ""
            amplitude = float(rng.uniform(3.5, 8.0))
            apex = onset + int(round(rng.uniform(0.15, 0.35) * (length - 1)))
        apex = min(max(apex, onset + 1), offset - 1)
        events.append(_Event(type=kind, action=action, emotion=emotion, emotion_raw=raw,
                             amplitude=amplitude, onset=onset, apex=apex, offset=offset))
        pos = offset + 1
    return events


def _profile(ev: _Event) -> np.ndarray:
    """Amplitude (px) at positions ev.onset..ev.offset: 0 at both ends, ``amplitude`` at the
    apex. MEs rise and fall along raised cosines; macro-expressions hold a plateau after the
    apex and fall over the last 15-30 % of their length."""
    rise = _raised_cosine(ev.apex - ev.onset)
    if ev.type == "micro":
        fall = _raised_cosine(ev.offset - ev.apex)[::-1]
        shape = np.concatenate([rise, fall[1:]])
    else:
        length = ev.offset - ev.onset + 1
        fall_len = max(1, int(round(0.22 * length)))
        fall_len = min(fall_len, ev.offset - ev.apex)
        hold = ev.offset - ev.apex - fall_len
        fall = _raised_cosine(fall_len)[::-1]
        shape = np.concatenate([rise, np.ones(hold), fall[1:]])
    return ev.amplitude * shape


def _busy(n: int, events: Sequence[_Event], pad: int) -> np.ndarray:
    """Positions within ``pad`` of an ME (where blinks and jerks are not placed)."""
    busy = np.zeros(n, bool)
    for ev in events:
        if ev.type == "micro":
            busy[max(0, ev.onset - pad): min(n, ev.offset + pad + 1)] = True
    return busy


def _place_free(rng: np.random.Generator, busy: np.ndarray, length: int,
                start_min: int) -> int | None:
    """A random start whose ``length`` positions are all free; marks them busy."""
    n = len(busy)
    for _ in range(50):
        if n - length <= start_min:
            return None
        s = int(rng.integers(start_min, n - length))
        if not busy[s: s + length].any():
            busy[s: s + length] = True
            return s
    return None


def _timeline(spec: SynthSpec, subject: SynthSubject, video: int) -> _Timeline:
    """Everything that happens in one video, drawn from the (seed, subject, video) stream."""
    fps = float(spec.fps or 0)
    n = spec.frames_per_video
    rng = np.random.default_rng(_video_seed(spec.seed, subject.index, video).spawn(1)[0])
    events = _schedule(rng, spec, n)
    amps = {name: np.zeros(n, np.float32) for name in [*subject.fields, "blink"]}
    for ev in events:
        amps[ev.action][ev.onset: ev.offset + 1] += _profile(ev).astype(np.float32)

    pad = max(1, int(round(0.25 * fps)))
    lead = int(round(0.5 * fps))
    busy = _busy(n, events, pad)
    # Blinks: 0.1-0.3 s, the lids close quickly and open more slowly.
    blinks: list[tuple[int, int]] = []
    n_blinks = int(rng.poisson(spec.blinks_per_minute * n / fps / 60.0))
    for _ in range(n_blinks):
        length = max(3, int(round(rng.uniform(0.1, 0.3) * fps)))
        s = _place_free(rng, busy, length, lead)
        if s is None:
            continue
        close = max(1, int(round(0.4 * (length - 1))))
        shape = np.concatenate([_raised_cosine(close),
                                _raised_cosine(length - 1 - close)[::-1][1:]])
        # amplitude of a blink = how far the lids close (1 = shut)
        amps["blink"][s: s + length] = (rng.uniform(0.85, 1.0) * shape).astype(np.float32)
        blinks.append((s, s + length - 1))

    # Head pose: slow drift (sum of low-frequency sinusoids) plus a few quick jerks.
    t = np.arange(n) / fps
    motion = spec.head_motion
    tx = np.zeros(n)
    ty = np.zeros(n)
    theta = np.zeros(n)
    for arr, amp_px in ((tx, 1.6), (ty, 1.0), (theta, math.radians(0.35))):
        for _ in range(3):
            f = rng.uniform(0.01, 0.08)
            arr += motion * rng.uniform(0.3, 1.0) * amp_px * np.sin(
                2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    jerks: list[tuple[int, int, float]] = []
    n_jerks = int(rng.poisson(n / fps / 7.0)) if motion > 0 else 0
    state = np.zeros(3)
    steps = []
    for _ in range(n_jerks):
        length = max(2, int(round(rng.uniform(0.06, 0.15) * fps)))
        s = _place_free(rng, busy, length, lead)
        if s is None:
            continue
        delta = np.array([rng.normal(0, 2.0), rng.normal(0, 1.2),
                          math.radians(rng.normal(0, 0.4))]) * motion
        steps.append((s, length, delta))
    for s, length, delta in sorted(steps, key=lambda x: x[0]):
        delta = delta - 0.5 * state  # mean-reverting, so the head does not wander off
        state = state + delta
        ramp = np.concatenate([_raised_cosine(length - 1), np.ones(n - s - length)])
        tx[s:] += delta[0] * ramp
        ty[s:] += delta[1] * ramp
        theta[s:] += delta[2] * ramp
        jerks.append((s, s + length - 1, float(np.hypot(delta[0], delta[1]))))
    gain = 1.0 + 0.015 * np.sin(2 * np.pi * rng.uniform(0.03, 0.2) * t + rng.uniform(0, 6.3))
    return _Timeline(n=n, events=events, blinks=sorted(blinks), jerks=sorted(jerks), amps=amps,
                     tx=tx, ty=ty, theta=theta, gain=gain)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _render_frames(spec: SynthSpec, subject: SynthSubject, tl: _Timeline,
                   noise_rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield the video's frames (uint8, H x W) one at a time.

    Everything stays single-channel uint8 (OpenCV's fast paths): the face moves (action warps
    on small regions, then the head pose) over a static background, composited with the
    warped mask; brightness gain and sensor noise come last.
    """
    import cv2

    h, w = spec.height, spec.width
    fg0, mask0, bg = subject.foreground, subject.mask, subject.background
    cx, cy = subject.center
    active_names = [a for a, v in tl.amps.items() if np.any(v)]
    still = spec.head_motion == 0
    # Sum of two uniform bytes: mean 255, standard deviation 104.5; close enough to Gaussian
    # for sensor noise and several times cheaper to draw.
    noise_k = subject.noise_sigma / 104.5
    for i in range(tl.n):
        check_interrupt("synthesis")
        fg = fg0
        for name in active_names:
            a = float(tl.amps[name][i])
            if a == 0.0:
                continue
            if fg is fg0:
                fg = fg0.copy()
            if name == "blink":
                for eye in subject.eyes:
                    fg[eye.y0:eye.y1, eye.x0:eye.x1] = cv2.remap(
                        fg, eye.gx, eye.blink_map(a), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT101)
                continue
            f = subject.fields[name]
            # The mask is 255 wherever an action acts, so only the face layer is remapped.
            fg[f.y0:f.y1, f.x0:f.x1] = cv2.remap(
                fg, f.gx - a * f.dx, f.gy - a * f.dy, cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT101)
        if still:
            fgw, mw = fg, mask0
        else:
            c, s = math.cos(tl.theta[i]), math.sin(tl.theta[i])
            m = np.array([[c, -s, cx - c * cx + s * cy + tl.tx[i]],
                          [s, c, cy - s * cx - c * cy + tl.ty[i]]])
            fgw = cv2.warpAffine(fg, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT101)
            mw = cv2.warpAffine(mask0, m, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101)
        frame = cv2.add(fgw, cv2.multiply(bg, cv2.bitwise_not(mw), scale=1.0 / 255.0))
        gain = float(tl.gain[i])
        if noise_k > 0:
            u = np.frombuffer(noise_rng.bytes(2 * h * w), np.uint8).reshape(2, h, w)
            noise = cv2.add(u[0], u[1], dtype=cv2.CV_16S)
            yield cv2.addWeighted(frame, gain, noise, noise_k, -255.0 * noise_k,
                                  dtype=cv2.CV_8U)
        else:
            yield cv2.convertScaleAbs(frame, alpha=gain)


def _temp_sibling(target: Path) -> Path:
    return target.with_name(f"{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


@dataclass
class _VideoJob:
    spec: SynthSpec
    subject: int
    video: int
    out_dir: Path
    source: SourceFace
    single_thread: bool = False


@dataclass
class _VideoOutput:
    subject: int
    subject_dir: str
    fold: str
    video: str
    video_index: int
    n_frames: int
    events: list[dict[str, Any]] = field(default_factory=list)
    distractors: list[dict[str, Any]] = field(default_factory=list)


def _event_rows(spec: SynthSpec, subject: SynthSubject, video: str, tl: _Timeline,
                first: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = []
    for k, ev in enumerate(sorted(tl.events, key=lambda e: e.onset), start=1):
        events.append(dict(
            subject=subject.fold, subject_dir=subject.subject_dir, video=video, event=k,
            onset=ev.onset + first, apex=ev.apex + first, offset=ev.offset + first,
            type=ev.type, emotion_raw=ev.emotion_raw, emotion=ev.emotion,
            au=_ACTION_AU[ev.action], action=ev.action,
            objective_class=_ACTION_OBJECTIVE[ev.action], amplitude_px=round(ev.amplitude, 4),
        ))
    distractors = [dict(subject=subject.fold, subject_dir=subject.subject_dir, video=video,
                        type="blink", onset=s + first, offset=e + first,
                        size=round(float(tl.amps["blink"][s:e + 1].max()), 3))
                   for s, e in tl.blinks]
    distractors += [dict(subject=subject.fold, subject_dir=subject.subject_dir, video=video,
                         type="jerk", onset=s + first, offset=e + first, size=round(size, 3))
                    for s, e, size in tl.jerks]
    return events, distractors


def _render_video_job(job: _VideoJob, on_frame: Callable[[], None] | None = None
                      ) -> _VideoOutput:
    """Render one video's jpgs into a temporary folder, then rename it into place."""
    import cv2

    if job.single_thread:
        cv2.setNumThreads(1)
    spec = job.spec
    subject = build_subject(spec, job.subject, job.source)
    video = video_name(spec.layout, subject.subject_dir, job.video)
    tl = _timeline(spec, subject, job.video)
    noise_rng = np.random.default_rng(_video_seed(spec.seed, job.subject, job.video).spawn(2)[1])
    final = job.out_dir / video_relpath(spec.layout, subject.subject_dir, video)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    frame_dir = tmp / spec.rendering.frame_subfolder if spec.rendering.frame_subfolder else tmp
    frame_dir.mkdir(parents=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)]
    first = spec.first_frame
    try:
        for i, frame in enumerate(_render_frames(spec, subject, tl, noise_rng)):
            name = Path(frame_relpath(spec.layout, subject.subject_dir, video, i + first)).name
            ok, buf = cv2.imencode(".jpg", frame, params)
            if not ok:  # pragma: no cover - encoder failure
                raise SynthError(f"cannot encode frame {i + first} of {final}")
            (frame_dir / name).write_bytes(buf.tobytes())
            if on_frame is not None:
                on_frame()
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    events, distractors = _event_rows(spec, subject, video, tl, first)
    return _VideoOutput(subject=job.subject, subject_dir=subject.subject_dir, fold=subject.fold,
                        video=video, video_index=job.video, n_frames=tl.n, events=events,
                        distractors=distractors)


# ---------------------------------------------------------------------------------------------
# Spreadsheets
# ---------------------------------------------------------------------------------------------


def xlsx_bytes(wb: Any) -> bytes:
    """Save an openpyxl workbook with fixed timestamps (byte-identical for identical content)."""
    wb.properties.creator = "vrme synth"
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                              lambda m: m.group(1) + _FIXED_XLSX_TIME + m.group(3), text)
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(item.filename, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = item.external_attr
            zout.writestr(info, data)
    return out.getvalue()


def ground_truth_table(events: pd.DataFrame) -> pd.DataFrame:
    """STRS ground truth from an events table: MEs only, columns subject (fold id), video,
    onset, offset (original numbering, inclusive), emotion (mapped class)."""
    micro = events[events["type"] == "micro"]
    return micro[GROUND_TRUTH_COLUMNS].reset_index(drop=True)


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise SynthError(f"output {out_dir} exists and is not a folder")
    if any(out_dir.iterdir()):
        if not overwrite:
            raise SynthError(f"output folder {out_dir} is not empty; choose an empty or new "
                             "folder (or pass overwrite)")
        written = [n for lay in layouts.all_layouts() if lay.rendering is not None
                   for n in lay.rendering.outputs]
        for name in written + ["ground_truth.csv", "synth_events.csv",
                               "synth_distractors.csv", "synth_spec.json"]:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def generate_dataset(spec: SynthSpec, out_dir: str | os.PathLike[str], progress: bool = True,
                     overwrite: bool = False, source: SourceFace | None = None) -> SynthResult:
    """Render a whole synthetic dataset into ``out_dir`` in ``spec.layout``.

    Frames are written as they are rendered (one video at a time per worker, never held in
    memory), each video into a temporary folder renamed into place when complete; the
    spreadsheets, ``ground_truth.csv`` and ``synth_events.csv`` follow, and ``synth_spec.json``
    last. ``out_dir`` must be empty or absent unless ``overwrite`` (which replaces a previous
    synthetic dataset's files). ``source`` = the photo and landmarks to render from (default
    :func:`astronaut_face`; pass one to save loading dlib's model again). Returns a
    :class:`SynthResult` (frame numbers in original numbering).
    """
    import pandas as pd

    from vrme.io import write_json_atomic, write_text_atomic

    t0 = time.perf_counter()
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    source = source or astronaut_face()
    jobs = [_VideoJob(spec=spec, subject=s, video=v, out_dir=out, source=source)
            for s in range(1, spec.subjects + 1) for v in range(1, spec.videos + 1)]
    if spec.workers is None:
        cost = len(jobs) * spec.frames_per_video * spec.width * spec.height / (640 * 480)
        workers = 1 if cost < _SERIAL_FRAME_BUDGET else (os.cpu_count() or 1)
    else:
        workers = spec.workers
    workers = max(1, min(workers, len(jobs)))
    total = len(jobs) * spec.frames_per_video
    outputs: list[_VideoOutput] = []

    with ProgressBar(progress, f"synth {spec.layout}", total, unit="frames") as bar:
        advance = bar.advance
        if workers == 1:
            for job in jobs:
                outputs.append(_render_video_job(job, on_frame=lambda: advance(1)))
        else:
            for job in jobs:
                job.single_thread = True
            with ProcessPoolExecutor(max_workers=workers,
                                     mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_render_video_job, job) for job in jobs]
                for fut in as_completed(futures):
                    res = fut.result()
                    outputs.append(res)
                    advance(res.n_frames)
    outputs.sort(key=lambda o: (o.subject, o.video_index))

    events = pd.DataFrame([e for o in outputs for e in o.events], columns=EVENT_COLUMNS)
    distractors = pd.DataFrame([d for o in outputs for d in o.distractors],
                               columns=DISTRACTOR_COLUMNS)
    videos = pd.DataFrame([dict(subject=o.fold, subject_dir=o.subject_dir, video=o.video,
                                path=video_relpath(spec.layout, o.subject_dir, o.video),
                                n_frames=o.n_frames, first_frame=spec.first_frame)
                           for o in outputs])

    label_files = spec.rendering.write_labels(out, events, spec)
    gt_path = write_text_atomic(out / "ground_truth.csv", _csv_text(ground_truth_table(events)))
    write_text_atomic(out / "synth_events.csv", _csv_text(events))
    write_text_atomic(out / "synth_distractors.csv", _csv_text(distractors))
    elapsed = time.perf_counter() - t0
    summary = summarize(events, videos)
    write_json_atomic(out / "synth_spec.json", {"spec": spec.as_dict(), "summary": summary})
    log.info("synthetic %s dataset: %d videos, %d frames, %d MEs, %d macro-expressions in "
             "%.1f s -> %s", spec.layout, len(videos), int(videos["n_frames"].sum()),
             summary["micro"], summary["macro"], elapsed, out)
    return SynthResult(out_dir=out, spec=spec, events=events, distractors=distractors,
                       videos=videos, label_files=label_files, ground_truth=gt_path,
                       seconds=elapsed)


def summarize(events: pd.DataFrame, videos: pd.DataFrame) -> dict[str, Any]:
    """Counts of a generated dataset: videos, frames, MEs (total and per emotion), macros."""
    micro = events[events["type"] == "micro"]
    return {
        "videos": int(len(videos)),
        "frames": int(videos["n_frames"].sum()) if len(videos) else 0,
        "micro": int(len(micro)),
        "macro": int((events["type"] == "macro").sum()),
        "micro_per_emotion": {str(k): int(v) for k, v in
                              micro["emotion"].value_counts().sort_index().items()},
    }


def render_video_file(spec: SynthSpec, path: str | os.PathLike[str], subject: int = 1,
                      video: int = 1, first_frame: int = 0,
                      source: SourceFace | None = None) -> pd.DataFrame:
    """Write one synthetic video as a plain video file and return its events.

    ``.avi`` is written as Motion-JPEG (readable by every OpenCV build), ``.mp4`` as MPEG-4
    part 2 ('mp4v'); frames are 8-bit grayscale stored as the file format needs. The video is
    the same as video ``video`` of subject ``subject`` (1-based) of ``spec`` (same events, same
    pixels before compression). Returned frame numbers are frame indices in the file counted
    from ``first_frame`` (default 0), onset..offset inclusive; columns :data:`EVENT_COLUMNS`,
    with ``video`` = the file's stem. ``source`` as in :func:`generate_dataset`.
    """
    import cv2
    import pandas as pd

    target = Path(path)
    fourcc = {".avi": "MJPG", ".mp4": "mp4v"}.get(target.suffix.lower())
    if fourcc is None:
        raise SynthError(f"{target}: video files must end in .avi or .mp4")
    if not 1 <= subject <= spec.subjects or not 1 <= video <= spec.videos:
        raise SynthError(f"subject {subject} / video {video} outside the spec "
                         f"({spec.subjects} subjects x {spec.videos} videos)")
    subj = build_subject(spec, subject, source or astronaut_face())
    tl = _timeline(spec, subj, video)
    noise_rng = np.random.default_rng(_video_seed(spec.seed, subject, video).spawn(2)[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
                           f"{target.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(spec.fps or 0),
                             (spec.width, spec.height), isColor=False)
    if not writer.isOpened():
        raise SynthError(f"OpenCV cannot write {target.suffix} files ({fourcc}) here")
    try:
        for frame in _render_frames(spec, subj, tl, noise_rng):
            writer.write(frame)
        writer.release()
        os.replace(tmp, target)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    events, _ = _event_rows(spec, subj, target.stem, tl, first_frame)
    return pd.DataFrame(events, columns=EVENT_COLUMNS)


def spec_from_config(cfg: Config) -> SynthSpec:
    """The :class:`SynthSpec` of a config: its ``synth`` section (defaults when absent) in the
    layout of ``dataset.layout`` ('casme3' -> casme3, 'samm_lv' -> samm-lv, 'casme2' ->
    casme2)."""
    from vrme.config import ConfigError, SynthConfig

    found = layouts.get(cfg.dataset.layout)
    if found.rendering is None:
        can = [lay.name for lay in layouts.all_layouts() if lay.rendering is not None]
        raise ConfigError(f"dataset.layout {cfg.dataset.layout!r} cannot be synthesised "
                          f"({' or '.join(can)} only)")
    layout = found.rendering.name
    sc = cfg.synth or SynthConfig()
    if abs(sc.fps - cfg.dataset.fps) > 1e-9:
        log.warning("synth.fps (%s) differs from dataset.fps (%s)", sc.fps, cfg.dataset.fps)
    return SynthSpec(layout=layout, subjects=sc.subjects, videos=sc.videos, seconds=sc.seconds,
                     fps=sc.fps, width=sc.width, height=sc.height,
                     mes_per_video=sc.mes_per_video, macros_per_video=sc.macros_per_video,
                     seed=sc.seed)
