"""Property test: random perturbations of a valid label spreadsheet (cells blanked, rows
duplicated or contradicted, cells retyped, rows and columns shifted, cells merged, rows hidden,
columns renamed or repeated, the table moved to another sheet), written by openpyxl and read by
the real adapters through ``ingest``, end in one of two ways only:

- a clear refusal: a :class:`~vrme.errors.UserError` whose one-line message names the file; or
- labels in which every kept row equals what the sheet says in its cells (read here with
  openpyxl, by the documented rules), no two kept rows contradict each other, and every other
  row of the sheet is in ``skipped.csv`` (file and Excel row).

The perturbations are drawn by a seeded generator, so every case is reproducible from its seed.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from tests.helpers import FIXTURES, write_frames
from vrme.config import config_from_mapping
from vrme.data.ingest import ingest
from vrme.data.labels import normalize_header
from vrme.errors import UserError

CASES = 70
EMOTIONS = ["happy", "disgust", "fear", "anger", "sad", "surprise", "others"]


# -- valid base sheets -------------------------------------------------------------------------


def casme3_root(tmp_path: Path) -> tuple[Path, Path, int]:
    """A CAS(ME)^3 root: 3 subjects x 2 videos of 60 frames, a spreadsheet in the real format
    (the fixture's header) with 3 events per video, all valid and distinct."""
    root = tmp_path / "casme3"
    rng = random.Random(0)
    rows = []
    for s in ("dzw", "gcf", "smy"):
        for v in ("a1", "d1"):
            write_frames(root / "data" / s / v / "color", range(60))
            for k in range(3):
                on = 2 + 18 * k + rng.randrange(3)
                rows.append([s, v, on, on + 3, on + 9, "4+7", "II", rng.choice(EMOTIONS)])
    label = root / "casme3_label.xlsx"
    shutil.copy(FIXTURES / "labels/casme3_label.xlsx", label)
    wb = openpyxl.load_workbook(label)
    ws = wb.worksheets[0]
    ws.delete_rows(2, ws.max_row)
    for r in rows:
        ws.append(r)
    wb.save(label)
    return root, label, 1


def samm_root(tmp_path: Path) -> tuple[Path, Path, int]:
    """A SAMM-LV root: 3 videos of frames 1..120, the two spreadsheets in the real formats
    (preamble, header in row 10 / 14), micro- and macro-expressions, emotions in the FACS
    sheet."""
    root = tmp_path / "samm"
    rel, facs = root / "SAMM_LongVideos_V3_Release.xlsx", root / "SAMM_Micro_FACS_Codes_v2.xlsx"
    (root / "SAMM_longvideos").mkdir(parents=True)
    shutil.copy(FIXTURES / "labels" / rel.name, rel)
    shutil.copy(FIXTURES / "labels" / facs.name, facs)
    wr, wf = openpyxl.load_workbook(rel), openpyxl.load_workbook(facs)
    sr, sf = wr.worksheets[0], wf.worksheets[0]
    sr.delete_rows(11, sr.max_row)
    sf.delete_rows(15, sf.max_row)
    emotions = ["Happiness", "Anger", "Surprise", "Other", "Fear"]
    for vi, video in enumerate(("001_2", "001_3", "002_1")):
        write_frames(root / "SAMM_longvideos" / video, range(1, 121),
                     name=lambda n, v=video: f"{v}_{n:04d}.jpg")
        for k in range(3):
            on = 3 + 35 * k + vi
            name = f"{video}_{k + 1}"
            kind = "Macro" if k == 2 else "Micro - 1/2"
            sr.append([video[:3], name, 1, on, on + 5, on + 12, 12, kind, "4+7", None])
            if kind != "Macro":
                sf.append([video[:3], name, 1, on, on + 5, on + 12, 12, kind, "4+7",
                           emotions[(vi + k) % len(emotions)], 1, None])
    wr.save(rel)
    wf.save(facs)
    return root, rel, 10


# -- perturbations -----------------------------------------------------------------------------


def _data_rows(ws, header_row: int) -> list[int]:
    return list(range(header_row + 1, ws.max_row + 1))


def _retyped(rng: random.Random, value: Any) -> Any:
    if isinstance(value, int):
        return rng.choice([str(value), f" {value} ", float(value), value + 0.5, -value, True,
                           dt.datetime(2020, 1, 1 + value % 27), 2**40, 1e30, f"{value}a",
                           "=A1+1", -1, 0])
    return rng.choice([7, 3.5, False, dt.date(2021, 5, 6), f"  {value}  ", str(value).upper(),
                       "", "=B2", f"{value}.x"])


def put(ws, r: int, c: int, value: Any) -> None:
    """Write a cell, unless an earlier merge covers it (openpyxl refuses that write)."""
    from openpyxl.cell.cell import MergedCell

    if not isinstance(ws.cell(r, c), MergedCell):
        ws.cell(r, c).value = value


def perturb(ws, header_row: int, rng: random.Random) -> list[str]:
    """Apply 1-3 random perturbations to the table; return what was done (for the message)."""
    done = []
    width = 8 if header_row == 1 else 10
    for _ in range(rng.randint(1, 3)):
        rows = _data_rows(ws, header_row)
        r, c = rng.choice(rows), rng.randint(1, width)
        op = rng.choice(["blank", "duplicate", "contradict", "retype", "retype", "shift_row",
                         "shift_col", "merge_down", "merge_across", "rename", "repeat_col",
                         "hide", "swap"])
        if op == "blank":
            put(ws, r, c, None)
        elif op in ("duplicate", "contradict"):
            values = [ws.cell(r, j).value for j in range(1, width + 1)]
            at = rng.choice(rows + [ws.max_row + 1])
            ws.insert_rows(at)
            for j, v in enumerate(values, 1):
                put(ws, at, j, v)
            if op == "contradict":
                j = rng.choice([4] if header_row == 10 else [4, 8])
                old = values[j - 1]
                put(ws, at, j, old + 1 if isinstance(old, int) else
                    "fear" if old != "fear" else "happy")
        elif op == "retype":
            put(ws, r, c, _retyped(rng, ws.cell(r, c).value))
        elif op == "shift_row":
            values = [ws.cell(r, j).value for j in range(1, width + 1)]
            for j in range(1, width + 1):
                put(ws, r, j, values[j - 2] if j > 1 else None)
        elif op == "shift_col":
            for rr in range(ws.max_row, r - 1, -1):
                put(ws, rr + 1, c, ws.cell(rr, c).value)
            put(ws, r, c, None)
        elif op == "merge_down":
            end = min(r + rng.randint(1, 3), ws.max_row)
            if end > r:
                if rng.random() < 0.5:  # a Subject written once over its rows
                    for rr in range(r + 1, end + 1):
                        put(ws, rr, 1, ws.cell(r, 1).value)
                    c = 1
                ws.merge_cells(start_row=r, start_column=c, end_row=end, end_column=c)
        elif op == "merge_across":
            ws.merge_cells(start_row=r, start_column=c, end_row=r,
                           end_column=min(c + rng.randint(1, 2), width))
        elif op == "rename":
            old = ws.cell(header_row, c).value
            put(ws, header_row, c, rng.choice([str(old).upper(), f" {old} ", f"{old}2", "Frame"]))
        elif op == "repeat_col":
            put(ws, header_row, width + 2, ws.cell(header_row, c).value)
            for rr in rows:
                put(ws, rr, width + 2, ws.cell(rr, c).value)
        elif op == "hide":
            ws.row_dimensions[r].hidden = True
        elif op == "swap":  # two cells of a row exchanged (onset/offset, subject/filename, ...)
            c2 = rng.randint(1, width)
            a, b = ws.cell(r, c).value, ws.cell(r, c2).value
            put(ws, r, c, b)
            put(ws, r, c2, a)
            op = f"swap {c2}"
        done.append(f"{op} r{r} c{c}")
    return done



# -- the oracle: what the sheet says -----------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, (bool, dt.date, dt.datetime, dt.time)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value).strip()


def sheet_view(path: Path, header_row: int):
    """(cells(row, name) -> value as the sheet shows it, data rows, merged ranges) of the sheet
    holding the table; a merged cell shows its range's first value."""
    wb = openpyxl.load_workbook(path, data_only=True)
    ws = next(w for w in wb.worksheets if any(
        normalize_header(c.value) == "filename" for c in w[header_row]))
    cols: dict[str, int] = {}
    for c in ws[header_row]:
        cols.setdefault(normalize_header(c.value), c.column)
    merged = list(ws.merged_cells.ranges)

    def cell(r: int, name: str) -> Any:
        j = cols[name]
        for m in merged:
            if m.min_row <= r <= m.max_row and m.min_col <= j <= m.max_col:
                return ws.cell(m.min_row, m.min_col).value
        return ws.cell(r, j).value

    def merge_of(r: int, name: str) -> str | None:
        """The merged range a read cell lies in, when its value is not simply its own."""
        j = cols[name]
        for m in merged:
            if m.min_row <= r <= m.max_row and m.min_col <= j <= m.max_col and not (
                    m.min_row == m.max_row and j == m.min_col):
                return m.coord
        return None

    cell.merge_of = merge_of  # type: ignore[attr-defined]

    rows = [r for r in range(header_row + 1, ws.max_row + 1)
            if any(c.value is not None and str(c.value).strip() for c in ws[r])
            or any(m.min_row <= r <= m.max_row for m in merged)]
    return cell, rows, ws.title


def check_kept_rows(layout: str, label: Path, header_row: int, res) -> None:
    cell, rows, _ = sheet_view(label, header_row)
    sk = res.skipped
    mine = sk[(sk["kind"] == "label") & (sk["file"] == label.name)]
    kept = res.labels[res.labels["source_file"] == label.name]
    listed = set(mine["row"].dropna().astype(int))
    kept_rows = set(kept["source_row"].astype(int))
    missing = [r for r in rows if r not in kept_rows | listed]
    assert not missing, f"rows neither kept nor in skipped.csv: {missing}"
    refused = set(mine.loc[mine["action"] == "skipped", "row"].dropna().astype(int))
    assert not kept_rows & refused, f"rows kept and skipped: {kept_rows & refused}"
    assert not kept.duplicated(["subject", "video", "onset", "offset"]).any()
    for e in kept.itertuples(index=False):
        r = int(e.source_row)
        if layout == "casme3":
            assert _text(cell(r, "subject")) == e.subject, (r, cell(r, "subject"), e)
            assert _text(cell(r, "filename")) == e.video, (r, e)
            assert _int(cell(r, "onset")) == e.onset and _int(cell(r, "offset")) == e.offset
            assert _int(cell(r, "apex")) == e.apex, (r, e)
            assert _text(cell(r, "emotion")).lower() == e.emotion_raw, (r, e)
        else:
            name = _text(cell(r, "filename"))
            assert name.count("_") == 2 and name.rsplit("_", 1)[0] == e.video, (r, name, e)
            subject = _text(cell(r, "subject"))
            assert subject in (None, "") or int(subject) == int(e.subject), (r, subject, e)
            apex = _int(cell(r, "apex"))
            assert (pd.isna(e.apex) and apex == -1) or apex == e.apex, (r, apex, e)
            offset = _int(cell(r, "offset"))
            assert offset == e.offset or (offset == 0 and e.offset == e.apex), (r, offset, e)
            assert _int(cell(r, "onset")) == e.onset and e.onset > 0, (r, e)
            kind = _text(cell(r, "type")).lower()
            assert e.type == ("micro" if kind.startswith("micro") else "macro"), (r, kind, e)
        notes = set(mine.loc[mine["action"] == "kept", "item"].dropna())
        names = (["subject", "filename", "onset", "apex", "offset", "emotion"] if layout ==
                 "casme3" else ["subject", "filename", "onset", "apex", "offset", "type"])
        for name in names:
            rng = cell.merge_of(r, name)  # type: ignore[attr-defined]
            assert rng is None or rng in notes, f"row {r} read through merge {rng}, no note"


@pytest.mark.parametrize("layout", ["casme3", "samm_lv"])
def test_perturbed_spreadsheets_are_read_as_written_or_refused(tmp_path, layout):
    base_root, base_label, header_row = (casme3_root if layout == "casme3" else samm_root)(
        tmp_path / "base")
    outcomes = {"refused": 0, "read": 0, "kept_rows": 0, "listed_rows": 0}
    pristine = tmp_path / "pristine.xlsx"
    shutil.copy(base_label, pristine)
    root, label = base_root, base_label
    for seed in range(CASES):
        rng = random.Random(seed)
        wb = openpyxl.load_workbook(pristine)
        ws = wb.worksheets[0]
        done = perturb(ws, header_row, rng)
        if rng.random() < 0.1:  # the table on a second sheet, behind a notes sheet
            wb.create_sheet("notes", 0).append(["read me first"])
            done.append("second sheet")
        wb.save(label)
        cfg = config_from_mapping({
            "dataset": {"name": "p", "layout": layout, "root": str(root),
                        "fps": 200 if layout == "samm_lv" else 30,
                        "frame_skip": 7 if layout == "samm_lv" else 1},
            "features": {"k": 10}, "run": {"out": str(tmp_path / f"out{seed}")}})
        try:
            res = ingest(cfg)
        except UserError as exc:
            msg = str(exc)
            assert label.name in msg and "\n" not in msg, (seed, done, msg)
            outcomes["refused"] += 1
        else:
            try:
                check_kept_rows(layout, label, header_row, res)
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, perturbations {done}: {exc}") from None
            outcomes["read"] += 1
            outcomes["kept_rows"] += len(res.labels)
            outcomes["listed_rows"] += int((res.skipped["kind"] == "label").sum())
        shutil.rmtree(tmp_path / f"out{seed}", ignore_errors=True)
    # the generator reaches both outcomes, and reading keeps most untouched rows
    assert outcomes["refused"] >= 3 and outcomes["read"] >= CASES // 2, outcomes
    assert outcomes["kept_rows"] >= outcomes["read"] * 3, outcomes
    print(layout, outcomes)
