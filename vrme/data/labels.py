"""Reading label spreadsheets strictly, as DATASETS.md describes: the rules every layout's reader
(``vrme/data/layouts/``) shares.

Every cell is read unambiguously or its row is refused with the reason. Readers return the events
they could read and a list of :class:`Issue` records (the lines of ``skipped.csv``) for every row
they left out or kept with a note, naming file, sheet, Excel row and column. A spreadsheet that
cannot be read at all raises :class:`~vrme.errors.LabelError` naming the file (and the sheet,
row and column where it applies): a missing, empty or non-xlsx file, no sheet with the header
row, two sheets with one, a read column named twice in the header, a second header row that
orders the columns differently.

The rules, per class of problem (docs/DATASETS.md lists them for users):

- **Kind of value.** A frame number is a whole number: an integer cell, a number cell with no
  fraction, or a text cell of digits only. Text, fractions, true/false, dates, Excel errors
  (``#N/A``), negative numbers (except SAMM's apex -1, "not annotated") and numbers beyond
  :data:`vrme.data.frames.MAX_FRAME_NUMBER` are refused. Names (Subject, Filename, Type, emotion)
  are text or whole numbers written as digits; true/false, dates and errors are refused.
- **Formulas.** A formula cell is read through the value the spreadsheet program saved with it;
  one with no saved value (a file written by a program that does not compute formulas) is
  refused, naming the formula.
- **Merged cells.** A name column (Subject; CAS(ME)^3 Filename and emotion; SAMM Type and
  Estimated Emotion) merged down over several rows is read as meant: its value for each row,
  with one note per merged range. Any other merge that covers a read cell (a frame column, or
  cells merged across columns) makes those rows refused.
- **Sheets.** The labels are the one sheet whose first 50 rows hold the header row; if that is
  not the first sheet, a note says so. No such sheet, or several, is an error listing the
  sheets. A data row that repeats the header is skipped if its columns are in the same order,
  an error otherwise. Hidden rows are read like the others, with a note. A table without a
  header row (CAS(ME)^2) is read from a sheet named by the layout, its columns by letter
  (:func:`read_sheets_without_header`); a missing sheet is an error listing the sheets.
- **Repeats.** Rows describing the same event (same subject, video, onset and offset; for SAMM
  also the same Filename and Type, for CAS(ME)^2 the same subject, clip name and type) identically: the first is kept, the others are skipped as
  duplicates. Described differently (another emotion, apex or type): a contradiction, every
  one of those rows is skipped naming the others, none is used.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.errors import LabelError
from vrme.data.frames import MAX_FRAME_NUMBER

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
    "source_sheet",
    "source_row",
]

HEADER_SEARCH_ROWS = 50
"""The header row is looked for in the first this many rows of each sheet."""


@dataclass
class Issue:
    """One line of ``skipped.csv``: an item left out (or kept with a note) and why."""

    kind: str  # label | video | frames
    file: str = ""
    sheet: str = ""
    row: int | None = None  # 1-based spreadsheet row as Excel shows it
    column: str = ""  # spreadsheet column letter(s), e.g. "C" or "C, E"
    subject: str = ""
    video: str = ""
    item: str = ""
    reason: str = ""
    action: str = "skipped"  # skipped | kept | filled | ignored

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_changes(base: Issue, **changes: Any) -> Issue:
    """A copy of ``base`` with some fields changed."""
    return Issue(**{**base.as_dict(), **changes})


_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


def safe_name(value: str) -> bool:
    """True if ``value`` can only name an entry inside a folder (no separators, no '..')."""
    return bool(_SAFE_NAME.match(value)) and value not in (".", "..") and not value.startswith("~")


def fold_id_casme3(subject: str) -> str:
    """CAS(ME)^3 fold id: the part after the last dot ('spNO.1' -> '1')."""
    return subject.rsplit(".", 1)[-1]


def normalize_header(value: Any) -> str:
    """A header cell as a column key: text with runs of white space (non-breaking spaces and
    line breaks included) made one space, trimmed, case folded; '' for anything else."""
    if not isinstance(value, str):
        return ""
    return " ".join(value.split()).casefold()


# -- the workbook file ------------------------------------------------------------------------


def check_workbook_file(path: Path) -> None:
    """Refuse, with what the file is instead, anything that is not an .xlsx workbook: a missing
    file or a folder, an empty file, a CSV or other text file renamed .xlsx, an old .xls or a
    password-protected workbook, an OpenDocument spreadsheet, another zip archive, a truncated
    zip."""
    if path.is_dir():
        raise LabelError(f"label spreadsheet {path} is a folder, not an .xlsx file")
    if not path.is_file():
        raise LabelError(f"label spreadsheet not found: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise LabelError(f"{path}: an empty file (0 bytes), not an .xlsx workbook")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                mimetype = z.read("mimetype")[:80] if "mimetype" in names else b""
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise LabelError(f"{path}: a damaged .xlsx file (its zip archive is truncated or "
                             f"corrupt: {exc}); save it again from the spreadsheet program"
                             ) from None
        if "xl/workbook.xml" not in names:
            if mimetype.startswith(b"application/vnd.oasis.opendocument"):
                raise LabelError(f"{path}: an OpenDocument spreadsheet (.ods), not an .xlsx "
                                 "workbook: save it as .xlsx")
            raise LabelError(f"{path}: a zip archive but not an Excel workbook (no "
                             "xl/workbook.xml inside)")
        return
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise LabelError(f"{path}: an Excel 97-2003 (.xls) file or a password-protected "
                         "workbook, not an .xlsx workbook: save it, without a password, as .xlsx")
    text = head.decode("utf-8-sig", errors="replace")  # the 4 KiB may end inside a character
    is_text = "\x00" not in text and text.count("\ufffd") <= max(1, len(text) // 100)
    first = text.splitlines()[0] if text.strip() else ""
    if is_text:
        raise LabelError(f"{path}: a text file (CSV?) named like a workbook, first line "
                         f"{first[:60]!r}: open it in a spreadsheet program and save it as .xlsx")
    raise LabelError(f"{path}: not an .xlsx workbook (neither a zip archive nor text)")


# -- cells ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One read cell: its saved value, its coordinate, the formula it holds (if any) and the
    merged range covering it (``merged``; ``filled`` when its value was taken from the range's
    first cell because the column may be filled down)."""

    value: Any
    coord: str
    error: bool = False  # an Excel error value such as #N/A
    formula: str | None = None
    merged: str | None = None
    filled: bool = False

    @property
    def column(self) -> str:
        return re.sub(r"\d+", "", self.coord)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _kind_problem(cell: Cell, name: str) -> str | None:
    """What makes a cell unreadable whatever its column (error, formula without value,
    a merge that cannot be read as meant), or None."""
    if cell.merged and not cell.filled:
        return f"the cells {cell.merged} are merged: unmerge them and write a value in each cell"
    if cell.error:
        return f"column '{name}' holds the Excel error {cell.value}"
    if _is_blank(cell.value) and cell.formula:
        return (f"column '{name}' holds the formula {cell.formula!r} with no saved value (the "
                "file was written by a program that does not compute formulas): open and save it "
                "in a spreadsheet program, or type the value")
    if isinstance(cell.value, bool):
        return f"column '{name}' is {str(cell.value).upper()} (a true/false cell)"
    if isinstance(cell.value, (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)):
        return (f"column '{name}' is a date or time ({cell.value}): the cell is formatted as a "
                "date; format the column as Number or Text")
    return None


def cell_text(cell: Cell, name: str) -> tuple[str, str | None]:
    """A name cell as text (whole numbers as their digits, spaces around trimmed) and the
    problem that prevents reading it, if any."""
    problem = _kind_problem(cell, name)
    if problem:
        return "", problem
    v = cell.value
    if v is None:
        return "", None
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "", f"column '{name}' is {v}, not a name"
        if v.is_integer():
            return str(int(v)), None
    return str(v).strip(), None


_DIGITS = re.compile(r"^-?\d+$")


def cell_frame(cell: Cell, name: str,
               allowed_negative: Sequence[int] = ()) -> tuple[int | None, str | None]:
    """A frame-number cell as int, or the problem: empty, not whole, of the wrong kind, out of
    range, negative (unless in ``allowed_negative``, e.g. SAMM's apex -1)."""
    problem = _kind_problem(cell, name)
    if problem:
        return None, problem
    v = cell.value
    if _is_blank(v):
        return None, f"column '{name}' is empty"
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")) or not v.is_integer():
            return None, f"column '{name}' is not an integer frame number: {v!r}"
        if abs(v) > MAX_FRAME_NUMBER:
            return None, (f"column '{name}' is {v:.6g}, out of range (frame numbers go up to "
                          f"{MAX_FRAME_NUMBER:,})")
        n = int(v)
    elif isinstance(v, str):
        text = v.strip()
        if not _DIGITS.match(text):
            return None, f"column '{name}' is not an integer frame number: {v!r} (text)"
        if len(text.lstrip("-")) > 12:
            return None, f"column '{name}' is {text}, out of range (frame numbers go up to " \
                         f"{MAX_FRAME_NUMBER:,})"
        n = int(text)
    else:
        return None, f"column '{name}' is {v!r} ({type(v).__name__}), not a frame number"
    if n > MAX_FRAME_NUMBER:
        return None, (f"column '{name}' is {n}, out of range (frame numbers go up to "
                      f"{MAX_FRAME_NUMBER:,})")
    if n < 0 and n not in allowed_negative:
        return None, f"column '{name}' is negative ({n}), not a frame number"
    return n, None


# -- sheets -----------------------------------------------------------------------------------


@dataclass
class Sheet:
    """The label table of a spreadsheet: its sheet, header row, the read columns and the data
    rows below the header (1-based Excel row numbers), and notes about the sheet itself."""

    path: Path
    name: str
    header_row: int
    columns: dict[str, int]  # column key (normalized header) -> 1-based column index
    titles: dict[str, str]  # column key -> the header as written
    rows: list[tuple[int, dict[str, Cell]]]
    notes: list[Issue] = field(default_factory=list)

    def letter(self, key: str) -> str:
        from openpyxl.utils import get_column_letter

        return get_column_letter(self.columns[key])


def _find_header(rows: Sequence[Sequence[Any]], want: set[str]) -> tuple[int | None, int, int]:
    """(header row number or None, best partial row, how many wanted names it has)."""
    best_row, best_n = 0, -1
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS], start=1):
        names = {normalize_header(v) for v in row}
        n = len(want & names)
        if n == len(want):
            return i, i, n
        if n > best_n:
            best_row, best_n = i, n
    return None, best_row, best_n


def _sheet_list(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _open_workbook(path: Path) -> tuple[Any, Any]:
    """The workbook twice: with the values saved with formulas, and with the formulas."""
    import openpyxl

    check_workbook_file(path)
    try:
        wb = openpyxl.load_workbook(path, data_only=True)
        wbf = openpyxl.load_workbook(path, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds for a corrupt file
        raise LabelError(f"{path}: cannot read spreadsheet ({type(exc).__name__}: {exc})") from None
    return wb, wbf


def read_sheet(path: str | os.PathLike[str], required: Iterable[str],
               fillable: Iterable[str] = ()) -> Sheet:
    """Read the label table of a spreadsheet: find the sheet and header row holding every
    ``required`` column (names compared after :func:`normalize_header`), and the ``required``
    cells of every row below it. ``fillable`` columns may be merged down over rows (read as
    meant, noted). See the module docstring for every rule. Raises :class:`LabelError`."""
    from openpyxl.utils import get_column_letter

    path = Path(path)
    required = list(required)
    keys = [normalize_header(c) for c in required]
    want = set(keys)
    wb, wbf = _open_workbook(path)

    found: list[tuple[Any, int]] = []
    partial: list[tuple[str, int, int]] = []
    for ws in wb.worksheets:
        top = [[c.value for c in row] for row in ws.iter_rows(max_row=HEADER_SEARCH_ROWS)]
        hdr, best, n = _find_header(top, want)
        if hdr is not None:
            found.append((ws, hdr))
        else:
            partial.append((ws.title, best, n))
    titles = [ws.title for ws in wb.worksheets]
    if not found:
        name, best, n = max(partial, key=lambda p: p[2]) if partial else ("", 0, 0)
        if n <= 0:
            raise LabelError(
                f"{path}: no header row found: no sheet ({_sheet_list(titles)}) has a row with "
                f"the columns {', '.join(required)} in its first {HEADER_SEARCH_ROWS} rows")
        ws = wb[name]
        header_names = {normalize_header(c.value) for c in ws[best]}
        missing = [c for c, k in zip(required, keys) if k not in header_names]
        sheets = f" of sheet {name!r}" + (
            f" (the closest match; sheets: {_sheet_list(titles)})" if len(titles) > 1 else "")
        raise LabelError(
            f"{path}: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} missing from the header in row {best}{sheets}")
    if len(found) > 1:
        where = ", ".join(f"{ws.title!r} (row {r})" for ws, r in found)
        raise LabelError(f"{path}: several sheets hold a label table with the columns "
                         f"{', '.join(required)}: {where}; keep one sheet, or put all rows on one")
    ws, header_row = found[0]
    notes: list[Issue] = []
    if ws is not wb.worksheets[0]:
        notes.append(Issue(kind="label", file=path.name, sheet=ws.title, row=header_row,
                           reason=f"labels read from sheet {ws.title!r}: the first sheet "
                                  f"{titles[0]!r} has no header row with "
                                  f"{', '.join(required)}", action="kept"))

    header_cells = list(ws[header_row])
    positions: dict[str, list[int]] = {}
    for c in header_cells:
        k = normalize_header(c.value)
        if k in want:
            positions.setdefault(k, []).append(c.column)
    for req, k in zip(required, keys):
        if len(positions[k]) > 1:
            letters = " and ".join(get_column_letter(i) for i in positions[k])
            raise LabelError(f"{path}: sheet {ws.title!r}, row {header_row}: the header {req!r} "
                             f"appears in columns {letters}; rename or delete all but one")
    columns = {k: positions[k][0] for k in keys}
    col_titles = {k: str(ws.cell(header_row, columns[k]).value).strip() for k in keys}
    try:
        return _read_rows(path, ws, wbf[ws.title], header_row, columns, col_titles,
                          fillable, notes)
    finally:
        wb.close()
        wbf.close()


def read_sheets_without_header(
    path: str | os.PathLike[str],
    tables: Sequence[tuple[str, Sequence[tuple[str, str]], Iterable[str]]],
) -> list[Sheet]:
    """Read tables that have no header row, every row of them being data: for each
    ``(sheet name, [(column letter, title), ...], fillable titles)`` the named sheet (names
    compared after :func:`normalize_header`) and the given columns of all its rows. Titles
    name the columns in messages (``skipped.csv`` also gives the letter). Every cell rule of
    :func:`read_sheet` applies. Raises :class:`LabelError` when a sheet is missing."""
    from openpyxl.utils import column_index_from_string

    path = Path(path)
    wb, wbf = _open_workbook(path)
    try:
        out = []
        titles = [ws.title for ws in wb.worksheets]
        for name, cols, fillable in tables:
            hits = [ws for ws in wb.worksheets
                    if normalize_header(ws.title) == normalize_header(name)]
            if not hits:
                raise LabelError(f"{path}: no sheet {name!r} (sheets: {_sheet_list(titles)})")
            ws = hits[0]
            columns = {normalize_header(t): column_index_from_string(letter) for letter, t in cols}
            col_titles = {normalize_header(t): t for _, t in cols}
            out.append(_read_rows(path, ws, wbf[ws.title], 0, columns, col_titles, fillable, []))
        return out
    finally:
        wb.close()
        wbf.close()


def _read_rows(path: Path, ws: Any, wsf: Any, header_row: int, columns: dict[str, int],
               col_titles: dict[str, str], fillable: Iterable[str],
               notes: list[Issue]) -> Sheet:
    """The data rows below ``header_row`` (0: no header) of ``ws`` (``wsf``: the same sheet
    with its formulas): the ``columns`` cells of each, with merged cells, formulas, repeated
    headers, empty and hidden rows handled as the module docstring says."""
    from openpyxl.utils import get_column_letter

    fname = path.name
    fill = {normalize_header(c) for c in fillable}
    want = set(columns)
    by_index = {i: k for k, i in columns.items()}

    # Merged ranges that reach a read cell below the header.
    merged: dict[tuple[int, int], tuple[str, bool]] = {}
    for rng in ws.merged_cells.ranges:
        if rng.max_row <= header_row:
            continue
        cols = [i for i in range(rng.min_col, rng.max_col + 1) if i in by_index]
        if not cols or (rng.min_row == rng.max_row and cols == [rng.min_col]):
            continue  # no read cell, or one read cell holding the value (the rest unread)
        text = rng.coord
        top_value = ws.cell(rng.min_row, rng.min_col).value
        can_fill = (rng.min_col == rng.max_col and rng.min_row > header_row
                    and by_index[rng.min_col] in fill and not _is_blank(top_value))
        for r in range(max(rng.min_row, header_row + 1), rng.max_row + 1):
            for i in cols:
                merged[(r, i)] = (text, can_fill)
        if can_fill:
            k = by_index[rng.min_col]
            notes.append(Issue(
                kind="label", file=fname, sheet=ws.title, row=rng.min_row,
                column=get_column_letter(rng.min_col), item=text,
                reason=f"'{col_titles[k]}' is one cell merged over rows {rng.min_row}-"
                       f"{rng.max_row}: its value {top_value!r} is read for each of these rows",
                action="kept"))

    rows: list[tuple[int, dict[str, Cell]]] = []
    header_keys = ([normalize_header(c.value) for c in ws[header_row]] if header_row
                   else [""] * ws.max_column)
    for row in ws.iter_rows(min_row=header_row + 1):
        if not row:
            continue
        r = row[0].row
        values = [c.value for c in row]
        if all(_is_blank(v) for v in values) and not any((r, i) in merged for i in by_index):
            continue
        names = [normalize_header(v) for v in values]
        if header_row and want <= set(names):
            same = all(i - 1 < len(names) and names[i - 1] == k for k, i in columns.items())
            if not same:
                moved = next(k for k, i in columns.items()
                             if i - 1 >= len(names) or names[i - 1] != k)
                raise LabelError(
                    f"{path}: sheet {ws.title!r}, row {r} repeats the header with the columns "
                    f"in another order ({col_titles[moved]!r} is not in column "
                    f"{get_column_letter(columns[moved])} as in row {header_row}): put the "
                    "rows under one header, or the columns in the same order")
            notes.append(Issue(kind="label", file=fname, sheet=ws.title, row=r,
                               reason=f"repeats the header row {header_row} (not a label row)"))
            continue
        cells: dict[str, Cell] = {}
        for k, i in columns.items():
            c = ws.cell(r, i)
            value = c.value
            m = merged.get((r, i))
            filled = False
            if m is not None and m[1]:
                first = ws[m[0].split(":")[0]]
                value, filled = first.value, True
            formula = None
            if _is_blank(value):
                fv = wsf.cell(r, i).value
                if fv is not None and not isinstance(fv, str):
                    formula = str(getattr(fv, "text", fv))
                elif isinstance(fv, str) and fv.startswith("="):
                    formula = fv
            cells[k] = Cell(value=value, coord=f"{get_column_letter(i)}{r}",
                            error=c.data_type == "e", formula=formula,
                            merged=m[0] if m else None, filled=filled)
        if all(_is_blank(cell.value) and not cell.formula and not cell.merged
               for cell in cells.values()):
            others = [header_keys[j] or get_column_letter(j + 1) for j, v in enumerate(values)
                      if not _is_blank(v) and j < len(header_keys)]
            others_t = ", ".join(others) or "columns without a header"
            notes.append(Issue(kind="label", file=fname, sheet=ws.title, row=r,
                               reason=f"no label in this row (only {others_t} filled)"))
            continue
        if ws.row_dimensions[r].hidden:
            notes.append(Issue(kind="label", file=fname, sheet=ws.title, row=r,
                               reason="the row is hidden in the spreadsheet; it is read like "
                                      "any other row", action="kept"))
        rows.append((r, cells))
    return Sheet(path=path, name=ws.title, header_row=header_row, columns=columns,
                 titles=col_titles, rows=rows, notes=notes)


class Row:
    """Reads the cells of one row, collecting every problem (column letter, reason)."""

    def __init__(self, sheet: Sheet, cells: Mapping[str, Cell]):
        self.sheet, self.cells = sheet, cells
        self.problems: list[tuple[str, str]] = []

    def _cell(self, key: str) -> Cell:
        return self.cells[key]

    def _add(self, cell: Cell, problem: str) -> None:
        if (cell.column, problem) not in self.problems and not (
                cell.merged and any(p == problem for _, p in self.problems)):
            self.problems.append((cell.column, problem))

    def text(self, key: str, *, required: bool = True) -> str:
        cell = self._cell(key)
        text, problem = cell_text(cell, self.sheet.titles[key])
        if problem is None and required and not text:
            problem = f"column '{self.sheet.titles[key]}' is empty"
        if problem:
            self._add(cell, problem)
        return text

    def name(self, key: str) -> str:
        """A text cell naming a folder: a plain name (no path separator, not '..')."""
        text = self.text(key)
        if text and not safe_name(text):
            self.problems.append((self._cell(key).column,
                                  f"column '{self.sheet.titles[key]}': {text!r} is not a plain "
                                  "folder name (refused: it could point outside the dataset "
                                  "root)"))
        return text

    def frame(self, key: str, allowed_negative: Sequence[int] = ()) -> int | None:
        cell = self._cell(key)
        n, problem = cell_frame(cell, self.sheet.titles[key], allowed_negative)
        if problem:
            self._add(cell, problem)
        return n

    def problem(self, key: str, reason: str) -> None:
        self.problems.append((self._cell(key).column, reason))

    def issue(self, base: Issue) -> Issue:
        cols = list(dict.fromkeys(c for c, _ in self.problems))
        merged = {c.column for c in self.cells.values() if c.merged and not c.filled}
        cols += [c for c in sorted(merged) if c not in cols]
        return with_changes(base, column=", ".join(cols),
                            reason="; ".join(dict.fromkeys(p for _, p in self.problems)))


# -- repeated and contradictory rows ----------------------------------------------------------


def _rows_text(rows: Sequence[int]) -> str:
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(str(r) for r in rows)


def drop_repeats(events: list[dict[str, Any]], key_sets: Sequence[tuple[Sequence[str],
                                                                        Sequence[str]]],
                 describe: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[Issue]]:
    """Rows that describe the same event: for each (key columns, description columns) pair,
    rows with equal keys are one event. All described alike: the first row is kept, the others
    are skipped as "duplicate of row N". Described differently: a contradiction, every row of
    the event is skipped naming the others and what differs, none is used."""
    contradicted: dict[int, str] = {}
    duplicate: dict[int, int] = {}
    for key_cols, desc_cols in key_sets:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, e in enumerate(events):
            groups.setdefault(tuple(e[c] for c in key_cols), []).append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            descs = [tuple(events[i][c] for c in desc_cols) for i in members]
            if len(set(descs)) == 1:
                for i in members[1:]:
                    duplicate.setdefault(i, events[members[0]]["source_row"])
                continue
            for i in members:
                e = events[i]
                others = [j for j in members if j != i]
                differs = next(j for j in others
                               if tuple(events[j][c] for c in desc_cols) != descs[members.index(i)])
                what = [f"{describe.get(c, c)} {_show(e[c])} here, {_show(events[differs][c])} "
                        f"in row {events[differs]['source_row']}"
                        for c in desc_cols if e[c] != events[differs][c]]
                key_text = ", ".join(f"{describe.get(c, c)} {_show(e[c])}" for c in key_cols)
                contradicted.setdefault(i, (
                    f"contradicts {_rows_text([events[j]['source_row'] for j in others])}: the "
                    f"same event ({key_text}) with {'; '.join(what)}; none of these rows is "
                    "used"))
    kept: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for i, e in enumerate(events):
        base = Issue(kind="label", file=e["source_file"], sheet=e.get("source_sheet", ""),
                     row=e["source_row"], subject=e["subject_dir"], video=e["video"],
                     item=f"{e['onset']}-{e['offset']}")
        if i in contradicted:
            issues.append(with_changes(base, reason=contradicted[i]))
        elif i in duplicate:
            issues.append(with_changes(base, reason=f"duplicate of row {duplicate[i]}"))
        else:
            kept.append(e)
    return kept, issues


def _show(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


DESCRIBE = {"subject_dir": "subject", "video": "video", "onset": "onset", "offset": "offset",
            "apex": "apex", "emotion_raw": "emotion", "type": "type", "event_id": "Filename",
            "type_raw": "Type"}
"""How :func:`drop_repeats` names the event columns in its reasons."""


def unannotated_frames(base: Issue, apex: int | None, offset: int | None, missing_apex: int
                       ) -> tuple[int | None, int | None, list[Issue]]:
    """The special frame values of SAMM-LV and CAS(ME)^2: an apex of ``missing_apex`` (-1,
    0) is "not annotated" (apex left empty, noted); an offset of 0 means "use the apex"
    (noted), and with no apex the row has no end frame (offset None: refused). Returns (apex,
    offset, the notes)."""
    notes: list[Issue] = []
    if apex == missing_apex:
        apex = None
        notes.append(with_changes(base, reason=f"apex {missing_apex}: not annotated (apex left "
                                               "empty)", action="kept"))
    if offset == 0:
        if apex is None:
            notes.append(with_changes(base, reason="offset 0 and apex not annotated: no end "
                                                   "frame"))
            return apex, None, notes
        offset = apex
        notes.append(with_changes(base, reason="offset 0: the apex is used as offset",
                                  action="kept"))
    return apex, offset, notes


def events_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """The event table (:data:`EVENT_COLUMNS`) of a reader's events."""
    df = pd.DataFrame(events, columns=EVENT_COLUMNS)
    for col in ("onset", "apex", "offset"):
        df[col] = df[col].astype("Int64")
    df["source_row"] = df["source_row"].astype("int64")
    return df
