"""What a synthetic dataset is: :class:`SynthSpec` (layout, size, events, seed), the names of
its subjects, videos and frames in each layout, and the tables it is described by.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrme.data import layouts as layouts
from vrme.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import Config



SynthLayout = str
"""A layout ``vrme synth`` renders: :func:`vrme.data.layouts.synth_names` (casme2, casme3,
samm-lv)."""

log = logging.getLogger(__name__)


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


class SynthError(UserError):
    """A synthetic dataset cannot be generated as asked (bad spec, occupied output folder)."""


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.

    ``seconds`` is the length of every video; ``fps`` (frames/s) defaults to the layout's rate
    (30 for casme3 and casme2, 200 for samm-lv). ``mes_per_video`` / ``macros_per_video`` are
    targets: events that do not fit a short video (each needs its own length plus 1 s of separation)
    are left out with a warning. ``head_motion`` and ``noise`` scale head drift/jerks and sensor
    noise (0 switches them off); ``blinks_per_minute`` is the mean blink rate (0 = none).
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
