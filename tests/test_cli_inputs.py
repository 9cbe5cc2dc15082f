"""Every input error a user can make at the command line: a real ``vrme`` process exits with code 2
(1 for a folder it cannot write), prints one line naming the file, key, sheet, row, column or
frame at fault and no traceback, and stops before Prefect starts or a model loads
(docs/reliability.md, section 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from tests.helpers import NOT_CLEAN_YAML, TINY_SYNTH

BIN = Path(sys.executable).parent
HEADER = "subject,video,onset,offset,emotion\n"


def vrme(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in ``cwd`` with its own Prefect home (to show whether Prefect started) and
    a wide terminal (so rich does not wrap the one line)."""
    env = {**os.environ, "PREFECT_HOME": str(cwd / "prefect-home"), "COLUMNS": "2000"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([str(BIN / "vrme"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def refused(res: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The one error line of a refused command (asserting exit code, no traceback)."""
    text = res.stdout + res.stderr
    assert res.returncode == code, text
    assert "Traceback" not in text, text
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def no_prefect(cwd: Path) -> None:
    assert not (cwd / "prefect-home" / "prefect.db").exists()


def casme3_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\nfeatures: {k: 10}\n"
                 + extra)
    return p


def synth_config(tmp_path: Path, root: Path) -> Path:
    synth = ", ".join(f"{k}: {v}" for k, v in TINY_SYNTH.items())
    p = tmp_path / "s.yaml"
    p.write_text(f"dataset: {{name: s, layout: casme3, root: {root}, fps: 30, frame_skip: 1}}\n"
                 f"synth: {{{synth}}}\nfeatures: {{k: 16}}\n"
                 f"run: {{out: {tmp_path / 'work'}}}\n")
    return p


# -- vrme run / ingest: paths, config, spreadsheets --------------------------------------------


def test_root_that_is_a_file_stops_before_prefect(tmp_path):
    cfg = casme3_config(tmp_path)
    line = refused(vrme("run", "--config", str(cfg), "--root", str(cfg), cwd=tmp_path),
                   f"dataset root {cfg} (--root) is not a folder")
    assert line.count("error:") == 1
    no_prefect(tmp_path)


def test_a_mistyped_root_is_never_generated(tmp_path):
    own = tmp_path / "generated-here"
    cfg = synth_config(tmp_path, own)
    typo = tmp_path / "genrated-here"
    refused(vrme("run", "--config", str(cfg), "--root", str(typo), cwd=tmp_path),
            f"dataset root {typo} (--root) does not exist",
            f"generates a dataset only into the dataset.root written in the config file ({own})")
    assert not typo.exists() and not own.exists()
    no_prefect(tmp_path)


def test_ingest_generates_the_configs_own_dataset_but_never_into_a_root_option(tmp_path):
    """`vrme ingest` runs the ingest flow, which generates a config's synthetic dataset into the
    config file's own dataset.root, as `vrme run` does; a --root that does not exist is refused
    before anything starts."""
    cfg = synth_config(tmp_path, tmp_path / "gen")
    refused(vrme("ingest", "--config", str(cfg), "--root", str(tmp_path / "typo"),
                 cwd=tmp_path), "typo")
    assert not (tmp_path / "typo").exists()
    no_prefect(tmp_path)
    res = vrme("ingest", "--config", str(cfg), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "gen" / "synth_spec.json").is_file() and "videos" in res.stdout


def test_a_synth_section_never_overwrites_a_dataset(tiny_casme3, tmp_path):
    cfg = synth_config(tmp_path, tiny_casme3)
    refused(vrme("run", "--config", str(cfg), cwd=tmp_path),
            "holds files but no finished synthetic dataset (no synth_spec.json)")
    assert (tiny_casme3 / "casme3_label.xlsx").exists() and (tiny_casme3 / "data/dzw").is_dir()


@pytest.mark.parametrize("setting, needle", [
    ("train.epochs=true", "key 'train.epochs': must be a whole number, not true"),
    ("orchestration.retries=1.5", "key 'orchestration.retries': must be a whole number"),
    ("decode.p=high", "key 'decode.p': must be a number, not 'high' (text)"),
    ("features.realign=0", "key 'features.realign': must be true or false, not 0"),
])
def test_a_value_of_the_wrong_kind_in_set(tmp_path, setting, needle):
    cfg = casme3_config(tmp_path)
    refused(vrme("run", "--config", str(cfg), "--root", str(tmp_path), "--set", setting,
                 cwd=tmp_path), needle, str(cfg))
    no_prefect(tmp_path)


def test_a_config_that_is_not_clean_yaml(tmp_path):
    for i, (content, needle) in enumerate(NOT_CLEAN_YAML[::3]):  # binary, bad YAML, empty
        p = tmp_path / f"c{i}.yaml"
        p.write_bytes(content)
        refused(vrme("ingest", "--config", str(p), cwd=tmp_path), needle, str(p))


def test_work_folder_that_is_a_file(tiny_casme3, tmp_path):
    cfg = casme3_config(tmp_path)
    refused(vrme("run", "--config", str(cfg), "--root", str(tiny_casme3), "--out", str(cfg),
                 cwd=tmp_path), f"work folder {cfg} (--out) is a file")
    no_prefect(tmp_path)


def test_a_root_without_the_layout_or_its_spreadsheet(tiny_casme3, tmp_path):
    cfg = casme3_config(tmp_path)
    refused(vrme("run", "--config", str(cfg), "--root", str(tmp_path), cwd=tmp_path),
            f"{tmp_path}: not a CAS(ME)^3 root (no data/ folder)")
    (tiny_casme3 / "casme3_label.xlsx").unlink()
    refused(vrme("run", "--config", str(cfg), "--root", str(tiny_casme3), cwd=tmp_path),
            f"label spreadsheet not found: {tiny_casme3 / 'casme3_label.xlsx'}")
    no_prefect(tmp_path)


def test_spreadsheet_errors_are_one_line(tiny_casme3, tmp_path):
    cfg = casme3_config(tmp_path)
    label = tiny_casme3 / "casme3_label.xlsx"
    wb = openpyxl.load_workbook(label)
    wb.worksheets[0].cell(1, 9, "Offset")
    wb.save(label)
    args = ("ingest", "--config", str(cfg), "--root", str(tiny_casme3), "--out",
            str(tmp_path / "out"))
    refused(vrme(*args, cwd=tmp_path),
            f"{label}: sheet 'label', row 1: the header 'Offset' appears in columns E and I")
    label.write_bytes(b"")
    refused(vrme(*args, cwd=tmp_path), f"{label}: an empty file (0 bytes)")
    label.write_text("Subject,Filename,Onset,Apex,Offset,emotion\n")
    refused(vrme(*args, cwd=tmp_path), f"{label}: a text file (CSV?)")
    assert not (tmp_path / "out/ingest/manifest.parquet").exists()


def test_ingest_reports_what_it_left_out(tiny_casme3, tmp_path):
    cfg = casme3_config(tmp_path)
    (tiny_casme3 / "data/dzw/a1/color/IMG_9999.jpg").write_bytes(
        (tiny_casme3 / "data/dzw/a1/color/0.jpg").read_bytes())
    res = vrme("ingest", "--config", str(cfg), "--root", str(tiny_casme3), "--out",
               str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "frames: N file(s) not named like the video's frames (<n>.jpg)" in \
        res.stdout


# -- vrme spot / predict: the video, before the model ------------------------------------------


def _mp4(path: Path, frames: int = 40) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), (i * 5) % 255, np.uint8))
    w.release()
    return path


def test_spot_refuses_an_unreadable_video_before_loading_a_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()  # exists but holds no model: loading it would fail differently
    (tmp_path / "empty.mp4").write_bytes(b"")
    whole = _mp4(tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "frames").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    cases = [("empty.mp4", "is an empty file (0 bytes)"),
             ("cut.mp4", "damaged, truncated or not a video file"),
             ("frames", "(the folder is empty)"),
             ("notes.txt", "not a video file (.mp4, .avi, .mov, .mkv) or a folder of frames"),
             ("gone.mp4", "not found")]
    for name, needle in cases:
        refused(vrme("spot", name, "--model", str(model), "--cache", str(tmp_path / "cache"),
                     cwd=tmp_path), needle)
    assert not (tmp_path / "cache").exists()


def test_predict_refuses_a_test_folder_without_videos(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "readme.txt").write_text("x")
    refused(vrme("predict", "--model", str(model), "--root", "nowhere", cwd=tmp_path),
            "test folder nowhere (--root) does not exist")
    refused(vrme("predict", "--model", str(model), "--root", "tests", cwd=tmp_path),
            "tests (--root): no video found")
    _mp4(tmp_path / "tests" / "clip.mp4")
    refused(vrme("predict", "--model", str(model), "--root", "tests", "--out", "tests",
                 cwd=tmp_path), "output tests is a folder")
    refused(vrme("predict", "--model", "no-model", "--root", "tests", cwd=tmp_path),
            "model no-model (--model) not found")


# -- vrme strs ---------------------------------------------------------------------------------


def test_strs_reports_bad_rows_in_file_order(tmp_path):
    (tmp_path / "p.csv").write_text(HEADER + "1,v1,0,9,negative\n1,v1,8,2,negative\n"
                                    ",v1,0,9,negative\n1,v1,x,9,negative\n")
    (tmp_path / "g.csv").write_text(HEADER + "1,v1,0,9,negative\n")
    line = refused(vrme("strs", "--pred", "p.csv", "--gt", "g.csv", cwd=tmp_path),
                   "p.csv: line 3, column 'offset': offset 2 is before onset 8")
    assert line.index("line 3") < line.index("line 4") < line.index("line 5")


def test_strs_refuses_negative_frames_unless_asked(tmp_path):
    (tmp_path / "p.csv").write_text(HEADER + "1,v1,-2,9,negative\n")
    (tmp_path / "g.csv").write_text(HEADER + "1,v1,0,9,negative\n1,v1,20,-3,negative\n")
    refused(vrme("strs", "--pred", "p.csv", "--gt", "g.csv", cwd=tmp_path),
            "p.csv: line 2, column 'onset': negative frame number -2", "--allow-negative")
    (tmp_path / "p.csv").write_text(HEADER + "1,v1,0,9,negative\n")
    refused(vrme("strs", "--pred", "p.csv", "--gt", "g.csv", cwd=tmp_path),
            "g.csv: line 3, column 'offset': negative frame number -3")
    (tmp_path / "g.csv").write_text(HEADER + "1,v1,-1,9,negative\n")
    ok = vrme("strs", "--pred", "p.csv", "--gt", "g.csv", "--json", "--allow-negative",
              cwd=tmp_path)
    assert ok.returncode == 0 and "negative frame number (first: line 2)" in ok.stderr


def test_strs_warns_about_what_it_scores_but_probably_should_not(tmp_path):
    gt = HEADER + "".join(f"1,v1,{10 * i},{10 * i + 5},negative\n" for i in range(4))
    (tmp_path / "g.csv").write_text(gt + gt[len(HEADER):])  # every row twice
    (tmp_path / "p.csv").write_text(HEADER + "1,v1,0,5,Negative \n1,v1,10,15,joy\n"
                                    "1,v1,20,25,negative\n1,v1,30,35,negative\n")
    res = vrme("strs", "--pred", "p.csv", "--gt", "g.csv", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    err = " ".join(res.stderr.split())
    assert "p.csv: emotion 'Negative' at line 2: it differs from 'negative' only in case" in err
    assert "p.csv: emotion 'joy' at line 3" in err
    assert "g.csv: 4 row(s) repeat an earlier row exactly (first: line 6 repeats line 2)" in err


def test_strs_header_naming_a_column_twice(tmp_path):
    (tmp_path / "p.csv").write_text("subject,video,onset,offset,emotion,offset\n1,v,0,9,x,3\n")
    (tmp_path / "g.csv").write_text(HEADER + "1,v,0,9,x\n")
    refused(vrme("strs", "--pred", "p.csv", "--gt", "g.csv", cwd=tmp_path),
            "p.csv: line 1 (header): column 'offset' appears twice (fields 4 and 6)")



@pytest.mark.parametrize("grid, needle", [
    ("decode.p", "expected key.path=value1,value2"),
    ("decode.p=", "give a key and at least one value"),
    ("train.epochs=3,true", "key 'train.epochs': must be a whole number, not true"),
    ("decode.nope=1,2", "unknown key 'decode.nope'"),
])
def test_sweep_grids_are_checked_before_anything_runs(tiny_casme3, tmp_path, grid, needle):
    cfg = casme3_config(tmp_path)
    refused(vrme("sweep", "--config", str(cfg), "--root", str(tiny_casme3), "--out",
                 str(tmp_path / "out"), "--grid", grid, cwd=tmp_path), needle)
    no_prefect(tmp_path)
