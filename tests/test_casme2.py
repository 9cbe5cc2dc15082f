"""CAS(ME)^2: its folder layout and headerless label workbook, written by the synthetic
generator in the release's format and read back by the real adapter (vrme/data/layouts/casme2.py);
the strict cell, merge, repeat and identity rules on it. (The whole benchmark on a generated
CAS(ME)^2 dataset runs in test_orchestration.py, with the other Prefect runs.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import PROJECT, write_frames
from vrme.config import config_from_mapping, load_config
from vrme.data.ingest import check_layout, ingest
from vrme.data.layouts.casme2 import EMOTIONS, LABEL_FILE, read_casme2_labels
from vrme.errors import DataError, LabelError
from vrme.synth.generate import generate_dataset
from vrme.synth.spec import SynthSpec

SPEC = SynthSpec(layout="casme2", subjects=3, videos=2, seconds=5, fps=30, width=160,
                 height=120, mes_per_video=1, macros_per_video=1, seed=5, workers=1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_dataset(SPEC, tmp_path_factory.mktemp("casme2") / "ds", progress=False)


@pytest.fixture
def root(generated, tmp_path) -> Path:
    """A copy of the generated dataset that a test may edit."""
    dst = tmp_path / "casme2"
    shutil.copytree(generated.out_dir, dst)
    return dst


def cfg_for(root: Path, out: Path, **dataset):
    return config_from_mapping({
        "dataset": {"name": "c2", "layout": "casme2", "root": str(root), **dataset},
        "features": {"k": 10}, "run": {"out": str(out)}})


def edit_book(path: Path, sheet: str = "CASFEcode_final", cells=None, append=(), merge=(),
              delete_sheet: str | None = None) -> Path:
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    for coord, value in (cells or {}).items():
        ws[coord] = value
    for row in append:
        ws.append(row)
    for rng in merge:
        ws.merge_cells(rng)
    if delete_sheet:
        del wb[delete_sheet]
    wb.save(path)
    return path


def label_rows(path: Path) -> list[list]:
    ws = openpyxl.load_workbook(path)["CASFEcode_final"]
    return [[c.value for c in row] for row in ws.iter_rows()]


def by_row(issues) -> dict[int, list]:
    out: dict[int, list] = {}
    for i in issues:
        out.setdefault(i.row, []).append(i)
    return out


# -- the layout and the workbook as the generator writes them ---------------------------------

def test_folders_and_frame_names(generated):
    rawpic = generated.out_dir / "rawpic"
    assert sorted(p.name for p in rawpic.iterdir()) == ["s15", "s16", "s17"]
    assert sorted(p.name for p in (rawpic / "s15").iterdir()) == [
        "15_0101disgustingteeth", "15_0102eatingworms"]
    n = SPEC.frames_per_video
    names = {p.name for p in (rawpic / "s16" / "16_0102eatingworms").iterdir()}
    assert names == {f"img{i:03d}.jpg" for i in range(1, n + 1)}  # from 1, three digits
    assert {LABEL_FILE, "ground_truth.csv", "synth_spec.json"} <= {
        p.name for p in generated.out_dir.iterdir()}
    assert list(generated.videos["path"])[:2] == ["rawpic/s15/15_0101disgustingteeth",
                                                  "rawpic/s15/15_0102eatingworms"]
    gt = pd.read_csv(generated.ground_truth, dtype=str)
    assert set(gt["subject"]) == {"s15", "s16", "s17"} and set(gt["video"]) == {"15_0101",
                                                                                 "15_0102",
                                                                                 "16_0101",
                                                                                 "16_0102",
                                                                                 "17_0101",
                                                                                 "17_0102"}


def test_workbook_is_the_release_format(generated):
    path = generated.out_dir / LABEL_FILE
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["CASFEcode_final", "naming rule1", "naming rule2"]
    rows = label_rows(path)
    assert len(rows) == len(generated.events)  # every ME and macro-expression, no header row
    for row in rows:
        assert len(row) == 9 and isinstance(row[0], int) and row[0] in (1, 2, 3)
        assert re.fullmatch(r"(disgust1|disgust2)_\d+", row[1])
        assert all(isinstance(v, int) for v in row[2:5]) and row[2] <= row[3] <= row[4]
        assert row[6] in EMOTIONS and row[7] in ("micro-expression", "macro-expression")
    assert {r[7] for r in rows} == {"micro-expression", "macro-expression"}
    rule1 = [[c.value for c in row] for row in wb["naming rule1"].iter_rows()]
    assert rule1 == [[15, "s15", 1], [16, "s16", 2], [17, "s17", 3]]
    rule2 = wb["naming rule2"]
    assert [rule2["A1"].value, rule2["B1"].value] == ["0101", "disgust1"]
    assert rule2["A1"].data_type == "s" and rule2.max_row == 9  # codes as text, nine videos


def test_ingest_reads_the_generated_dataset_back(generated, tmp_path):
    res = ingest(cfg_for(generated.out_dir, tmp_path / "out"))
    assert len(res.skipped) == 0, res.skipped.to_string()
    cols = ["subject", "video", "onset", "apex", "offset", "type"]
    assert res.labels[cols].astype(str).values.tolist() == \
        generated.events[cols].astype(str).values.tolist()
    micro = res.labels["type"] == "micro"
    assert list(res.labels.loc[micro, "emotion"]) == list(
        generated.events.loc[generated.events["type"] == "micro", "emotion"])
    m = res.manifest
    assert list(m["subject"].unique()) == ["s15", "s16", "s17"]
    assert list(m["video"])[:2] == ["15_0101", "15_0102"]
    assert (m["first_frame"] == 1).all() and (m["pad_width"] == 3).all()
    assert (m["name_prefix"] == "img").all() and (m["n_frames"] == SPEC.frames_per_video).all()
    assert (m["fps"] == 30).all()


def test_frame_numbers_past_999_keep_the_pattern(tmp_path):
    root = tmp_path / "c2"
    write_frames(root / "rawpic/s15/15_0101disgustingteeth", range(1, 1003),
                 name=lambda n: f"img{n:03d}.jpg", size=(12, 16))
    (root / "rawpic/s15/15_0101disgustingteeth/Thumbs.db").write_text("x")
    wb = openpyxl.Workbook()
    wb.active.title = "CASFEcode_final"
    wb.active.append([1, "disgust1_1", 997, 999, 1001, "4", "negative", "micro-expression",
                      "disgust"])
    wb.create_sheet("naming rule1").append([15, "s15", 1])
    wb.create_sheet("naming rule2").append(["0101", "disgust1"])
    wb.save(root / LABEL_FILE)
    res = ingest(cfg_for(root, tmp_path / "out"))
    row = res.manifest.iloc[0]
    assert (row.first_frame, row.last_frame, row.n_files, row.pad_width) == (1, 1002, 1002, 3)
    assert list(res.skipped["action"]) == ["ignored"]  # Thumbs.db, named
    assert "Thumbs.db" in res.skipped.iloc[0]["item"]
    assert res.labels.iloc[0][["onset", "apex", "offset"]].tolist() == [997, 999, 1001]


# -- the strict rules, on this workbook -------------------------------------------------------

def test_bad_label_rows_are_refused_naming_the_column(root):
    path = root / LABEL_FILE
    rows = label_rows(path)
    edit_book(path, cells={"A1": 9, "B2": "sadness3_1", "C3": "12a", "H4": "micro",
                           "B5": "disgust1", "D6": 2.5, "G7": None})
    events, issues = read_casme2_labels(path, EMOTIONS)
    got = by_row(issues)
    want = {
        1: ("A", "no row of sheet 'naming rule1' gives subject 9's folder"),
        2: ("B", "no row of sheet 'naming rule2' gives the code of video 'sadness3'"),
        3: ("C", "column 'Onset' is not an integer frame number: '12a' (text)"),
        4: ("H", "column 'Type' is 'micro', neither micro-expression nor macro-expression"),
        5: ("B", "column 'Clip' is 'disgust1', not <video name>_<number>"),
        6: ("D", "column 'Apex' is not an integer frame number: 2.5"),
    }
    for row, (column, reason) in want.items():
        assert len(got[row]) == 1 and got[row][0].column == column, got[row]
        assert reason in got[row][0].reason and got[row][0].action == "skipped"
        assert got[row][0].sheet == "CASFEcode_final" and got[row][0].file == LABEL_FILE
    g7 = rows[6][7] == "micro-expression"  # an empty emotion refuses a micro row only
    assert (7 in got) == g7
    assert set(events["source_row"]) | set(got) == set(range(1, len(rows) + 1))


def test_offset_0_uses_the_apex_and_apex_0_is_not_annotated(root):
    path = root / LABEL_FILE
    rows = label_rows(path)
    edit_book(path, cells={"E1": 0, "D2": 0, "D3": 0, "E3": 0})
    events, issues = read_casme2_labels(path, EMOTIONS)
    ev = {int(r.source_row): r for r in events.itertuples()}
    notes = by_row(issues)
    assert ev[1].offset == ev[1].apex == rows[0][3]
    assert notes[1][0].reason == "offset 0: the apex is used as offset" and \
        notes[1][0].action == "kept"
    assert pd.isna(ev[2].apex) and ev[2].offset == rows[1][4]
    assert notes[2][0].reason == "apex 0: not annotated (apex left empty)"
    assert 3 not in ev and "offset 0 and apex not annotated: no end frame" in \
        [i.reason for i in notes[3]]


def test_repeated_and_contradictory_rows(root):
    path = root / LABEL_FILE
    rows = label_rows(path)
    n = len(rows)
    other = list(rows[1])
    other[3] = other[3] + 1  # same event, another apex
    edit_book(path, append=[rows[0], other])
    events, issues = read_casme2_labels(path, EMOTIONS)
    got = by_row(issues)
    assert got[n + 1][0].reason == "duplicate of row 1"
    assert 2 not in set(events["source_row"]) and n + 2 not in set(events["source_row"])
    assert "contradicts row" in got[2][0].reason and f"in row {n + 2}" in got[2][0].reason
    assert "none of these rows is used" in got[n + 2][0].reason


def test_naming_sheets_are_read_strictly(root):
    path = root / LABEL_FILE
    edit_book(path, sheet="naming rule1", append=[[16, "s16", 1]])  # subject 1: s15 or s16?
    edit_book(path, sheet="naming rule2", cells={"A2": "01x2"})  # disgust2's code unreadable
    events, issues = read_casme2_labels(path, EMOTIONS)
    rule1 = {i.row: i.reason for i in issues if i.sheet == "naming rule1"}
    # row 4 gives subject 1 a second folder, and folder s16 a second subject: rows 1, 2, 4
    assert set(rule1) == {1, 2, 4}
    assert "subject number 1 is given folders 's15' in row 1, 's16' in row 4" in rule1[1]
    assert "folder 's16' is given subject numbers 2 in row 2, 1 in row 4" in rule1[2]
    rule2 = [i for i in issues if i.sheet == "naming rule2"]
    assert [(i.row, i.column) for i in rule2] == [(2, "A")]
    assert "'01x2', not a video code" in rule2[0].reason
    assert set(events["subject"]) == {"s17"}  # subjects 1 and 2: which folder is unknown
    assert not (events["video"].str.endswith("_0102")).any()
    refused = [i for i in issues if i.sheet == "CASFEcode_final"]
    assert any("sheet 'naming rule1': subject number 1 is given folders" in i.reason
               for i in refused)
    assert any("its row 2 in sheet 'naming rule2' was skipped" in i.reason for i in refused)


def test_merged_cells(root):
    path = root / LABEL_FILE
    rows = label_rows(path)
    assert rows[0][0] == rows[1][0]  # rows 1 and 2: the same subject
    edit_book(path, merge=["A1:A2", "C3:C4"])
    events, issues = read_casme2_labels(path, EMOTIONS)
    got = by_row(issues)
    assert {1, 2} <= set(events["source_row"])  # Subject merged down: read as meant
    assert "'Subject' is one cell merged over rows 1-2" in got[1][0].reason
    assert got[1][0].action == "kept"
    for row in (3, 4):  # a frame column merged: refused
        assert "the cells C3:C4 are merged" in got[row][0].reason


def test_unreadable_workbook_and_missing_layout(root, tmp_path):
    path = root / LABEL_FILE
    edit_book(path, delete_sheet="naming rule2")
    with pytest.raises(LabelError, match=r"no sheet 'naming rule2' \(sheets: 'CASFEcode_final', "
                                         r"'naming rule1'\)"):
        ingest(cfg_for(root, tmp_path / "out"))
    path.unlink()
    with pytest.raises(LabelError, match="label spreadsheet not found"):
        check_layout(cfg_for(root, tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"not a CAS\(ME\)\^2 root \(no rawpic/ folder\)"):
        check_layout(cfg_for(tmp_path / "empty", tmp_path / "out"))


def test_folder_identity(root, tmp_path):
    """A folder in the wrong subject folder, two folders for one video, folders that are not
    subjects or videos: each is left out with its reason, and so are the labels of those
    videos, saying why."""
    rawpic = root / "rawpic"
    (rawpic / "s16/16_0102eatingworms").rename(rawpic / "s16/23_0102eatingworms")
    shutil.copytree(rawpic / "s17/17_0101disgustingteeth", rawpic / "s17/17_0101copy")
    (rawpic / "notes").mkdir()
    (rawpic / "s15/extra").mkdir()
    res = ingest(cfg_for(root, tmp_path / "out"))
    sk = res.skipped
    videos = set(zip(res.manifest["subject"], res.manifest["video"]))
    assert ("s16", "16_0102") not in videos and ("s17", "17_0101") not in videos
    assert ("s15", "15_0101") in videos
    moved = sk[sk["item"] == "rawpic/s16/23_0102eatingworms"].iloc[0]
    assert moved["kind"] == "video" and moved["video"] == "16_0102"
    assert "its name gives subject number 23 but it is in subject folder s16" in moved["reason"]
    label = sk[(sk["kind"] == "label") & (sk["video"] == "16_0102")]
    assert len(label) and label["reason"].str.contains(
        "video rawpic/s16/16_0102\\* is on disk but was left out: its name gives subject "
        "number 23").all()
    twins = sk[sk["reason"].str.contains("2 folders are video 17_0101 of s17")]
    assert set(twins.loc[twins["kind"] == "video", "item"]) == {
        "rawpic/s17/17_0101copy", "rawpic/s17/17_0101disgustingteeth"}
    assert (twins.loc[twins["kind"] == "label", "reason"].str.startswith(
        "video rawpic/s17/17_0101* is on disk but was left out")).all()
    assert sk[sk["item"] == "rawpic/notes"]["reason"].str.contains("not a subject folder").all()
    assert sk[sk["item"] == "rawpic/s15/extra"]["reason"].str.contains(
        "not a video folder").all()
    label_rows_seen = set(res.labels["source_row"]) | set(sk.loc[sk["kind"] == "label", "row"])
    assert label_rows_seen == set(range(1, len(label_rows(root / LABEL_FILE)) + 1))


# -- config and command line ------------------------------------------------------------------

def test_config_defaults_and_the_shipped_config():
    cfg = config_from_mapping({"dataset": {"name": "c", "layout": "casme2"},
                               "features": {"k": 10}})
    ds = cfg.dataset
    assert (ds.fps, ds.frame_skip, ds.label_files) == (30, 1, [LABEL_FILE])
    assert ds.emotion_map == {c: c for c in ("negative", "positive", "surprise", "others")}
    shipped = load_config(PROJECT / "configs" / "casme2.yaml")
    assert (shipped.dataset.layout, shipped.dataset.fps, shipped.dataset.frame_skip,
            shipped.features.k) == ("casme2", 30, 1, 50)
    assert shipped.dataset.label_files == [LABEL_FILE] and shipped.paper == {}


def test_cli_synth_casme2(tmp_path):
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, [
        "synth", "--layout", "casme2", "--out", str(out), "--subjects", "1", "--videos", "1",
        "--seconds", "2", "--width", "160", "--height", "120", "--mes", "1", "--macros", "0"])
    assert result.exit_code == 0, result.output
    assert "not labelled" not in result.output  # CAS(ME)^2 labels macro-expressions
    assert len(list((out / "rawpic/s15/15_0101disgustingteeth").glob("img*.jpg"))) == 60
    assert (out / LABEL_FILE).is_file()
