"""SAMM Long Videos: ``ROOT/SAMM_longvideos/<video>/<video>_<nnnn>.jpg`` + two spreadsheets.

Frames count from 1, zero-padded (the width varies by release). ``SAMM_LongVideos_V3_Release.xlsx``
(preamble rows 1-9, header in row 10) lists every event, micro and macro; its micro rows take
their emotion from ``SAMM_Micro_FACS_Codes_v2.xlsx`` (preamble rows 1-13, header in row 14),
joined on (Filename, Type). Apex -1 = not annotated; offset 0 = "use the apex"; the reference
loader drops rows whose onset is 0 (``dataset.drop_onset_zero``).

Identity rule: a ``Filename`` ``<s>_<v>_<n>`` names the folder ``SAMM_longvideos/<s>_<v>/``
exactly; the ``Subject`` cell, when filled, must agree with it (``6`` and ``006`` agree).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrme.data.layouts import Layout, Rendering, VideoEntry, register

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import DatasetConfig
    from vrme.data.labels import Issue
    from vrme.synth.spec import SynthSpec

NAME = "samm_lv"

EMOTIONS = {
    "happiness": "positive",
    "anger": "negative",
    "contempt": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "surprise": "surprise",
    "other": "others",
}
"""Default ``dataset.emotion_map``: the 'Estimated Emotion' words -> the four classes."""


def scan(root: Path) -> tuple[list[VideoEntry], list[Issue]]:
    """Videos of a SAMM-LV root: ``SAMM_longvideos/<sss>_<v>/*.jpg``."""
    from vrme.data.frames import natural_key

    base = root / "SAMM_longvideos"  # its presence is checked by Layout.check
    entries: list[VideoEntry] = []
    issues: list[Issue] = []
    for vdir in sorted((d for d in base.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
        subject = vdir.name.split("_")[0]
        entries.append(VideoEntry(subject, subject, vdir.name, folder=vdir))
    return entries, issues


SAMM_RELEASE_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "Type"]
SAMM_FACS_COLUMNS = ["Subject", "Filename", "Micro", "Estimated Emotion"]
_SAMM_FILENAME = re.compile(r"^([^_]+)_([^_]+)_([^_]+)$")


def samm_video_of(filename: str) -> tuple[str, str] | None:
    """SAMM event Filename '006_1_3' -> (subject '006', video '006_1'); None unless it is
    exactly three non-empty parts joined by '_'."""
    m = _SAMM_FILENAME.match(filename)
    if not m:
        return None
    return m.group(1), f"{m.group(1)}_{m.group(2)}"


def samm_type(value: str) -> str | None:
    """SAMM 'Type': 'Micro - 1/2' (any 'Micro...') -> 'micro', 'Macro...' -> 'macro', else
    None."""
    v = value.strip().lower()
    return "micro" if v.startswith("micro") else "macro" if v.startswith("macro") else None


def _same_subject(cell: str, from_filename: str) -> bool:
    if cell == from_filename:
        return True
    return cell.isdigit() and from_filename.isdigit() and int(cell) == int(from_filename)


def read_samm_labels(
    release_path: str | os.PathLike[str],
    facs_path: str | os.PathLike[str],
    emotion_map: Mapping[str, str],
    drop_onset_zero: bool = True,
) -> tuple[pd.DataFrame, list[Issue]]:
    """Read SAMM-LV's two spreadsheets and join them on (Filename, Type).

    ``SAMM_LongVideos_V3_Release.xlsx`` lists every event (micro and macro); its micro rows take
    their emotion from ``SAMM_Micro_FACS_Codes_v2.xlsx`` (column 'Estimated Emotion', joined on
    Filename and the 'Micro' column). Apex -1 means "not annotated" (kept, apex null); offset 0
    means "use the apex"; onset 0 rows are dropped when ``drop_onset_zero`` (as the reference).
    ``Filename`` is ``<subject>_<video>_<event>`` and names the folder
    ``SAMM_longvideos/<subject>_<video>/`` exactly; the ``Subject`` cell must agree with it
    (``6`` and ``006`` agree). Subject codes stay zero-padded strings taken from the Filename.
    """
    from vrme.data.labels import DESCRIBE, Issue, Row, drop_repeats, events_frame, read_sheet, \
        unannotated_frames, with_changes

    release = read_sheet(release_path, SAMM_RELEASE_COLUMNS, fillable=["Subject", "Type"])
    facs = read_sheet(facs_path, SAMM_FACS_COLUMNS,
                      fillable=["Subject", "Micro", "Estimated Emotion"])
    rel_name, facs_name = release.path.name, facs.path.name
    issues: list[Issue] = list(release.notes) + list(facs.notes)

    # Emotions: (Filename, Micro) -> rows; rows that disagree make the key unusable.
    by_key: dict[tuple[str, str], list[tuple[int, str]]] = {}
    facs_skipped: dict[tuple[str, str], str] = {}
    for row_no, cells in facs.rows:
        r = Row(facs, cells)
        filename, micro = r.text("filename"), r.text("micro")
        emotion = r.text("estimated emotion")
        base = Issue(kind="label", file=facs_name, sheet=facs.name, row=row_no, item=filename)
        key = (filename, micro.lower())
        if r.problems:
            issues.append(r.issue(base))
            if filename and micro:
                facs_skipped.setdefault(key, f"its row {row_no} in {facs_name} was skipped "
                                             f"({r.problems[0][1]})")
            continue
        by_key.setdefault(key, []).append((row_no, emotion))
    emotions: dict[tuple[str, str], tuple[str, int] | str] = {}
    for key, rows in by_key.items():
        distinct = {e.lower() for _, e in rows}
        if len(distinct) == 1:
            emotions[key] = (rows[0][1], rows[0][0])
            for row_no, _ in rows[1:]:
                issues.append(Issue(kind="label", file=facs_name, sheet=facs.name, row=row_no,
                                    item=key[0], reason=f"duplicate (Filename, Micro) of row "
                                                        f"{rows[0][0]}"))
            continue
        listing = ", ".join(f"{e!r} in row {n}" for n, e in rows)
        emotions[key] = (f"{facs_name} gives contradictory emotions for Filename {key[0]!r}, "
                         f"Micro {key[1]!r}: {listing}")
        for row_no, _ in rows:
            issues.append(Issue(kind="label", file=facs_name, sheet=facs.name, row=row_no,
                                item=key[0], reason=f"contradiction: {listing} for the same "
                                                    "(Filename, Micro); none is used"))

    events: list[dict[str, Any]] = []
    used: set[tuple[str, str]] = set()
    for row_no, cells in release.rows:
        r = Row(release, cells)
        filename = r.name("filename")
        subject_cell = r.text("subject", required=False)
        type_raw = r.text("type")
        onset = r.frame("onset")
        apex = r.frame("apex", allowed_negative=(-1,))
        offset = r.frame("offset")
        base = Issue(kind="label", file=rel_name, sheet=release.name, row=row_no, item=filename)
        sv = samm_video_of(filename) if filename else None
        if filename and sv is None:
            r.problem("filename", f"'Filename' {filename!r} is not <subject>_<video>_<event>")
        if sv is not None:
            base.subject, base.video = sv
            if subject_cell and not _same_subject(subject_cell, sv[0]):
                r.problem("subject", f"'Subject' is {subject_cell!r} but 'Filename' {filename!r} "
                                     f"belongs to subject {sv[0]!r}")
        kind = samm_type(type_raw) if type_raw else None
        if type_raw and kind is None:
            r.problem("type", f"'Type' {type_raw!r} is neither Micro nor Macro")
        if r.problems:
            issues.append(r.issue(base))
            continue
        assert sv is not None and onset is not None and offset is not None and kind is not None
        subject, video = sv
        apex, offset, notes = unannotated_frames(base, apex, offset, missing_apex=-1)
        issues += notes
        if offset is None:
            continue
        if onset == 0 and drop_onset_zero:
            issues.append(with_changes(base, reason="onset 0 (dropped as the reference loader "
                                                    "does; set dataset.drop_onset_zero: false "
                                                    "to keep)"))
            continue
        raw_emotion, emotion = "", None
        if kind == "micro":
            key = (filename, type_raw.lower())
            used.add(key)
            hit = emotions.get(key)
            if hit is None:
                why = facs_skipped.get(key, f"no row with Filename {filename!r} and Micro "
                                            f"{type_raw!r} in {facs_name}")
                issues.append(with_changes(base, reason=f"no emotion: {why}"))
                continue
            if isinstance(hit, str):
                issues.append(with_changes(base, reason=f"no emotion: {hit}"))
                continue
            raw_emotion = hit[0].lower()
            emotion = emotion_map.get(raw_emotion)
        events.append(dict(subject=subject, subject_dir=subject, video=video, onset=onset,
                           apex=apex, offset=offset, type=kind, emotion_raw=raw_emotion,
                           emotion=emotion, source_file=rel_name, source_sheet=release.name,
                           source_row=row_no, event_id=filename, type_raw=type_raw.lower()))
    for key, rows in by_key.items():
        if key not in used and not isinstance(emotions[key], str):
            for row_no, _ in rows[:1]:
                issues.append(Issue(kind="label", file=facs_name, sheet=facs.name, row=row_no,
                                    item=key[0], reason=f"not used: no micro-expression row of "
                                                        f"{rel_name} with this Filename and Type "
                                                        "was read"))
    events, more = drop_repeats(
        events,
        [(("subject_dir", "video", "onset", "offset"), ("apex", "type", "emotion_raw")),
         (("event_id", "type_raw"), ("onset", "apex", "offset"))],
        DESCRIBE)
    return events_frame(events), issues + more


def read_labels(paths: Sequence[Path], ds: DatasetConfig) -> tuple[pd.DataFrame, list[Issue]]:
    return read_samm_labels(paths[0], paths[1], dict(ds.emotion_map or {}), ds.drop_onset_zero)


# -- synthetic data in this layout ------------------------------------------------------------

SAMM_MICRO_TYPE = "Micro - 1/2"
SAMM_MACRO_TYPE = "Macro"

SAMM_RELEASE_FILE = "SAMM_LongVideos_V3_Release.xlsx"
SAMM_FACS_FILE = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_RELEASE_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                       "Duration", "Type", "Action Units", "Notes"]
SAMM_FACS_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
                    "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
                    "Objective Classes", "Notes"]
SAMM_RELEASE_HEADER_ROW = 10
SAMM_FACS_HEADER_ROW = 14

# Preamble cells of the two SAMM spreadsheets as the releases have them: (cell, text).
_SAMM_RELEASE_PREAMBLE: tuple[tuple[str, str], ...] = (
    ("A1", "SAMM Long Videos Dataset - FACS Codes"),
    ("A3", "Symbol Key:"),
    ("A4", '"/" = or'),
    ("A6", "AU Help:"),
    ("A7", '"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'),
    ("F7", "NOTE: Subjects with Apex Frame not annotated were labelled as -1."),
    ("A8", '"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'),
)
_SAMM_FACS_PREAMBLE: tuple[tuple[str, str], ...] = (
    ("A1", "SAMM Dataset - Master FACS Codes"),
    ("E1", "(Note to the users: If you're using SAMM, please cite: Davison, A. K., Lansley, C., "
           "Costen, N., Tan, K., & Yap, M. H. (2016). SAMM: A spontaneous micro-facial movement "
           "dataset. IEEE Transactions on Affective Computing.)"),
    ("A3", "9/9/17 - New updates with Emotional and Objective Classes. For details please refer "
           "to: "),
    ("I3", "arXiv preprint arXiv:1708.07549."),
    ("E4", "(Note to the users: if you're using the emotional or objective classes, please cite: "
           "Davison, A. K., Merghani, W., & Yap, M. H. (2017). Objective Classes for "
           "Micro-Facial Expression Recognition. arXiv preprint arXiv:1708.07549.)"),
    ("A6", "Symbol Key:"),
    ("A7", '"/" = or'),
    ("A8", '"?" = some AU\'s continue for a while and have unclear offset'),
    ("A10", "AU Help:"),
    ("A11", '"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'),
    ("A12", '"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'),
)
# Number formats of the header cells in the releases (column letter -> format).
_SAMM_RELEASE_HEADER_FORMATS = {"A": "@", "B": "#,##0", "C": "#,##0", "D": "0", "E": "0",
                                "F": "0", "G": "0", "H": "#,##0"}
_SAMM_FACS_HEADER_FORMATS = {"A": "@", "B": "#,##0", "C": "#,##0", "D": "#,##0", "F": "#,##0",
                             "G": "#,##0", "H": "#,##0", "J": "#,##0", "K": "#,##0"}


def _samm_rows(events: pd.DataFrame, unannotated_apex: bool) -> list[dict[str, Any]]:
    rows = []
    first_micro_done = False
    for r in events.itertuples(index=False):
        micro = r.type == "micro"
        apex = int(r.apex)
        if micro and unannotated_apex and not first_micro_done:
            apex = -1
        first_micro_done = first_micro_done or micro
        rows.append(dict(
            subject=r.subject_dir, filename=f"{r.video}_{int(r.event)}",
            inducement=int(str(r.video).rsplit("_", 1)[1]), onset=int(r.onset), apex=apex,
            offset=int(r.offset), duration=int(r.offset) - int(r.onset),
            type=SAMM_MICRO_TYPE if micro else SAMM_MACRO_TYPE, au=str(r.au),
            emotion=r.emotion_raw, objective=int(r.objective_class), micro=micro,
        ))
    return rows


def _write_samm_labels(release_path: Path, facs_path: Path, events: pd.DataFrame,
                       unannotated_apex: bool) -> list[Path]:
    from openpyxl import Workbook

    from vrme.io import write_bytes_atomic
    from vrme.synth.sheets import xlsx_bytes

    rows = _samm_rows(events, unannotated_apex)

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    for cell, text in _SAMM_RELEASE_PREAMBLE:
        ws[cell] = text
    ws["F7"].number_format = "0"
    ws.merge_cells("F7:I7")
    for j, name in enumerate(SAMM_RELEASE_HEADER, start=1):
        c = ws.cell(row=SAMM_RELEASE_HEADER_ROW, column=j, value=name)
        c.number_format = _SAMM_RELEASE_HEADER_FORMATS.get(c.column_letter, "General")
    for i, r in enumerate(rows, start=SAMM_RELEASE_HEADER_ROW + 1):
        values = [r["subject"], r["filename"], r["inducement"], r["onset"], r["apex"],
                  r["offset"], r["duration"], r["type"], r["au"]]
        for j, v in enumerate(values, start=1):
            ws.cell(row=i, column=j, value=v)
        ws.cell(row=i, column=1).number_format = "@"
    write_bytes_atomic(release_path, xlsx_bytes(wb))

    wb = Workbook()
    ws = wb.active
    ws.title = "MICRO_ONLY"
    for cell, text in _SAMM_FACS_PREAMBLE:
        ws[cell] = text
    for j, name in enumerate(SAMM_FACS_HEADER, start=1):
        c = ws.cell(row=SAMM_FACS_HEADER_ROW, column=j, value=name)
        c.number_format = _SAMM_FACS_HEADER_FORMATS.get(c.column_letter, "General")
    micro_rows = [r for r in rows if r["micro"]]
    for i, r in enumerate(micro_rows, start=SAMM_FACS_HEADER_ROW + 1):
        values = [r["subject"], r["filename"], r["inducement"], r["onset"], r["apex"],
                  r["offset"], r["duration"], r["type"], r["au"], r["emotion"], r["objective"]]
        for j, v in enumerate(values, start=1):
            ws.cell(row=i, column=j, value=v)
        ws.cell(row=i, column=1).number_format = "@"
    write_bytes_atomic(facs_path, xlsx_bytes(wb))
    return [release_path, facs_path]


def write_labels(out: Path, events: pd.DataFrame, spec: SynthSpec) -> list[Path]:
    """The release spreadsheet (every ME and macro-expression) and the FACS-codes spreadsheet
    (MEs, with their emotion), with the releases' preambles, header rows and number formats."""
    return _write_samm_labels(out / SAMM_RELEASE_FILE, out / SAMM_FACS_FILE, events,
                              spec.samm_unannotated_apex)


def _subject_names(index: int) -> tuple[str, str]:
    code = f"{index:03d}"
    return code, code


LAYOUT = register(Layout(
    name=NAME,
    title="SAMM-LV",
    scan=scan,
    read_labels=read_labels,
    label_files=(SAMM_RELEASE_FILE, SAMM_FACS_FILE),
    label_roles=("the release", "the FACS-codes"),
    emotion_map=EMOTIONS,
    fps=200.0,
    frame_skip=7,
    root_folder="SAMM_longvideos",
    frame_prefix=lambda video: f"{video}_",
    label_folder=lambda subject_dir, video: f"SAMM_longvideos/{video}",
    rendering=Rendering(
        name="samm-lv",
        fps=200.0,
        first_frame=1,
        raw_emotions={
            "surprise": (("Surprise",), (1.0,)),
            "positive": (("Happiness",), (1.0,)),
            "negative": (
                ("Anger", "Disgust", "Contempt", "Sadness", "Fear"),
                (0.35, 0.25, 0.2, 0.1, 0.1),
            ),
            "others": (("Other",), (1.0,)),
        },
        subject_names=_subject_names,
        video_name=lambda subject_dir, index: f"{subject_dir}_{index}",
        video_folder=lambda subject_dir, video: f"SAMM_longvideos/{video}",
        frame_name=lambda video, number: f"{video}_{number:04d}.jpg",
        write_labels=write_labels,
        outputs=("SAMM_longvideos", SAMM_RELEASE_FILE, SAMM_FACS_FILE),
        labels_macros=True,
        max_subjects=999,
    ),
))
