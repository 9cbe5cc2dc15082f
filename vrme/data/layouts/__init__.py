"""Dataset layouts: how a dataset sits on disk and how vrme reads it, one module per layout.

A :class:`Layout` declares everything layout-specific: its name (the config's
``dataset.layout``), the folder that marks its root, its default label files, emotion map,
frame rate and frame skip, how to scan a root into videos (and so the identity rule between a
label row and a folder), how to read its labels into the common event table
(:data:`vrme.data.labels.EVENT_COLUMNS`), the frame-name prefix of its videos, and how the synthetic
generator renders it (:class:`Rendering`). Everything else (frame listing, gaps, the strict
cell rules, validation of events against the videos, the manifest) is shared.

Every module of this package is imported the first time the registry is asked (:func:`get`,
:func:`names`, ...) and registers its layouts with :func:`register`. **Adding a layout is one
module here plus one config** (``configs/<name>.yaml`` with ``dataset.layout: <name>``): the
config check, ``vrme ingest``/``run``, ``vrme synth --layout`` and the checks before a run all
read the registry. The functions of a layout take a dataset section
(:class:`vrme.config.DatasetConfig`), never the whole config, so several datasets can be read
side by side.

Module top levels here import only the standard library: the config imports this package, and
pandas, OpenCV and openpyxl are imported where they are used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import DatasetConfig
    from vrme.data.labels import Issue
    from vrme.synth.spec import SynthSpec


@dataclass
class VideoEntry:
    """A video found on disk, before it becomes a manifest row."""

    subject: str
    subject_dir: str
    video: str
    folder: Path | None = None  # frame folder
    file: Path | None = None  # video file


Scan = Callable[[Path], "tuple[list[VideoEntry], list[Issue]]"]
"""A layout's scan: dataset root -> (videos found, issues such as folders left out). An issue of
kind ``video`` whose ``subject`` and ``video`` are the (subject folder, video) key a label row
would give a folder left out tells that row why its video is not used."""

ReadLabels = Callable[[Sequence[Path], "DatasetConfig"], "tuple[pd.DataFrame, list[Issue]]"]
"""A layout's label reader: (its label files, the dataset section) -> (events with
:data:`vrme.data.labels.EVENT_COLUMNS`, issues). ``subject_dir`` and ``video`` of an event are the
keys :attr:`Layout.scan` gives its video (the identity rule)."""


@dataclass(frozen=True)
class Rendering:
    """How ``vrme synth`` writes a layout (:mod:`vrme.synth.render` renders the frames).

    ``subject_names(i)`` gives (subject folder, fold id) of 1-based subject ``i``;
    ``video_name(subject_dir, j)`` the manifest video name of its 1-based video ``j``;
    ``video_folder(subject_dir, video)`` the video's folder relative to the root (frames go in
    its ``frame_subfolder``, if any); ``frame_name(video, n)`` the file name of frame ``n``
    (original numbering, from ``first_frame``). ``raw_emotions`` maps each class to the raw
    emotion words the dataset writes and their drawing probabilities. ``write_labels(out,
    events, spec)`` writes the label files in the dataset's real format (``events``: every ME
    and macro-expression, :data:`vrme.synth.spec.EVENT_COLUMNS`) and returns their paths;
    ``outputs`` are the top-level names it writes (removed before an ``--overwrite``).
    """

    name: str
    fps: float
    first_frame: int
    raw_emotions: Mapping[str, tuple[tuple[str, ...], tuple[float, ...]]]
    subject_names: Callable[[int], tuple[str, str]]
    video_name: Callable[[str, int], str]
    video_folder: Callable[[str, str], str]
    frame_name: Callable[[str, int], str]
    write_labels: Callable[[Path, "pd.DataFrame", "SynthSpec"], list[Path]]
    outputs: tuple[str, ...]
    frame_subfolder: str = ""
    labels_macros: bool = True
    max_subjects: int | None = None
    max_videos: int | None = None

    def frame_relpath(self, subject_dir: str, video: str, number: int) -> str:
        """Path of frame ``number`` relative to the dataset root."""
        sub = f"{self.frame_subfolder}/" if self.frame_subfolder else ""
        return f"{self.video_folder(subject_dir, video)}/{sub}{self.frame_name(video, number)}"


@dataclass(frozen=True)
class Layout:
    """One dataset layout (see the module docstring).

    ``label_roles`` names each label file in order ("the release", "the FACS-codes"): a config
    with fewer ``dataset.label_files`` is refused before anything runs. ``frame_prefix(video)``
    is the text before the frame number in the video's frame names (None: the files decide,
    for unlabelled folders). ``label_folder(subject_dir, video)`` shows where the video of a
    label row is looked for, in messages.
    """

    name: str
    title: str
    scan: Scan
    read_labels: ReadLabels | None = None
    label_files: tuple[str, ...] = ()
    label_roles: tuple[str, ...] = ()
    emotion_map: Mapping[str, str] = field(default_factory=dict)
    fps: float | None = None
    frame_skip: int | None = None
    root_folder: str | None = None
    frame_prefix: Callable[[str], str] | None = None
    label_folder: Callable[[str, str], str] | None = None
    rendering: Rendering | None = None

    @property
    def labelled(self) -> bool:
        """True if the layout has label files (only labelled videos are used, as the
        reference does)."""
        return self.read_labels is not None

    def check(self, ds: DatasetConfig, root: Path) -> list[Path]:
        """Check, cheaply and before anything runs, that ``root`` has this layout's folder
        and label files; return the label files' paths. Raises :class:`DataError` (no such
        folder, too few label files) or :class:`LabelError` (a label file missing)."""
        from vrme.errors import DataError, LabelError

        if self.root_folder and not (root / self.root_folder).is_dir():
            raise DataError(f"{root}: not a {self.title} root (no {self.root_folder}/ folder)")
        paths = [root / f for f in (ds.label_files or [])]
        if self.labelled and len(paths) < len(self.label_roles):
            roles = " and ".join(self.label_roles)
            raise DataError(f"dataset.label_files: {self.title} needs {roles} spreadsheet"
                            f"{'s' if len(self.label_roles) > 1 else ''}")
        if self.labelled:
            for p in paths:
                if not p.exists():
                    raise LabelError(f"label spreadsheet not found: {p} (dataset.label_files)")
        return paths

    def where(self, subject_dir: str, video: str) -> str:
        """The folder a label row names, relative to the root (the identity rule)."""
        if self.label_folder is None:
            return f"{subject_dir}/{video}"
        return self.label_folder(subject_dir, video)


class UnknownLayout(ValueError):
    """A layout name that no module registered."""


_REGISTRY: dict[str, Layout] = {}
_loaded = False


def register(layout: Layout) -> Layout:
    """Add ``layout`` to the registry (a module calls this at import) and return it. A name
    registered twice by different layouts is an error."""
    known = _REGISTRY.get(layout.name)
    if known is not None and known is not layout:
        raise ValueError(f"layout {layout.name!r} is registered twice")
    _REGISTRY[layout.name] = layout
    return layout


def _discover() -> None:
    """Import every module of this package once (each registers its layouts)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    """Every registered layout name, sorted."""
    _discover()
    return sorted(_REGISTRY)


def all_layouts() -> list[Layout]:
    """Every registered layout, by name."""
    return [_REGISTRY[n] for n in names()]


def find(name: Any) -> Layout | None:
    """The layout called ``name``, or None."""
    _discover()
    return _REGISTRY.get(name) if isinstance(name, str) else None


def get(name: str) -> Layout:
    """The layout called ``name``; :class:`UnknownLayout` lists the known ones."""
    layout = find(name)
    if layout is None:
        raise UnknownLayout(f"unknown layout {name!r}: the layouts are {', '.join(names())} "
                            "(one module each in vrme/data/layouts/, DATASETS.md)")
    return layout


def synth_names() -> list[str]:
    """The names ``vrme synth --layout`` takes (layouts that can be rendered), sorted."""
    return sorted(lay.rendering.name for lay in all_layouts() if lay.rendering is not None)


def rendered(name: str) -> Layout | None:
    """The layout whose rendering is called ``name`` ('samm-lv'; ``_`` and ``-`` and case are
    not told apart), or None."""
    want = str(name).replace("_", "-").lower()
    for lay in all_layouts():
        if lay.rendering is not None and lay.rendering.name == want:
            return lay
    return None
