"""Label spreadsheets of CAS(ME)^3 and SAMM-LV, read exactly as DATASETS.md describes.

Readers return the events they could read and a list of :class:`Issue` records for every row they
left out or kept with a note; nothing is dropped silently. A spreadsheet that cannot be read at
all (missing file, missing column) raises :class:`~vrme.errors.LabelError` naming the file and
the column.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.errors import LabelError

EVENT_COLUMNS = [
    "subject",
    "subject_dir",
    "video",
    "onset",
    "apex",
    "offset",
    "type",
    "emotion_raw",
    "emotion",
    "source_file",
    "source_row",
]


@dataclass
class Issue:
    """One line of ``skipped.csv``: an item left out (or kept with a note) and why."""

    kind: str  # label | video | frames | window
    file: str = ""
    row: int | None = None  # 1-based spreadsheet row as Excel shows it
    subject: str = ""
    video: str = ""
    item: str = ""
    reason: str = ""
    action: str = "skipped"  # skipped | kept | filled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


def safe_name(value: str) -> bool:
    """True if ``value`` can only name an entry inside a folder (no separators, no '..')."""
    return bool(_SAFE_NAME.match(value)) and value not in (".", "..") and not value.startswith("~")


def fold_id_casme3(subject: str) -> str:
    """CAS(ME)^3 fold id: the part after the last dot ('spNO.1' -> '1')."""
    return subject.rsplit(".", 1)[-1]


def cell_text(value: Any) -> str:
    """A spreadsheet cell as text: integral floats lose their '.0', None becomes ''."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def parse_frame(value: Any) -> int | None:
    """A frame-number cell as int, or None if it is not an integer."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return int(float(text))
    return None


@dataclass
class Sheet:
    """The rows of a spreadsheet below its header row, with their 1-based Excel row numbers."""

    path: Path
    header_row: int
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]


def read_sheet(
    path: str | os.PathLike[str], required: Iterable[str], sheet: str | int = 0
) -> Sheet:
    """Read a label spreadsheet, finding the header row (the first row holding every required
    column name; names compared case-insensitively, spaces trimmed) below any preamble.

    Raises :class:`LabelError` naming the file and the missing columns.
    """
    import openpyxl

    path = Path(path)
    required = list(required)
    if not path.is_file():
        raise LabelError(f"label spreadsheet not found: {path}")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a corrupt file
        raise LabelError(f"{path}: cannot read spreadsheet ({type(exc).__name__}: {exc})") from exc
    try:
        ws = wb.worksheets[sheet] if isinstance(sheet, int) else wb[sheet]
        all_rows = list(ws.iter_rows(values_only=True))
    finally:
        wb.close()
    want = {c.lower() for c in required}
    best: tuple[int, list[str]] | None = None
    for i, row in enumerate(all_rows[:50], start=1):
        names = [cell_text(v) for v in row]
        lowered = {n.lower() for n in names if n}
        if "subject" in lowered and (best is None or len(want & lowered) > len(want & best[1])):
            best = (i, [n.lower() for n in names])
        if want <= lowered:
            header_row, header = i, names
            break
    else:
        if best is None:
            raise LabelError(
                f"{path}: no header row found (looked for a row with the columns "
                f"{', '.join(required)} in the first 50 rows)"
            )
        missing = [c for c in required if c.lower() not in set(best[1])]
        raise LabelError(
            f"{path}: column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
            f"missing from the header in row {best[0]}"
        )
    keys = [h.lower() for h in header]
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, row in enumerate(all_rows[header_row:], start=header_row + 1):
        if all(v is None or cell_text(v) == "" for v in row):
            continue
        record = {keys[j]: row[j] for j in range(min(len(keys), len(row))) if keys[j]}
        rows.append((i, record))
    return Sheet(path=path, header_row=header_row, columns=header, rows=rows)


def _frames_or_issue(
    record: Mapping[str, Any], cols: Mapping[str, str], base: Issue
) -> tuple[dict[str, int | None], Issue | None]:
    """Parse the onset/apex/offset cells of a row; an Issue if one is not an integer."""
    out: dict[str, int | None] = {}
    for key, col in cols.items():
        value = record.get(col.lower())
        n = parse_frame(value)
        if n is None:
            issue = Issue(**{**base.as_dict(), "item": f"{col}={cell_text(value)!r}"})
            issue.reason = f"column '{col}' is not an integer frame number: {cell_text(value)!r}"
            return out, issue
        out[key] = n
    return out, None


def _checked_frames(record: Mapping[str, Any], base: Issue, subject: str, video: str,
                    issues: list[Issue]) -> dict[str, int | None] | None:
    """Onset/apex/offset of a row whose subject and video are plain names; otherwise None with
    the reason appended to ``issues`` (a name with a path separator or '..' is refused: a label
    file must not be able to point outside the dataset root)."""
    if not (safe_name(subject) and safe_name(video)):
        issues.append(_with(base, reason="subject/video is not a plain folder name (refused: it "
                                         "could point outside the dataset root)"))
        return None
    frames, bad = _frames_or_issue(
        record, {"onset": "Onset", "apex": "Apex", "offset": "Offset"}, base)
    if bad:
        issues.append(bad)
        return None
    return frames


def read_casme3_labels(
    path: str | os.PathLike[str], emotion_map: Mapping[str, str]
) -> tuple[pd.DataFrame, list[Issue]]:
    """Read the CAS(ME)^3 part A spreadsheet (header in row 1:
    Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion).

    Every row is a micro-expression. Frame numbers are the jpg numbers (original numbering).
    Returns (events with :data:`EVENT_COLUMNS`, issues).
    """
    sheet = read_sheet(path, ["Subject", "Filename", "Onset", "Apex", "Offset", "emotion"])
    events: list[dict[str, Any]] = []
    issues: list[Issue] = []
    fname = sheet.path.name
    for row_no, rec in sheet.rows:
        subject_dir = cell_text(rec.get("subject"))
        video = cell_text(rec.get("filename"))
        base = Issue(kind="label", file=fname, row=row_no, subject=subject_dir, video=video)
        if not subject_dir or not video:
            issues.append(_with(base, reason="empty Subject or Filename"))
            continue
        frames = _checked_frames(rec, base, subject_dir, video, issues)
        if frames is None:
            continue
        raw = cell_text(rec.get("emotion")).lower()
        events.append(
            dict(
                subject=fold_id_casme3(subject_dir),
                subject_dir=subject_dir,
                video=video,
                onset=frames["onset"],
                apex=frames["apex"],
                offset=frames["offset"],
                type="micro",
                emotion_raw=raw,
                emotion=emotion_map.get(raw),
                source_file=fname,
                source_row=row_no,
            )
        )
    return _frame(events), issues


SAMM_RELEASE_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "Type"]
SAMM_FACS_COLUMNS = ["Subject", "Filename", "Micro", "Estimated Emotion"]


def samm_video_of(filename: str) -> tuple[str, str] | None:
    """SAMM event Filename '006_1_3' -> (subject '006', video '006_1'); None if malformed."""
    parts = filename.split("_")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], f"{parts[0]}_{parts[1]}"


def is_micro_type(value: str) -> bool:
    """SAMM 'Type': 'Micro - 1/2' (and other 'Micro...') mark a micro-expression."""
    return value.strip().lower().startswith("micro")


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
    Subject codes stay zero-padded strings taken from the Filename ('006_1_3' -> '006').
    """
    release = read_sheet(release_path, SAMM_RELEASE_COLUMNS)
    facs = read_sheet(facs_path, SAMM_FACS_COLUMNS)
    rel_name, facs_name = release.path.name, facs.path.name

    emotions: dict[tuple[str, str], tuple[str, int]] = {}
    issues: list[Issue] = []
    for row_no, rec in facs.rows:
        key = (cell_text(rec.get("filename")), cell_text(rec.get("micro")).lower())
        if key in emotions:
            issues.append(
                Issue(kind="label", file=facs_name, row=row_no, item=key[0],
                      reason=f"duplicate (Filename, Micro) of row {emotions[key][1]}; first kept")
            )
            continue
        emotions[key] = (cell_text(rec.get("estimated emotion")), row_no)

    events: list[dict[str, Any]] = []
    for row_no, rec in release.rows:
        filename = cell_text(rec.get("filename"))
        type_raw = cell_text(rec.get("type"))
        base = Issue(kind="label", file=rel_name, row=row_no, item=filename)
        sv = samm_video_of(filename) if filename else None
        if sv is None:
            issues.append(_with(base, reason=f"Filename {filename!r} is not <subject>_<video>_<n>"))
            continue
        subject, video = sv
        base.subject, base.video = subject, video
        frames = _checked_frames(rec, base, subject, video, issues)
        if frames is None:
            continue
        onset, apex, offset = frames["onset"], frames["apex"], frames["offset"]
        if apex == -1:
            apex = None
            issues.append(_with(base, reason="apex -1: not annotated (apex left empty)",
                                action="kept"))
        if offset == 0:
            if apex is None:
                issues.append(_with(base, reason="offset 0 and apex not annotated: no end frame"))
                continue
            offset = apex
            issues.append(_with(base, reason="offset 0: the apex is used as offset", action="kept"))
        if onset == 0 and drop_onset_zero:
            issues.append(_with(base, reason="onset 0 (dropped as the reference loader does; "
                                             "set dataset.drop_onset_zero: false to keep)"))
            continue
        micro = is_micro_type(type_raw)
        raw_emotion = ""
        emotion: str | None = None
        if micro:
            hit = emotions.get((filename, type_raw.lower()))
            if hit is None:
                issues.append(_with(base, reason=f"no row with Filename {filename!r} and Micro "
                                                 f"{type_raw!r} in {facs_name}: no emotion"))
                continue
            raw_emotion = hit[0].lower()
            emotion = emotion_map.get(raw_emotion)
        events.append(
            dict(
                subject=subject,
                subject_dir=subject,
                video=video,
                onset=onset,
                apex=apex,
                offset=offset,
                type="micro" if micro else "macro",
                emotion_raw=raw_emotion,
                emotion=emotion,
                source_file=rel_name,
                source_row=row_no,
            )
        )
    return _frame(events), issues


def _with(base: Issue, **changes: Any) -> Issue:
    return Issue(**{**base.as_dict(), **changes})


def _frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(events, columns=EVENT_COLUMNS)
    for col in ("onset", "apex", "offset"):
        df[col] = df[col].astype("Int64")
    df["source_row"] = df["source_row"].astype("int64")
    return df
