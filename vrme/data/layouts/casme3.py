"""CAS(ME)^3 part A: ``ROOT/data/<subject>/<video>/color/<n>.jpg`` + ``casme3_label.xlsx``.

Frames are numbered from 0, not zero-padded (``data/spNO.1/a/color/0.jpg``); the MEGC test
release puts them directly in the video folder, which is read too. The label spreadsheet has its
header in row 1: ``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion``; every
row is a micro-expression, frame numbers are the jpg numbers.

Identity rule: ``Subject`` and ``Filename`` name the folder ``data/<Subject>/<Filename>/``
exactly. The fold id of a subject is the part after the last dot (``spNO.1`` -> ``1``); two
subject folders with the same id are refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrme.data.layouts import Layout, Rendering, VideoEntry, register

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import DatasetConfig
    from vrme.data.labels import Issue
    from vrme.synth.spec import SynthSpec

NAME = "casme3"
LABEL_FILE = "casme3_label.xlsx"
COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "emotion"]
"""The columns vrme reads (found by their header, in any order)."""

HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
"""The header row of the part A release (the synthetic spreadsheet writes it)."""

EMOTIONS = {
    "happy": "positive",
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sad": "negative",
    "surprise": "surprise",
    "others": "others",
}
"""Default ``dataset.emotion_map``: the spreadsheet's emotion words -> the four classes."""


def scan(root: Path) -> tuple[list[VideoEntry], list[Issue]]:
    """Videos of a CAS(ME)^3 root: ``data/<subject>/<video>/color/*.jpg`` (frames directly in
    the video folder are accepted too, as in the MEGC test release)."""
    from vrme.errors import DataError
    from vrme.data.frames import natural_key
    from vrme.data.labels import fold_id_casme3

    data = root / "data"  # its presence is checked by Layout.check
    entries: list[VideoEntry] = []
    issues: list[Issue] = []
    folds: dict[str, str] = {}
    for sdir in sorted((d for d in data.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
        fold = fold_id_casme3(sdir.name)
        if fold in folds:
            raise DataError(f"{data}: subject folders {folds[fold]!r} and {sdir.name!r} both give "
                            f"subject id {fold!r} (the part after the last dot names the fold): "
                            "rename one")
        folds[fold] = sdir.name
        for vdir in sorted((d for d in sdir.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
            folder = vdir / "color" if (vdir / "color").is_dir() else vdir
            entries.append(VideoEntry(fold, sdir.name, vdir.name, folder=folder))
    return entries, issues


def read_casme3_labels(
    path: str | os.PathLike[str], emotion_map: Mapping[str, str]
) -> tuple[pd.DataFrame, list[Issue]]:
    """Read the CAS(ME)^3 part A spreadsheet (header in row 1:
    Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion).

    Every row is a micro-expression. Frame numbers are the jpg numbers (original numbering).
    ``Subject`` and ``Filename`` name the folder ``data/<Subject>/<Filename>/`` exactly.
    Returns (events with :data:`vrme.data.labels.EVENT_COLUMNS`, issues).
    """
    from vrme.data.labels import DESCRIBE, Issue, Row, drop_repeats, events_frame, fold_id_casme3, \
        read_sheet

    sheet = read_sheet(path, COLUMNS, fillable=["Subject", "Filename", "emotion"])
    events: list[dict[str, Any]] = []
    issues: list[Issue] = list(sheet.notes)
    fname = sheet.path.name
    for row_no, cells in sheet.rows:
        r = Row(sheet, cells)
        subject_dir, video = r.name("subject"), r.name("filename")
        onset, apex, offset = r.frame("onset"), r.frame("apex"), r.frame("offset")
        raw = r.text("emotion").lower()
        base = Issue(kind="label", file=fname, sheet=sheet.name, row=row_no,
                     subject=subject_dir, video=video)
        if r.problems:
            issues.append(r.issue(base))
            continue
        events.append(dict(subject=fold_id_casme3(subject_dir), subject_dir=subject_dir,
                           video=video, onset=onset, apex=apex, offset=offset, type="micro",
                           emotion_raw=raw, emotion=emotion_map.get(raw), source_file=fname,
                           source_sheet=sheet.name, source_row=row_no))
    events, more = drop_repeats(
        events, [(("subject_dir", "video", "onset", "offset"), ("apex", "emotion_raw"))],
        DESCRIBE)
    return events_frame(events), issues + more


def read_labels(paths: Sequence[Path], ds: DatasetConfig) -> tuple[pd.DataFrame, list[Issue]]:
    return read_casme3_labels(paths[0], dict(ds.emotion_map or {}))


# -- synthetic data in this layout ------------------------------------------------------------

_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII"}


def _subject_names(index: int) -> tuple[str, str]:
    return f"spNO.{index}", str(index)


def _video_name(subject_dir: str, index: int) -> str:
    """'a'..'z', then 'a1'..'z1', ..."""
    letter = chr(ord("a") + (index - 1) % 26)
    cycle = (index - 1) // 26
    return letter if cycle == 0 else f"{letter}{cycle}"


def write_labels(out: Path, events: pd.DataFrame, spec: SynthSpec) -> list[Path]:
    """``casme3_label.xlsx``: sheet ``label``, :data:`HEADER` in row 1, one row per ME (as in
    the real part A spreadsheet, macro-expressions are not listed)."""
    from openpyxl import Workbook

    from vrme.io import write_bytes_atomic
    from vrme.synth.sheets import xlsx_bytes

    wb = Workbook()
    ws = wb.active
    ws.title = "label"
    ws.append(HEADER)
    for r in events[events["type"] == "micro"].itertuples(index=False):
        ws.append([r.subject_dir, r.video, int(r.onset), int(r.apex), int(r.offset), str(r.au),
                   _ROMAN[int(r.objective_class)], r.emotion_raw])
    return [write_bytes_atomic(out / LABEL_FILE, xlsx_bytes(wb))]


LAYOUT = register(Layout(
    name=NAME,
    title="CAS(ME)^3",
    scan=scan,
    read_labels=read_labels,
    label_files=(LABEL_FILE,),
    label_roles=("the label",),
    emotion_map=EMOTIONS,
    fps=30.0,
    frame_skip=1,
    root_folder="data",
    frame_prefix=lambda video: "",
    label_folder=lambda subject_dir, video: f"data/{subject_dir}/{video}",
    rendering=Rendering(
        name="casme3",
        fps=30.0,
        first_frame=0,
        raw_emotions={
            "surprise": (("surprise",), (1.0,)),
            "positive": (("happy",), (1.0,)),
            "negative": (("disgust", "anger", "sad", "fear"), (0.4, 0.3, 0.15, 0.15)),
            "others": (("others",), (1.0,)),
        },
        subject_names=_subject_names,
        video_name=_video_name,
        video_folder=lambda subject_dir, video: f"data/{subject_dir}/{video}",
        frame_name=lambda video, number: f"{number}.jpg",
        frame_subfolder="color",
        write_labels=write_labels,
        outputs=("data", LABEL_FILE),
        labels_macros=False,
    ),
))
