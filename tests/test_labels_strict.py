"""Label spreadsheets read strictly: every cell is read as the sheet says or its row is refused,
naming file, sheet, Excel row and column. One test per class of problem, each with inputs the
issue did not list (docs/reliability.md, section 2)."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from tests.helpers import FIXTURES, layout_config, write_frames
from vrme.config import DEFAULT_EMOTION_MAPS
from vrme.data.ingest import ingest
from vrme.data.layouts.casme3 import read_casme3_labels
from vrme.data.layouts.samm_lv import read_samm_labels
from vrme.errors import DataError, LabelError

CASME = DEFAULT_EMOTION_MAPS["casme3"]
SAMM = DEFAULT_EMOTION_MAPS["samm_lv"]
HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


def casme3_sheet(tmp_path: Path, edit=None, name="casme3_label.xlsx") -> Path:
    """The mock CAS(ME)^3 spreadsheet (20 rows, header in row 1), edited by ``edit(wb)``."""
    p = tmp_path / name
    shutil.copy(FIXTURES / "labels/casme3_label.xlsx", p)
    if edit is not None:
        wb = openpyxl.load_workbook(p)
        edit(wb)
        wb.save(p)
    return p


def by_row(issues):
    out = {}
    for i in issues:
        out.setdefault(i.row, []).append(i)
    return out


def one(issues, row):
    found = by_row(issues).get(row, [])
    assert len(found) == 1, (row, found)
    return found[0]


# -- the file itself ---------------------------------------------------------------------------


def _zip(path: Path, names: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for n, data in names.items():
            z.writestr(n, data)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_bytes(b""), "an empty file (0 bytes), not an .xlsx workbook"),
    (lambda p: p.write_text("Subject,Filename,Onset\nspNO.1,a,1\n"),
     "a text file (CSV?) named like a workbook, first line 'Subject,Filename,Onset'"),
    (lambda p: p.write_text("\ufeffSubject\tFilename\n", encoding="utf-8"), "a text file"),
    (lambda p: p.write_bytes("Subject;Filename\nRen\u00e9;a1\n".encode("latin-1")),
     "a text file (CSV?) named like a workbook, first line 'Subject;Filename'"),
    (lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512),
     "an Excel 97-2003 (.xls) file or a password-protected workbook"),
    (lambda p: _zip(p, {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                        "content.xml": b"<x/>"}), "an OpenDocument spreadsheet (.ods)"),
    (lambda p: _zip(p, {"readme.txt": b"hello"}), "a zip archive but not an Excel workbook"),
    (lambda p: p.write_bytes((FIXTURES / "labels/casme3_label.xlsx").read_bytes()[:3000]),
     "a damaged .xlsx file (its zip archive is truncated or corrupt"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
     "not an .xlsx workbook (neither a zip archive nor text)"),
    (lambda p: p.mkdir(), "is a folder, not an .xlsx file"),
])
def test_a_file_that_is_not_an_xlsx_workbook_says_what_it_is(tmp_path, make, needle):
    p = tmp_path / "casme3_label.xlsx"
    make(p)
    with pytest.raises(LabelError) as exc:
        read_casme3_labels(p, CASME)
    assert needle in str(exc.value) and str(p) in str(exc.value)


# -- the header and the sheets -----------------------------------------------------------------


@pytest.mark.parametrize("col, title", [(9, "Onset"), (9, " onset "), (10, "EMOTION"),
                                        (9, "Filename"), (9, "Subject\u00a0")])
def test_a_read_column_named_twice_is_refused(tmp_path, col, title):
    p = casme3_sheet(tmp_path, lambda wb: wb.worksheets[0].cell(1, col, title))
    with pytest.raises(LabelError) as exc:
        read_casme3_labels(p, CASME)
    letter = "I" if col == 9 else "J"
    msg = str(exc.value)
    assert "sheet 'label', row 1: the header" in msg and f"and {letter}" in msg, msg


def test_an_unread_column_named_twice_is_fine(tmp_path):
    p = casme3_sheet(tmp_path, lambda wb: wb.worksheets[0].cell(1, 9, "AU"))
    events, issues = read_casme3_labels(p, CASME)
    assert len(events) == 20 and issues == []


def test_header_names_are_read_whatever_their_case_and_spaces(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws.cell(1, 1, "  SUBJECT")
        ws.cell(1, 3, "on\nset".replace("\n", " ").replace(" ", "") + " ")  # 'onset '
        ws.cell(1, 8, "Emotion")
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert len(events) == 20 and issues == []


def test_labels_on_another_sheet_are_read_with_a_note(tmp_path):
    def edit(wb):
        wb.create_sheet("README", 0).append(["These are the labels of part A."])
        wb.create_sheet("notes")
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert len(events) == 20
    note = one(issues, 1)
    assert note.action == "kept" and note.sheet == "label"
    assert "labels read from sheet 'label': the first sheet 'README' has no header" in note.reason


def test_two_sheets_with_a_label_table_are_refused(tmp_path):
    def edit(wb):
        copy = wb.copy_worksheet(wb.worksheets[0])
        copy.title = "label (old)"
    with pytest.raises(LabelError, match=r"several sheets hold a label table .*'label' \(row 1\), "
                                         r"'label \(old\)' \(row 1\)"):
        read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)


def test_no_header_anywhere_lists_the_sheets(tmp_path):
    def edit(wb):
        wb.worksheets[0].delete_rows(1)
        wb.create_sheet("Sheet2")
    with pytest.raises(LabelError) as exc:
        read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert "no header row found: no sheet ('label', 'Sheet2') has a row with the columns" in str(
        exc.value)


def test_missing_column_names_the_closest_sheet(tmp_path):
    def edit(wb):
        wb.worksheets[0].cell(1, 4, "Apex frame")
        wb.create_sheet("other").append(["Subject", "x"])
    with pytest.raises(LabelError) as exc:
        read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert ("column 'Apex' missing from the header in row 1 of sheet 'label' (the closest "
            "match; sheets: 'label', 'other')") in str(exc.value)


def test_a_repeated_header_row(tmp_path):
    def same(wb):
        wb.worksheets[0].insert_rows(8)
        for j, v in enumerate(HEADER, 1):
            wb.worksheets[0].cell(8, j, v)
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, same), CASME)
    assert len(events) == 20 and "repeats the header row 1" in one(issues, 8).reason

    def other_order(wb):
        wb.worksheets[0].insert_rows(8)
        for j, v in enumerate(["Subject", "Filename", "Offset", "Apex", "Onset", "AU", "x",
                               "emotion"], 1):
            wb.worksheets[0].cell(8, j, v)
    with pytest.raises(LabelError, match=r"row 8 repeats the header with the columns in another "
                                         r"order \('Onset' is not in column C"):
        read_casme3_labels(casme3_sheet(tmp_path, other_order, "b.xlsx"), CASME)


# -- cells -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell, value, column, needle", [
    ("C2", "abc", "C", "column 'Onset' is not an integer frame number: 'abc' (text)"),
    ("C2", "1,5", "C", "not an integer frame number: '1,5' (text)"),
    ("C2", "1e3", "C", "not an integer frame number: '1e3' (text)"),
    ("D2", 5.5, "D", "column 'Apex' is not an integer frame number: 5.5"),
    ("E2", True, "E", "column 'Offset' is TRUE (a true/false cell)"),
    ("C2", dt.datetime(2021, 3, 4), "C", "column 'Onset' is a date or time (2021-03-04"),
    ("C2", dt.time(0, 0, 5), "C", "is a date or time"),
    ("C2", -4, "C", "column 'Onset' is negative (-4), not a frame number"),
    ("D2", "-1", "D", "column 'Apex' is negative (-1)"),  # -1 means something only in SAMM
    ("E2", 2**31, "E", "column 'Offset' is 2147483648, out of range"),
    ("E2", 1e19, "E", "column 'Offset' is 1e+19, out of range"),
    ("E2", "99999999999999999999999", "E", "out of range"),
    ("C2", "=B7+1", "C", "column 'Onset' holds the formula '=B7+1' with no saved value"),
    ("C2", "#N/A", "C", "column 'Onset' holds the Excel error #N/A"),
    ("A2", True, "A", "column 'Subject' is TRUE"),
    ("B2", dt.date(2020, 1, 1), "B", "column 'Filename' is a date or time"),
    ("A2", "=UPPER(B2)", "A", "holds the formula '=UPPER(B2)' with no saved value"),
    ("A2", None, "A", "column 'Subject' is empty"),
    ("H2", None, "H", "column 'emotion' is empty"),
    ("H2", False, "H", "column 'emotion' is FALSE"),
    ("A2", "..", "A", "is not a plain folder name"),
])
def test_a_cell_of_the_wrong_kind_skips_its_row_naming_the_cell(tmp_path, cell, value, column,
                                                                 needle):
    def edit(wb):
        ws = wb.worksheets[0]
        ws[cell] = value
        if value == "#N/A":
            ws[cell].data_type = "e"
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    issue = one(issues, 2)
    assert needle in issue.reason, issue.reason
    assert (issue.file, issue.sheet, issue.column, issue.action) == (
        "casme3_label.xlsx", "label", column, "skipped")
    assert 2 not in set(events["source_row"]) and len(events) == 19


def test_every_bad_cell_of_a_row_is_named(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws["C3"], ws["E3"], ws["H3"] = "x", 7.25, None
    _, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    issue = one(issues, 3)
    assert issue.column == "C, E, H"
    assert "'Onset'" in issue.reason and "'Offset'" in issue.reason and "'emotion'" in issue.reason


def test_values_that_are_unambiguous_are_read_as_written(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws["C2"], ws["D2"], ws["E2"] = "1", 5.0, " 15 "  # digits as text, a whole float
        ws["H2"] = "  Happy "
        ws["A3"] = " dzw "
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert issues == []
    first = events.set_index("source_row").loc[2]
    assert (first.onset, first.apex, first.offset, first.emotion_raw) == (1, 5, 15, "happy")
    assert events.set_index("source_row").loc[3].subject_dir == "dzw"


# -- merged and hidden cells -------------------------------------------------------------------


def test_a_name_merged_down_its_rows_is_read_as_meant_with_a_note(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        for r in range(3, 7):
            ws.cell(r, 1).value = None
        ws.merge_cells("A2:A6")  # Subject 'dzw' over rows 2-6
        ws["H13"] = None
        ws.merge_cells("H12:H13")  # emotion 'disgust' over rows 12-13
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert len(events) == 20
    rows = events.set_index("source_row")
    assert set(rows.loc[2:6, "subject_dir"]) == {"dzw"} and rows.loc[13, "emotion_raw"] == "disgust"
    note = one(issues, 2)
    assert note.action == "kept" and note.column == "A" and note.item == "A2:A6"
    assert "'Subject' is one cell merged over rows 2-6: its value 'dzw' is read" in note.reason
    assert one(issues, 12).item == "H12:H13"


@pytest.mark.parametrize("rng, rows", [("C4:C6", [4, 5, 6]),   # a frame column merged down
                                       ("C8:E8", [8]),         # frame cells merged across
                                       ("A9:B9", [9]),         # Subject and Filename merged
                                       ("G10:H11", [10, 11])])  # a block reaching 'emotion'
def test_any_other_merge_over_a_read_cell_skips_those_rows(tmp_path, rng, rows):
    events, issues = read_casme3_labels(
        casme3_sheet(tmp_path, lambda wb: wb.worksheets[0].merge_cells(rng)), CASME)
    for r in rows:
        assert f"the cells {rng} are merged: unmerge them" in one(issues, r).reason
    assert not set(rows) & set(events["source_row"]) and len(events) == 20 - len(rows)


def test_a_merge_in_an_unread_column_changes_nothing(tmp_path):
    events, issues = read_casme3_labels(
        casme3_sheet(tmp_path, lambda wb: wb.worksheets[0].merge_cells("F2:G9")), CASME)
    assert len(events) == 20 and issues == []


def test_hidden_rows_are_read_with_a_note(tmp_path):
    def edit(wb):
        wb.worksheets[0].row_dimensions[5].hidden = True
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert len(events) == 20 and "hidden" in one(issues, 5).reason


def test_a_row_with_only_unread_columns_filled_is_listed(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws.append([None, None, None, None, None, "4+7", "II", None])
    _, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert "no label in this row (only au, objective class filled)" in one(issues, 22).reason


# -- repeats and contradictions ----------------------------------------------------------------


def test_the_same_event_described_differently_is_refused_in_every_row(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws.append(["dzw", "a1", 1, 5, 15, "5", "II", "disgust"])   # row 22: emotion differs from 2
        ws.append(["gcf", "d1", 1, 6, 15, "5", "VII", "surprise"])  # row 23: apex differs from 8
        ws.append(["gcf", "d1", 1, 5, 15, "5", "VII", "surprise"])  # row 24: same as row 8
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    kept = set(events["source_row"])
    assert not kept & {2, 22, 8, 23, 24}
    assert "contradicts row 22: the same event (subject 'dzw', video 'a1', onset 1, offset 15) "\
           "with emotion 'happy' here, 'disgust' in row 22" in one(issues, 2).reason
    assert "none of these rows is used" in one(issues, 22).reason
    assert "contradicts rows 23, 24" in one(issues, 8).reason
    assert "apex 5 here, 6 in row 23" in one(issues, 8).reason


def test_an_exact_repeat_keeps_the_first_row(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        ws.append(["dzw", "a1", 1, 5, 15, "4", "I", "Happy "])  # AU differs (not read)
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    assert 2 in set(events["source_row"]) and one(issues, 22).reason == "duplicate of row 2"


# -- SAMM-LV -----------------------------------------------------------------------------------


def samm_sheets(tmp_path, edit_rel=None, edit_facs=None):
    rel, facs = tmp_path / "rel.xlsx", tmp_path / "facs.xlsx"
    shutil.copy(FIXTURES / "labels/SAMM_LongVideos_V3_Release.xlsx", rel)
    shutil.copy(FIXTURES / "labels/SAMM_Micro_FACS_Codes_v2.xlsx", facs)
    for p, edit in ((rel, edit_rel), (facs, edit_facs)):
        if edit is not None:
            wb = openpyxl.load_workbook(p)
            edit(wb.worksheets[0])
            wb.save(p)
    return rel, facs


def test_samm_preamble_merges_are_not_data(tmp_path):
    rel, facs = samm_sheets(tmp_path)  # the release sheet has a merged cell in its preamble
    events, issues = read_samm_labels(rel, facs, SAMM)
    assert len(events) == 10 and issues == []


@pytest.mark.parametrize("edit, needle", [
    ({"B11": "001_2"}, "'Filename' '001_2' is not <subject>_<video>_<event>"),
    ({"B11": "001_2_1_b"}, "is not <subject>_<video>_<event>"),
    ({"A11": "004"}, "'Subject' is '004' but 'Filename' '001_2_1' belongs to subject '001'"),
    ({"H11": "Mikro"}, "'Type' 'Mikro' is neither Micro nor Macro"),
    ({"H11": None}, "column 'Type' is empty"),
    ({"E11": -2}, "column 'Apex' is negative (-2)"),
    ({"D11": -1}, "column 'Onset' is negative (-1)"),  # -1 is special for the apex only
])
def test_samm_rows_that_do_not_say_one_thing(tmp_path, edit, needle):
    def apply(ws):
        for k, v in edit.items():
            ws[k] = v
    events, issues = read_samm_labels(*samm_sheets(tmp_path, apply), SAMM)
    assert needle in one(issues, 11).reason and 11 not in set(events["source_row"])


def test_samm_subject_written_without_its_zeros_agrees(tmp_path):
    def apply(ws):
        ws["A11"] = 1
    events, issues = read_samm_labels(*samm_sheets(tmp_path, apply), SAMM)
    assert 11 in set(events["source_row"]) and issues == []


def test_samm_emotions_that_contradict_each_other_give_no_emotion(tmp_path):
    def facs(ws):
        ws.append(["001", "001_2_1", 1, 1, 10, 100, 99, "Micro - 1/2", "4+7", "Anger", 1, None])
    events, issues = read_samm_labels(*samm_sheets(tmp_path, None, facs), SAMM)
    assert 11 not in set(events["source_row"])
    rel_issue = [i for i in issues if i.file == "rel.xlsx" and i.row == 11][0]
    assert "contradictory emotions for Filename '001_2_1'" in rel_issue.reason
    assert "'Happiness' in row 15, 'Anger' in row 25" in rel_issue.reason
    facs_rows = {i.row: i.reason for i in issues if i.file == "facs.xlsx"}
    assert "contradiction" in facs_rows[15] and "contradiction" in facs_rows[25]


def test_samm_same_event_id_with_other_frames_is_a_contradiction(tmp_path):
    def rel(ws):
        ws.append(["001", "001_2_1", 1, 2, 12, 120, 99, "Micro - 1/2", "4+7", None])
    events, issues = read_samm_labels(*samm_sheets(tmp_path, rel), SAMM)
    assert not {11, 21} & set(events["source_row"])
    assert "the same event (Filename '001_2_1', Type 'micro - 1/2') with onset 1 here, 2 in row " \
           "21" in one([i for i in issues if i.file == "rel.xlsx"], 11).reason


def test_samm_facs_rows_that_match_no_event_are_listed(tmp_path):
    def facs(ws):
        ws.append(["009", "009_1_1", 1, 1, 10, 100, 99, "Micro - 1/2", "4+7", "Fear", 1, None])
    _, issues = read_samm_labels(*samm_sheets(tmp_path, None, facs), SAMM)
    assert "not used: no micro-expression row of rel.xlsx with this Filename and Type was read" \
        in one(issues, 25).reason


# -- identity: label rows against folders ------------------------------------------------------


def test_a_subject_or_video_that_differs_from_its_folder_is_not_matched(tiny_casme3, tmp_path):
    wb = openpyxl.load_workbook(tiny_casme3 / "casme3_label.xlsx")
    ws = wb.worksheets[0]
    ws["A2"] = "sub.dzw"     # another prefix (the issue's 'sub.1' against 'spNO.1')
    ws["A3"] = "DZW"         # another case
    ws["B7"] = "a01"         # another spelling of the video
    wb.save(tiny_casme3 / "casme3_label.xlsx")
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    sk = res.skipped[res.skipped["kind"] == "label"].set_index("row")
    assert sk.loc[2, "reason"].endswith("no folder data/sub.dzw/a1; nearest: data/dzw/a1")
    assert "no folder data/DZW/d1; nearest: data/dzw/d1 (names are compared exactly, case " \
           "included)" in sk.loc[3, "reason"]
    assert "no folder data/gcf/a01; nearest: data/gcf/a1" in sk.loc[7, "reason"]
    assert not {2, 3, 7} & set(res.labels["source_row"])
    assert "nearest" not in sk.loc[4, "reason"] or "data/dzw/" in sk.loc[4, "reason"]


def test_subject_folders_giving_the_same_subject_id_are_refused(tiny_casme3, tmp_path):
    write_frames(tiny_casme3 / "data" / "sp.dzw" / "a1" / "color", range(30))
    with pytest.raises(DataError, match=r"subject folders 'dzw' and 'sp.dzw' both give subject id "
                                        r"'dzw'"):
        ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))


def test_a_label_of_a_video_left_out_says_why(tiny_casme3, tmp_path):
    (tiny_casme3 / "data/gcf/a1/color/0.jpg").write_bytes(b"not a jpeg")
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    row = res.skipped[(res.skipped["kind"] == "label") & (res.skipped["row"] == 7)].iloc[0]
    assert "video data/gcf/a1 is on disk but was left out: first frame is not a decodable" in \
        row["reason"]


def test_samm_label_matches_its_folder_exactly(tiny_samm, tmp_path):
    (tiny_samm / "SAMM_longvideos" / "002_1").rename(tiny_samm / "SAMM_longvideos" / "2_1")
    for f in (tiny_samm / "SAMM_longvideos" / "2_1").iterdir():
        f.rename(f.with_name(f.name.replace("002_1_", "2_1_")))
    res = ingest(layout_config("samm_lv", tiny_samm, tmp_path / "out"))
    row = res.skipped[(res.skipped["kind"] == "label") & (res.skipped["row"] == 13)].iloc[0]
    assert "no folder SAMM_longvideos/002_1; nearest: SAMM_longvideos/2_1" in row["reason"]
    assert set(res.manifest["video"]) == {"001_2"}


def test_skipped_csv_names_file_sheet_row_and_column(tiny_casme3, tmp_path):
    wb = openpyxl.load_workbook(tiny_casme3 / "casme3_label.xlsx")
    wb.worksheets[0]["D2"] = "five"
    wb.save(tiny_casme3 / "casme3_label.xlsx")
    ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    sk = pd.read_csv(tmp_path / "out/ingest/skipped.csv", dtype={"row": "Int64"})
    assert list(sk.columns) == ["kind", "file", "sheet", "row", "column", "subject", "video",
                                "item", "reason", "action"]
    row = sk[sk["row"] == 2].iloc[0]
    assert (row.file, row.sheet, row.column, row.action) == ("casme3_label.xlsx", "label", "D",
                                                             "skipped")
    assert "column 'Apex' is not an integer frame number: 'five'" in row.reason


def test_a_merged_name_cell_with_nothing_in_it_is_refused(tmp_path):
    def edit(wb):
        ws = wb.worksheets[0]
        for r in range(4, 7):
            ws.cell(r, 1).value = None
        ws.merge_cells("A4:A6")
    events, issues = read_casme3_labels(casme3_sheet(tmp_path, edit), CASME)
    for r in (4, 5, 6):
        assert "the cells A4:A6 are merged" in one(issues, r).reason
    assert not {4, 5, 6} & set(events["source_row"])
