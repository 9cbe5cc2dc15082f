"""Small face videos for the alignment and feature tests (real JPEG frames on disk).

A deliberately simple, exactly known movement for tests that assert where features respond:
vrme's synthetic generator (:mod:`vrme.synth`) varies pose, lighting and events at random; this
keeps one face still and moves one region. The face is the generator's source photo
(:func:`vrme.synth.face.astronaut_face`, scikit-image's astronaut) at its own scale (dlib finds it
with upsample 0) on a 320 x 240 canvas. A "micro-expression" raises the eyebrows by a smooth
Gaussian warp around landmarks 17-26 with a raised-cosine amplitude profile; the rest of the face
does not move.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WIDTH, HEIGHT = 320, 240


@functools.lru_cache(maxsize=1)
def base_face() -> tuple[np.ndarray, np.ndarray]:
    """(canvas 240 x 320 uint8, its 68 landmarks (x, y))."""
    import dlib

    from vrme.synth.face import astronaut_face, predictor_path

    gray = astronaut_face().image
    canvas = np.ascontiguousarray(gray[20:20 + HEIGHT, 130:130 + WIDTH])
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(str(predictor_path()))
    faces = det(canvas, 0)
    assert len(faces) == 1, "the astronaut face must be detectable"
    shape = pred(canvas, faces[0])
    lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    return canvas, lm


def brow_raise_field(lm: np.ndarray, sigma: float = 9.0) -> np.ndarray:
    """Upward displacement (px, >= 0, max 1) around the eyebrow landmarks 17-26."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    field = np.zeros((HEIGHT, WIDTH))
    for x, y in lm[17:27]:
        field = np.maximum(field, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
    return field


def render(n_frames: int, me: tuple[int, int] | None = None, amplitude: float = 2.5,
           noise: float = 1.5, seed: int = 0, shift: tuple[float, float] = (0.0, 0.0),
           blank: set[int] | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Frames of a face video: static face + sensor noise, an eyebrow raise over frames
    me[0]..me[1] (apex in the middle, ``amplitude`` px), an optional constant head shift
    applied from the first frame on (px), frames in ``blank`` without face (uniform grey)."""
    canvas, lm = base_face()
    field = brow_raise_field(lm)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = []
    amp = np.zeros(n_frames)
    if me is not None:
        on, off = me
        t = np.arange(on, off + 1)
        amp[on:off + 1] = amplitude * 0.5 * (1 - np.cos(2 * np.pi * (t - on) / (off - on)))
    for i in range(n_frames):
        img = canvas
        if amp[i] > 0:
            map_y = (yy + amp[i] * field).astype(np.float32)
            img = cv2.remap(canvas, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if shift != (0.0, 0.0):
            m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            img = cv2.warpAffine(img, m, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
        if blank and i in blank:
            img = np.full_like(canvas, 128)
        noisy = img.astype(np.float32) + rng.normal(0, noise, img.shape).astype(np.float32)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames, {"landmarks": lm, "amplitude": amp}


def write_video(root: Path, subject: str, video: str, frames: list[np.ndarray],
                first: int = 0) -> dict[str, Any]:
    """Write frames as ``root/<subject>/<video>/<n>.jpg`` and return its manifest row."""
    folder = root / subject / video
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{first + i}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return manifest_row(subject, video, f"{subject}/{video}", first, len(frames))


def manifest_row(subject: str, video: str, path: str, first: int, n: int) -> dict[str, Any]:
    """A manifest row (MANIFEST_SCHEMA columns) for frames ``<first>.jpg`` .. under ``path``."""
    return {
        "dataset": "test",
        "subject": subject,
        "subject_dir": subject,
        "video": video,
        "source": "frames",
        "path": path,
        "name_prefix": "",
        "name_suffix": ".jpg",
        "pad_width": 0,
        "frame_files": None,
        "first_frame": first,
        "last_frame": first + n - 1,
        "n_frames": n,
        "n_files": n,
        "missing_frames": [],
        "frame_numbering": "contiguous",
        "fps": 30.0,
        "width": WIDTH,
        "height": HEIGHT,
        "labelled": False,
    }
