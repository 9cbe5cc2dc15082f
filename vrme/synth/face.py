"""Synthetic subjects: the astronaut face with its 68 dlib landmarks, one subject's own scale,
pose, lighting and background, and the action-unit displacement fields (Gaussian radial basis
functions around the AU's landmarks, largest displacement 1 px).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrme.data import layouts as layouts
from vrme.synth.spec import SynthError, SynthSpec, subject_names

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


def predictor_path() -> Path:
    """Path of dlib's 68-landmark model: :func:`vrme.features.align.predictor_file` with the
    default ``align.predictor: auto`` (the file shipped in face-recognition-models)."""
    from vrme.config import AlignConfig
    from vrme.features.align import predictor_file

    return predictor_file(AlignConfig())


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
