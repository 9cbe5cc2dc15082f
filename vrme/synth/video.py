"""One synthetic video as a plain video file (.avi Motion-JPEG or .mp4 MPEG-4 part 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vrme.data import layouts as layouts
from vrme.io import atomic_path
from vrme.synth.face import SourceFace, _video_seed, astronaut_face, build_subject
from vrme.synth.render import _render_frames
from vrme.synth.schedule import _event_rows, _timeline
from vrme.synth.spec import EVENT_COLUMNS, SynthError, SynthSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd



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
    with atomic_path(target, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc),
                                 float(spec.fps or 0), (spec.width, spec.height), isColor=False)
        if not writer.isOpened():
            raise SynthError(f"OpenCV cannot write {target.suffix} files ({fourcc}) here")
        try:
            for frame in _render_frames(spec, subj, tl, noise_rng):
                writer.write(frame)
        finally:
            writer.release()
    events, _ = _event_rows(spec, subj, target.stem, tl, first_frame)
    return pd.DataFrame(events, columns=EVENT_COLUMNS)
