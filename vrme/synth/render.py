"""Rendering frames: warps, pose, gain and sensor noise applied frame by frame, and one video's
jpgs written into its folder of the layout (atomically, as a whole folder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vrme.data import layouts as layouts
from vrme.interrupt import check as check_interrupt
from vrme.io import atomic_folder
from vrme.synth.face import SourceFace, SynthSubject, _video_seed, build_subject
from vrme.synth.schedule import _event_rows, _Timeline, _timeline
from vrme.synth.spec import SynthError, SynthSpec, frame_relpath, video_name, video_relpath


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
    params = [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)]
    first = spec.first_frame
    with atomic_folder(final) as tmp:
        frame_dir = tmp / spec.rendering.frame_subfolder if spec.rendering.frame_subfolder else tmp
        frame_dir.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(_render_frames(spec, subject, tl, noise_rng)):
            name = Path(frame_relpath(spec.layout, subject.subject_dir, video, i + first)).name
            ok, buf = cv2.imencode(".jpg", frame, params)
            if not ok:  # pragma: no cover - encoder failure
                raise SynthError(f"cannot encode frame {i + first} of {final}")
            (frame_dir / name).write_bytes(buf.tobytes())
            if on_frame is not None:
                on_frame()
    events, distractors = _event_rows(spec, subject, video, tl, first)
    return _VideoOutput(subject=job.subject, subject_dir=subject.subject_dir, fold=subject.fold,
                        video=video, video_index=job.video, n_frames=tl.n, events=events,
                        distractors=distractors)
