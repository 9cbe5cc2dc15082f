"""CAS(ME)^2 (Qu et al. 2017), the long videos of MEGC 2019-2022 spotting and of MEAN:
``ROOT/rawpic/s<NN>/<NN>_<code><name>/img<nnn>.jpg`` + ``CAS(ME)^2code_final.xlsx``.

Frames are ``img001.jpg``, ``img002.jpg``, ... (numbered from 1, zero-padded to at least three
digits: ``img1000.jpg`` follows ``img999.jpg``), 30 fps. The spreadsheet (DATASETS.md says where
each fact comes from) has three sheets, none with a header row:

- ``CASFEcode_final``, one row per expression: A subject number (1-22), B clip name
  ``<video name>_<n>`` (``anger1_1``), C onset, D apex, E offset (frame numbers, the numbers in
  the jpg names), F action units, G emotion (negative, positive, surprise, others), H type
  (``micro-expression`` or ``macro-expression``), I the emotion the subject reported. vrme
  reads A-E, G and H. An offset of 0 means "use the apex"; an apex of 0 is "not annotated".
- ``naming rule1``: A the number in the video folder names (15), B the subject folder (``s15``),
  C the subject number of column A above (1). vrme reads B and C.
- ``naming rule2``: A the video code (``0401``), B the video name (``anger1``). vrme reads both.

Identity rule: a row's subject number gives its subject folder through ``naming rule1``
(``1`` -> ``s15``) and its clip name's video name gives the video code through ``naming rule2``
(``anger1`` -> ``0401``); the row's video is the folder ``rawpic/s15/15_0401<anything>``: the
one folder of that subject folder whose name starts with the subject folder's number, ``_``
and the code. Its manifest name is ``15_0401`` (subject ``s15``). A folder whose number
differs from its subject folder's (``s19/23_0502funnyerrors`` in the public release) is left
out: whose video it is cannot be told from the name. Two folders with the same number and code
in one subject folder are both left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrme.data.layouts import Layout, Rendering, VideoEntry, register

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vrme.config import DatasetConfig
    from vrme.data.labels import Issue, Row, Sheet
    from vrme.synth.spec import SynthSpec

NAME = "casme2"
LABEL_FILE = "CAS(ME)^2code_final.xlsx"
LABEL_SHEET = "CASFEcode_final"
SUBJECT_SHEET = "naming rule1"
VIDEO_SHEET = "naming rule2"

LABEL_COLUMNS = [("A", "Subject"), ("B", "Clip"), ("C", "Onset"), ("D", "Apex"),
                 ("E", "Offset"), ("G", "Emotion"), ("H", "Type")]
"""The columns vrme reads in ``CASFEcode_final`` (letter, the name messages give it)."""
SUBJECT_COLUMNS = [("B", "Folder"), ("C", "Subject")]
VIDEO_COLUMNS = [("A", "Code"), ("B", "Name")]

TYPES = {"micro-expression": "micro", "macro-expression": "macro"}
"""Column H as written (case and spaces around aside) -> the event type."""

EMOTIONS = {"negative": "negative", "positive": "positive", "surprise": "surprise",
            "others": "others"}
"""Default ``dataset.emotion_map``: column G already holds the four classes (MEAN reads the
same column)."""

_SUBJECT_DIR = re.compile(r"^s(\d+)$")
_VIDEO_DIR = re.compile(r"^(\d+)_(\d{4})(.*)$")
_CLIP = re.compile(r"^(.+)_(\d+)$")


# -- the folders ------------------------------------------------------------------------------


def scan(root: Path) -> tuple[list[VideoEntry], list[Issue]]:
    """Videos of a CAS(ME)^2 root: ``rawpic/s<NN>/<NN>_<code><name>/img<nnn>.jpg``, each
    named ``<NN>_<code>`` in subject ``s<NN>``. Folders that break the naming are left out
    with their reason (see the module docstring)."""
    from vrme.data.frames import natural_key
    from vrme.data.labels import Issue

    base = root / "rawpic"  # its presence is checked by Layout.check
    entries: list[VideoEntry] = []
    issues: list[Issue] = []
    for sdir in sorted((d for d in base.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name)):
        m = _SUBJECT_DIR.match(sdir.name)
        if m is None:
            issues.append(Issue(kind="video", subject=sdir.name, item=f"rawpic/{sdir.name}",
                                reason="not a subject folder (s<NN>, e.g. s15): not read"))
            continue
        found: dict[str, list[Path]] = {}
        for vdir in sorted((d for d in sdir.iterdir() if d.is_dir()),
                           key=lambda d: natural_key(d.name)):
            item = f"rawpic/{sdir.name}/{vdir.name}"
            v = _VIDEO_DIR.match(vdir.name)
            if v is None:
                issues.append(Issue(kind="video", subject=sdir.name, item=item,
                                    reason="not a video folder (<NN>_<code><name>, e.g. "
                                           "15_0101disgustingteeth): not read"))
            elif v.group(1) != m.group(1):
                issues.append(Issue(  # keyed as the subject folder's labels would name it
                    kind="video", subject=sdir.name, video=f"{m.group(1)}_{v.group(2)}",
                    item=item,
                    reason=f"its name gives subject number {v.group(1)} but it is in subject "
                           f"folder {sdir.name}: whose video it is is ambiguous; rename it "
                           f"{m.group(1)}_{v.group(2)}{v.group(3)} if it is {sdir.name}'s, or "
                           f"move it to s{v.group(1)}"))
            else:
                found.setdefault(f"{v.group(1)}_{v.group(2)}", []).append(vdir)
        for video, dirs in found.items():
            if len(dirs) > 1:
                names = ", ".join(d.name for d in dirs)
                for d in dirs:
                    issues.append(Issue(kind="video", subject=sdir.name, video=video,
                                        item=f"rawpic/{sdir.name}/{d.name}",
                                        reason=f"{len(dirs)} folders are video {video} of "
                                               f"{sdir.name} ({names}): which one the labels "
                                               "mean is ambiguous; keep one"))
                continue
            entries.append(VideoEntry(sdir.name, sdir.name, video, folder=dirs[0]))
    return entries, issues


# -- the spreadsheet --------------------------------------------------------------------------


def _whole(r: Row, key: str, what: str) -> int | None:
    """A cell holding a whole number (a number cell or digits), or None with the problem."""
    text = r.text(key)
    if text and not text.isdigit():
        r.problem(key, f"column '{r.sheet.titles[key]}' is {text!r}, not a {what}")
        return None
    return int(text) if text else None


def _code(r: Row, key: str) -> str | None:
    """A video code: up to four digits (text '0401', or the number 401) -> '0401'."""
    text = r.text(key)
    if text and not (text.isdigit() and len(text) <= 4):
        r.problem(key, f"column '{r.sheet.titles[key]}' is {text!r}, not a video code (up to "
                       "four digits, e.g. 0401)")
        return None
    return f"{int(text):04d}" if text else None


def _folder(r: Row, key: str) -> str | None:
    text = r.name(key)
    if text and not _SUBJECT_DIR.match(text):
        r.problem(key, f"column '{r.sheet.titles[key]}' is {text!r}, not a subject folder "
                       "(s<NN>, e.g. s15)")
        return None
    return text or None


def _mapping(sheet: Sheet, key_col: str, value_col: str,
             read_key: Callable[[Row, str], Any], read_value: Callable[[Row, str], Any],
             key_what: str, value_what: str) -> tuple[dict[Any, Any], dict[Any, str],
                                                      list[Issue]]:
    """A naming sheet as {key: value}. A row that cannot be read is refused; a key given twice
    alike is a duplicate, given two values (or a value given to two keys) a contradiction that
    makes every such row refused. Returns (mapping, {key: why it has no value}, issues)."""
    from vrme.data.labels import Issue, Row

    fname = sheet.path.name
    kc, vc = key_col.lower(), value_col.lower()
    issues: list[Issue] = list(sheet.notes)
    rows: list[tuple[int, Any, Any]] = []
    unusable: dict[Any, str] = {}
    for row_no, cells in sheet.rows:
        r = Row(sheet, cells)
        key, value = read_key(r, kc), read_value(r, vc)
        base = Issue(kind="label", file=fname, sheet=sheet.name, row=row_no,
                     item=f"{key_what} {key}" if key is not None else "")
        if r.problems:
            issues.append(r.issue(base))
            if key is not None:
                unusable.setdefault(key, f"its row {row_no} in sheet {sheet.name!r} was "
                                         f"skipped ({r.problems[0][1]})")
            continue
        rows.append((row_no, key, value))
    refused: dict[int, str] = {}
    for pos, what, other in ((1, key_what, value_what), (2, value_what, key_what)):
        groups: dict[Any, list[tuple[int, Any, Any]]] = {}
        for row in rows:
            groups.setdefault(row[pos], []).append(row)
        for shared, members in groups.items():
            others = {m[3 - pos] for m in members}
            if len(members) < 2 or len(others) < 2:
                continue
            listing = ", ".join(f"{m[3 - pos]!r} in row {m[0]}" for m in members)
            for m in members:
                refused.setdefault(m[0], f"{what} {shared!r} is given {other}s {listing}: "
                                         "none of these rows is used")
    mapping: dict[Any, Any] = {}
    first: dict[Any, int] = {}
    for row_no, key, value in rows:
        base = Issue(kind="label", file=fname, sheet=sheet.name, row=row_no,
                     item=f"{key_what} {key}")
        if row_no in refused:
            issues.append(Issue(**{**base.as_dict(), "reason": refused[row_no]}))
            unusable.setdefault(key, f"sheet {sheet.name!r}: {refused[row_no]}")
        elif key in first:
            issues.append(Issue(**{**base.as_dict(), "reason": f"duplicate of row {first[key]}"}))
        else:
            first[key] = row_no
            mapping[key] = value
    for key in list(mapping):
        if key in unusable:  # another row of the same key was refused
            del mapping[key]
    return mapping, unusable, issues


def read_casme2_labels(
    path: str | os.PathLike[str], emotion_map: Mapping[str, str]
) -> tuple[pd.DataFrame, list[Issue]]:
    """Read ``CAS(ME)^2code_final.xlsx`` (its three sheets, no header rows; see the module
    docstring): every micro- and macro-expression, its subject folder and video code resolved
    through the two naming sheets. Returns (events with :data:`vrme.data.labels.EVENT_COLUMNS`,
    subject ``s<NN>``, video ``<NN>_<code>``; issues)."""
    from vrme.data.labels import DESCRIBE, Issue, Row, drop_repeats, events_frame, \
        read_sheets_without_header, unannotated_frames

    labels, subjects, videos = read_sheets_without_header(path, [
        (LABEL_SHEET, LABEL_COLUMNS, ["Subject", "Emotion", "Type"]),
        (SUBJECT_SHEET, SUBJECT_COLUMNS, []),
        (VIDEO_SHEET, VIDEO_COLUMNS, []),
    ])
    folder_of, no_folder, issues = _mapping(
        subjects, "Subject", "Folder", lambda r, k: _whole(r, k, "subject number"), _folder,
        "subject number", "folder")
    code_of, no_code, more = _mapping(videos, "Name", "Code", lambda r, k: r.text(k) or None,
                                      _code, "video name", "code")
    issues += more + list(labels.notes)
    fname = labels.path.name
    events: list[dict[str, Any]] = []
    for row_no, cells in labels.rows:
        r = Row(labels, cells)
        number = _whole(r, "subject", "subject number")
        clip = r.text("clip")
        onset, apex, offset = r.frame("onset"), r.frame("apex"), r.frame("offset")
        type_raw = r.text("type")
        kind = TYPES.get(" ".join(type_raw.split()).lower()) if type_raw else None
        if type_raw and kind is None:
            r.problem("type", f"column 'Type' is {type_raw!r}, neither micro-expression nor "
                              "macro-expression")
        raw = r.text("emotion", required=kind == "micro").lower()
        name = None
        if clip:
            m = _CLIP.match(clip)
            if m is None:
                r.problem("clip", f"column 'Clip' is {clip!r}, not <video name>_<number> (e.g. "
                                  "anger1_1)")
            else:
                name = m.group(1)
        folder = code = None
        if number is not None:
            folder = folder_of.get(number)
            if folder is None:
                r.problem("subject", no_folder.get(number, f"no row of sheet {SUBJECT_SHEET!r} "
                                                           f"gives subject {number}'s folder"))
        if name is not None:
            code = code_of.get(name)
            if code is None:
                r.problem("clip", no_code.get(name, f"no row of sheet {VIDEO_SHEET!r} gives "
                                                    f"the code of video {name!r}"))
        video = f"{folder[1:]}_{code}" if folder and code else ""
        base = Issue(kind="label", file=fname, sheet=labels.name, row=row_no,
                     subject=folder or (str(number) if number is not None else ""), video=video,
                     item=clip)
        if r.problems:
            issues.append(r.issue(base))
            continue
        assert folder and code and onset is not None and offset is not None and kind
        apex, offset, notes = unannotated_frames(base, apex, offset, missing_apex=0)
        issues += notes
        if offset is None:
            continue
        events.append(dict(subject=folder, subject_dir=folder, video=video, onset=onset,
                           apex=apex, offset=offset, type=kind, emotion_raw=raw,
                           emotion=emotion_map.get(raw), source_file=fname,
                           source_sheet=labels.name, source_row=row_no, event_id=clip,
                           type_raw=kind))
    events, more = drop_repeats(
        events,
        [(("subject_dir", "video", "onset", "offset"), ("apex", "type", "emotion_raw")),
         (("subject_dir", "event_id", "type_raw"), ("onset", "apex", "offset"))],
        {**DESCRIBE, "event_id": "clip", "type_raw": "type"})
    return events_frame(events), issues + more


def read_labels(paths: Sequence[Path], ds: DatasetConfig) -> tuple[pd.DataFrame, list[Issue]]:
    return read_casme2_labels(paths[0], dict(ds.emotion_map or {}))


# -- synthetic data in this layout ------------------------------------------------------------

VIDEOS = (("0101", "disgust1", "disgustingteeth"), ("0102", "disgust2", "eatingworms"),
          ("0401", "anger1", "girlcrashing"), ("0402", "anger2", "beatingpregnantwoman"),
          ("0502", "happy1", "funnyerrors"), ("0503", "happy2", "unnyfarting"),
          ("0505", "happy3", "funnyinnovations"), ("0507", "happy4", "climbingthewall"),
          ("0508", "happy5", "funnydunkey"))
"""The release's nine stimulus videos: (code, name in ``naming rule2``, the rest of the folder
name), as the public loaders list them (``0503unnyfarting`` sic)."""
_BY_CODE = {code: (name, rest) for code, name, rest in VIDEOS}
_FIRST_SUBJECT = 15
"""Synthetic subject ``i`` is spreadsheet subject ``i`` in folder ``s<14 + i>`` (the release's
first subject folder is s15)."""
_ACTION_CLASS = {"brow_raise": "surprise", "brow_lower": "negative",
                 "lip_corner_pull": "positive"}
_REPORTED = {"negative": "disgust", "positive": "happiness", "surprise": "surprise",
             "others": "helpless"}


def _subject_names(index: int) -> tuple[str, str]:
    folder = f"s{_FIRST_SUBJECT - 1 + index}"
    return folder, folder


def _video_folder(subject_dir: str, video: str) -> str:
    _, rest = _BY_CODE[video.split("_", 1)[1]]
    return f"rawpic/{subject_dir}/{video}{rest}"


def write_labels(out: Path, events: pd.DataFrame, spec: SynthSpec) -> list[Path]:
    """``CAS(ME)^2code_final.xlsx`` in the release's format: sheet ``CASFEcode_final`` (no
    header; every ME and macro-expression, columns A-I), ``naming rule1`` (every subject) and
    ``naming rule2`` (the nine videos, codes as text)."""
    from openpyxl import Workbook

    from vrme.io import write_bytes_atomic
    from vrme.synth.sheets import xlsx_bytes

    wb = Workbook()
    ws = wb.active
    ws.title = LABEL_SHEET
    for r in events.itertuples(index=False):
        number = int(str(r.subject_dir)[1:]) - _FIRST_SUBJECT + 1
        name, _ = _BY_CODE[str(r.video).split("_", 1)[1]]
        micro = r.type == "micro"
        emotion = r.emotion_raw if micro else _ACTION_CLASS.get(r.action, "others")
        ws.append([number, f"{name}_{int(r.event)}", int(r.onset), int(r.apex), int(r.offset),
                   str(r.au), emotion, "micro-expression" if micro else "macro-expression",
                   _REPORTED[emotion]])
    rule1 = wb.create_sheet(SUBJECT_SHEET)
    for i in range(1, spec.subjects + 1):
        folder, _ = _subject_names(i)
        rule1.append([int(folder[1:]), folder, i])
    rule2 = wb.create_sheet(VIDEO_SHEET)
    for code, name, _ in VIDEOS:
        rule2.append([code, name])
        rule2.cell(row=rule2.max_row, column=1).number_format = "@"
    return [write_bytes_atomic(out / LABEL_FILE, xlsx_bytes(wb))]


LAYOUT = register(Layout(
    name=NAME,
    title="CAS(ME)^2",
    scan=scan,
    read_labels=read_labels,
    label_files=(LABEL_FILE,),
    label_roles=("the label",),
    emotion_map=EMOTIONS,
    fps=30.0,
    frame_skip=1,
    root_folder="rawpic",
    frame_prefix=lambda video: "img",
    label_folder=lambda subject_dir, video: f"rawpic/{subject_dir}/{video}*",
    rendering=Rendering(
        name="casme2",
        fps=30.0,
        first_frame=1,
        raw_emotions={c: ((c,), (1.0,)) for c in ("negative", "positive", "surprise", "others")},
        subject_names=_subject_names,
        video_name=lambda subject_dir, index: f"{subject_dir[1:]}_{VIDEOS[index - 1][0]}",
        video_folder=_video_folder,
        frame_name=lambda video, number: f"img{number:03d}.jpg",
        write_labels=write_labels,
        outputs=("rawpic", LABEL_FILE),
        labels_macros=True,
        max_videos=len(VIDEOS),
    ),
))
