"""Ingestion of real-format spreadsheets and folder layouts into manifest/labels/skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import layout_config, write_frames
from vrme.config import DEFAULT_EMOTION_MAPS
from vrme.data.ingest import ingest
from vrme.data.layouts.casme3 import read_casme3_labels
from vrme.data.layouts.samm_lv import read_samm_labels
from vrme.errors import DataError, LabelError
from vrme.schema import LABELS_SCHEMA, MANIFEST_SCHEMA, read_labels, read_manifest


def edit_sheet(path: Path, edits: dict[tuple[int, int], object], delete_col: int | None = None):
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    for (r, c), v in edits.items():
        ws.cell(row=r, column=c, value=v)
    if delete_col:
        ws.delete_cols(delete_col)
    wb.save(path)


# -- spreadsheets ---------------------------------------------------------------------------

def test_mock_casme3_spreadsheet(fixtures):
    events, issues = read_casme3_labels(fixtures / "labels/casme3_label.xlsx",
                                        DEFAULT_EMOTION_MAPS["casme3"])
    assert len(events) == 20 and issues == []
    first = events.iloc[0]
    assert (first.subject, first.video, first.onset, first.apex,
            first.offset) == ("dzw", "a1", 1, 5, 15)
    assert first.emotion_raw == "happy" and first.emotion == "positive"
    assert first.source_row == 2
    assert set(events["emotion"]) == {"positive", "negative", "surprise"}


def test_mock_samm_spreadsheets_join(fixtures):
    events, issues = read_samm_labels(fixtures / "labels/SAMM_LongVideos_V3_Release.xlsx",
                                      fixtures / "labels/SAMM_Micro_FACS_Codes_v2.xlsx",
                                      DEFAULT_EMOTION_MAPS["samm_lv"])
    assert len(events) == 10 and issues == []
    assert list(events["subject"].unique()[:2]) == ["001", "002"]  # zero padding kept
    assert events.iloc[0].video == "001_2" and events.iloc[0].source_row == 11  # header in row 10
    assert (events["emotion"] == "positive").all() and (events["type"] == "micro").all()


def test_missing_column_names_column_and_file(tmp_path, fixtures):
    p = tmp_path / "casme3_label.xlsx"
    shutil.copy(fixtures / "labels/casme3_label.xlsx", p)
    edit_sheet(p, {}, delete_col=5)  # Offset
    with pytest.raises(LabelError) as exc:
        read_casme3_labels(p, DEFAULT_EMOTION_MAPS["casme3"])
    assert "'Offset'" in str(exc.value) and str(p) in str(exc.value)


def test_samm_special_values(tmp_path, fixtures):
    rel = tmp_path / "rel.xlsx"
    facs = tmp_path / "facs.xlsx"
    shutil.copy(fixtures / "labels/SAMM_LongVideos_V3_Release.xlsx", rel)
    shutil.copy(fixtures / "labels/SAMM_Micro_FACS_Codes_v2.xlsx", facs)
    # row 11: apex -1; row 12: offset 0 -> apex; row 13: onset 0; row 14: text onset;
    # row 15: macro-expression; row 16: micro without FACS row
    edit_sheet(rel, {(11, 5): -1, (12, 6): 0, (13, 4): 0, (14, 4): "abc", (15, 8): "Macro",
                     (16, 2): "003_9_1"})
    events, issues = read_samm_labels(rel, facs, DEFAULT_EMOTION_MAPS["samm_lv"])
    by_row = {int(r.source_row): r for r in events.itertuples()}
    assert pd.isna(by_row[11].apex)
    assert by_row[12].offset == by_row[12].apex == 10
    assert 13 not in by_row and 14 not in by_row and 16 not in by_row
    assert by_row[15].type == "macro" and pd.isna(by_row[15].emotion)
    reasons = {i.row: i for i in issues}
    assert reasons[11].action == "kept" and "not annotated" in reasons[11].reason
    assert "onset 0" in reasons[13].reason
    assert "'Onset'" in reasons[14].reason and "abc" in reasons[14].reason
    assert "no emotion" in reasons[16].reason


# -- whole ingestion ------------------------------------------------------------------------

def test_ingest_casme3_layout(tiny_casme3, tmp_path):
    root = tiny_casme3
    # a gap in gcf/d1 (frames 10-12 missing), an unknown emotion, a duplicate row, onset>offset
    for n in (10, 11, 12):
        (root / "data/gcf/d1/color" / f"{n}.jpg").unlink()
    edit_sheet(root / "casme3_label.xlsx",
               {(3, 8): "contempt",  # dzw/d1 -> unknown for CAS(ME)^3
                (7, 3): 20, (7, 5): 3})  # gcf/a1 onset 20 > offset 3
    wb = openpyxl.load_workbook(root / "casme3_label.xlsx")
    ws = wb.worksheets[0]
    ws.append(list(next(ws.iter_rows(min_row=2, max_row=2, values_only=True))))  # dup of row 2
    wb.save(root / "casme3_label.xlsx")
    cfg = layout_config("casme3", root, tmp_path / "out")
    res = ingest(cfg)

    manifest = read_manifest(tmp_path / "out/ingest/manifest.parquet")
    labels = read_labels(tmp_path / "out/ingest/labels.parquet")
    skipped = pd.read_csv(tmp_path / "out/ingest/skipped.csv")
    assert pq.read_schema(tmp_path / "out/ingest/manifest.parquet").names == MANIFEST_SCHEMA.names
    assert pq.read_schema(tmp_path / "out/ingest/labels.parquet").types == LABELS_SCHEMA.types
    # dzw/a1 and gcf/d1 keep a usable label; dzw/d1 (unknown emotion) and gcf/a1 (bad order) don't
    assert set(zip(manifest.subject, manifest.video)) == {("dzw", "a1"), ("gcf", "d1")}
    row = manifest.set_index(["subject", "video"]).loc[("gcf", "d1")]
    assert row.n_frames == 30 and row.n_files == 27 and list(row.missing_frames) == [10, 11, 12]
    assert row.frame_numbering == "gaps" and row.first_frame == 0 and row.pad_width == 0
    assert len(labels) == 2 and set(labels["emotion"]) <= {"positive", "surprise"}

    reasons = " | ".join(skipped["reason"])
    assert "frame gap" in reasons and "unknown emotion 'contempt'" in reasons
    assert "onset 20 > offset 3" in reasons and "duplicate of row 2" in reasons
    assert "video folder missing" in reasons  # e.g. dzw/f3 has no frames on disk
    gap = skipped[skipped["reason"] == "frame gap"].iloc[0]
    assert gap["video"] == "d1" and "10-12" in gap["item"]
    dup = skipped[skipped["reason"].str.startswith("duplicate")].iloc[0]
    assert dup["row"] == 22 and dup["file"] == "casme3_label.xlsx"
    # every spreadsheet row is accounted for: kept, or listed in skipped.csv
    label_rows = set(labels["source_row"]) | set(skipped.loc[skipped["kind"] == "label", "row"])
    assert label_rows == set(range(2, 23))
    s = res.summary()
    assert s["videos"] == 2 and s["frames"] == 60


def test_ingest_gap_skip_video_policy(tiny_casme3, tmp_path):
    (tiny_casme3 / "data/gcf/d1/color/5.jpg").unlink()
    cfg = layout_config("casme3", tiny_casme3, tmp_path / "out", on_frame_gap="skip_video")
    res = ingest(cfg)
    assert ("gcf", "d1") not in set(zip(res.manifest.subject, res.manifest.video))
    gap = res.skipped[res.skipped["reason"] == "frame gap"].iloc[0]
    assert gap["action"].startswith("skipped")


def test_ingest_samm_layout(tiny_samm, tmp_path):
    cfg = layout_config("samm_lv", tiny_samm, tmp_path / "out")
    res = ingest(cfg)
    m = res.manifest
    assert list(m["video"]) == ["001_2", "002_1"] and list(m["subject"]) == ["001", "002"]
    assert (m["first_frame"] == 1).all() and (m["pad_width"] == 4).all()
    assert (m["name_prefix"] == m["video"] + "_").all()
    assert len(res.labels) == 2  # one event per video on disk
    assert pd.api.types.is_string_dtype(res.labels["subject"])
    assert res.labels.iloc[0].subject == "001"


def test_ingest_refuses_label_paths_outside_root(tiny_casme3, tmp_path):
    edit_sheet(tiny_casme3 / "casme3_label.xlsx", {(2, 2): "../../../etc"})
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    row = res.skipped[res.skipped["row"] == 2].iloc[0]
    assert "outside the dataset root" in row["reason"]


def test_ingest_missing_root_is_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest(layout_config("casme3", tmp_path / "nowhere", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data/ folder"):
        ingest(layout_config("casme3", tmp_path / "empty", tmp_path / "out"))


def test_ingest_unlabelled_folders_and_video_files(tmp_path):
    root = tmp_path / "megc"
    write_frames(root / "CAS_data" / "spNO.9" / "x1", range(0, 12))
    write_frames(root / "SAMM_data" / "041_3", range(1, 15), name=lambda n: f"041_3_{n:05d}.jpg")
    (root / "clips").mkdir()
    writer = cv2.VideoWriter(str(root / "clips" / "talk.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                             25.0, (64, 48))
    for i in range(17):
        writer.write(np.full((48, 64, 3), i * 10, np.uint8))
    writer.release()
    res = ingest(layout_config("megc", root, tmp_path / "out"))
    got = {(r.subject, r.video): r for r in res.manifest.itertuples()}
    assert set(got) == {("9", "x1"), ("041", "041_3"), ("clips", "talk")}
    assert got[("041", "041_3")].pad_width == 5 and got[("041", "041_3")].n_frames == 14
    vid = got[("clips", "talk")]
    assert vid.source == "video" and vid.n_frames == 17 and vid.fps == pytest.approx(25.0)
    assert len(res.labels) == 0


def test_cli_ingest_prints_summary(tiny_casme3, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\nfeatures: {k: 10}\n")
    result = CliRunner().invoke(app, ["ingest", "--config", str(cfg_path), "--root",
                                      str(tiny_casme3), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "videos" in result.output and "micro-expressions: positive" in result.output
    assert "video folder missing" in result.output
    assert (tmp_path / "o/ingest/manifest.parquet").exists()


def test_cli_reports_bad_config_without_traceback(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1, colour: 1}\n"
                        "features: {k: 10}\n")
    result = CliRunner().invoke(app, ["ingest", "--config", str(cfg_path)])
    assert result.exit_code == 2
    assert "unknown key 'dataset.colour'" in result.output and "Traceback" not in result.output
