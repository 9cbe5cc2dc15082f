"""Reliability: every fault of docs/reliability.md injected for real, and what vrme does.

Bad frames, bad labels, videos without a face, a run killed with SIGKILL in the features and
training steps, failed writes (a read-only folder, a full disk), two runs at once on one work
folder, retries, and inputs from outside. Frames, dlib, OpenCV, Parquet, torch and Prefect are
real; a full disk is simulated by making the rename of one output raise ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import facegen, tiny_config_text, videos_config
from vrme.data.ingest import ingest
from vrme.errors import LabelError
from vrme.features.flow import feature_path, run_features
from vrme.io import WriteError, clean_work_folder, write_bytes_atomic, write_parquet_atomic
from vrme.schema import read_video_features

BIN = Path(sys.executable).parent
K = 20


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for this process: chmod for a normal user, the immutable
    attribute for root (whom permissions do not stop); skip the test where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        if not shutil.which("chattr") or subprocess.run(
                ["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("cannot make a folder read-only here (root without chattr +i)")
    else:
        folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.fixture
def disk_full(monkeypatch) -> Callable[[Callable[[str], bool]], list[str]]:
    """``disk_full(pred)``: from now on, renaming a finished temporary onto a final name for
    which ``pred(name)`` is true fails with ENOSPC (as a full disk would fail the write); the
    returned list collects the names refused."""

    def install(pred: Callable[[str], bool]) -> list[str]:
        real = os.replace
        refused: list[str] = []

        def replace(src, dst, *a, **kw):
            if pred(str(dst)):
                refused.append(str(dst))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
            return real(src, dst, *a, **kw)

        monkeypatch.setattr(os, "replace", replace)
        return refused

    return install


def flat(text: str) -> str:
    """``text`` without whitespace and box borders (rich wraps long lines anywhere)."""
    return "".join(text.replace("│", " ").split())


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def vrme(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start the vrme CLI in its own process group (so a kill reaches its workers too), its
    output going to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen([str(BIN / "vrme"), *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], log: Path,
              timeout: float = 180.0) -> None:
    """SIGKILL ``proc``'s whole process group as soon as ``ready()`` is true."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"vrme ended (rc {proc.returncode}) before the kill point:\n"
                                 + log.read_text()[-3000:])
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("kill point not reached:\n" + log.read_text()[-3000:])
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> str:
    rc = proc.wait(timeout=timeout)
    out = log.read_text()
    assert rc == 0, out[-4000:]
    return out


def run_files(work: Path, run: str = "tiny") -> dict[str, object]:
    report = work / "runs" / run / "report"
    return {"metrics": json.loads((report / "metrics.json").read_text()),
            "predictions": (report / "predictions.csv").read_text()}


def same_numbers(a: dict[str, object], b: dict[str, object]) -> None:
    assert a["metrics"]["official"] == b["metrics"]["official"]
    assert a["metrics"]["reference"] == b["metrics"]["reference"]
    assert a["predictions"] == b["predictions"]


def write_tiny_config(folder: Path, root: Path, work: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "tiny.yaml"
    p.write_text(tiny_config_text(root, work, extra))
    return p


# -- 1. bad frames -----------------------------------------------------------------------------


TRUNCATED = r"truncated JPEG|not a decodable image"  # OpenCV 5 refuses most truncations


def spoil_frames(folder: Path, frames: list[np.ndarray]) -> dict[int, str]:
    """Four kinds of bad frame in one video; returns frame number -> what the error says."""
    data = (folder / "13.jpg").read_bytes()
    (folder / "13.jpg").write_bytes(data[: len(data) // 2])
    (folder / "27.jpg").write_bytes(b"")
    (folder / "35.jpg").write_text("not an image, only named like one\n")
    cv2.imwrite(str(folder / "44.jpg"), cv2.resize(frames[44], (200, 150)))
    return {13: TRUNCATED, 27: "is an empty file", 35: "is not a decodable image",
            44: "is 200 x 150 px; the video's frames are 320 x 240"}


def test_bad_frames_are_repeated_counted_or_skip_the_video(tmp_path, caplog):
    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(60)
    bad_row = facegen.write_video(root, "s1", "bad", frames)
    good_row = facegen.write_video(root, "s1", "good", frames[:40])
    kinds = spoil_frames(root / "s1" / "bad", frames)

    # repeat_previous (the default): each bad frame is the frame before it, and counted
    cfg = videos_config(root, out, k=K)
    bad, good = run_features(cfg, [bad_row, good_row], workers=1, progress=False)
    assert bad.status == "computed" and bad.bad_frames == sorted(kinds)
    assert good.status == "computed" and good.bad_frames == []
    vf = read_video_features(bad.path)
    assert vf.meta["bad_frames"] == sorted(kinds) and vf.meta["n_bad_frames"] == 4
    assert np.isfinite(vf.values).all()
    for n in kinds:  # a repeated frame moves nothing: its column equals the previous one
        w = n // (K // 2)
        col = n - int(vf.start_index[w])
        assert col > 0 and np.array_equal(vf.values[w, :, col], vf.values[w, :, col - 1])
    for n, why in kinds.items():
        line = next(r.getMessage() for r in caplog.records if f"bad frame {n} " in r.getMessage())
        assert str(root / "s1" / "bad" / f"{n}.jpg") in line and re.search(why, line), line

    # fail: the video is skipped with the first bad file named; the others go on
    cfg = videos_config(root, tmp_path / "work-fail", k=K, bad_frame="fail")
    bad, good = run_features(cfg, [bad_row, good_row], workers=1, progress=False)
    assert bad.status == "skipped" and str(root / "s1" / "bad" / "13.jpg") in bad.reason
    assert re.search(TRUNCATED, bad.reason)
    assert good.status == "computed"
    assert not feature_path(cfg, "s1", "bad").exists()


def test_unreadable_first_frame_skips_the_video_at_ingestion(tiny_casme3, tmp_path):
    (tiny_casme3 / "data/gcf/d1/color/0.jpg").write_text("not a jpeg")
    res = ingest(make_casme3_cfg(tiny_casme3, tmp_path / "out"))
    assert ("gcf", "d1") not in set(zip(res.manifest.subject, res.manifest.video))
    row = res.skipped[(res.skipped["kind"] == "video") & (res.skipped["video"] == "d1")
                      & (res.skipped["subject"] == "gcf")].iloc[0]
    assert row["item"] == "data/gcf/d1/color/0.jpg" and "not a decodable image" in row["reason"]


# -- 2. bad labels -----------------------------------------------------------------------------


def make_casme3_cfg(root: Path, out: Path):
    from vrme.config import config_from_mapping

    return config_from_mapping({
        "dataset": {"name": "t", "layout": "casme3", "root": str(root), "fps": 30,
                    "frame_skip": 1},
        "features": {"k": 10}, "run": {"out": str(out)}})


def test_bad_label_rows_name_file_row_and_reason(tiny_casme3, tmp_path):
    path = tiny_casme3 / "casme3_label.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    good = list(next(ws.iter_rows(min_row=2, max_row=2, values_only=True)))  # dzw a1 1 5 15
    rows = {
        22: ["dzw", "a1", "abc", 5, 15, "5", "II", "happy"],        # text in a frame column
        23: ["dzw", "a1", 20, 22, 3, "5", "II", "happy"],           # onset after offset
        24: ["dzw", "a1", 10, 12, 40, "5", "II", "happy"],          # beyond the last frame 29
        25: ["dzw", "a1", 2, 5, 9, "5", "II", "contempt"],          # emotion outside the map
        26: good,                                                   # duplicate of row 2
        27: ["../../etc", "passwd", 1, 5, 15, "5", "II", "happy"],  # outside the root
        28: ["dzw", "/etc/passwd", 1, 5, 15, "5", "II", "happy"],   # absolute path
    }
    for r in sorted(rows):
        ws.append(rows[r])
    wb.save(path)
    res = ingest(make_casme3_cfg(tiny_casme3, tmp_path / "out"))

    skipped = pd.read_csv(tmp_path / "out/ingest/skipped.csv", dtype={"row": "Int64"})
    labels = skipped[skipped["kind"] == "label"].set_index("row")
    want = {
        22: "column 'Onset' is not an integer frame number: 'abc'",
        23: "onset 20 > offset 3",
        24: "event 10-40 outside the video's frames 0-29",
        25: "unknown emotion 'contempt'",
        26: "duplicate of row 2",
        27: "outside the dataset root",
        28: "outside the dataset root",
        4: "video folder missing",  # dzw/f3 is labelled but not on disk
    }
    for row, reason in want.items():
        assert reason in labels.loc[row, "reason"], (row, labels.loc[row, "reason"])
        assert labels.loc[row, "file"] == "casme3_label.xlsx"
    assert set(want) <= set(labels.index)
    kept = set(res.labels["source_row"])
    assert 2 in kept and not kept & set(want)
    assert set(zip(res.manifest.subject, res.manifest.video)) == {
        ("dzw", "a1"), ("dzw", "d1"), ("gcf", "a1"), ("gcf", "d1")}


def test_missing_column_stops_with_file_and_column(tiny_casme3, tmp_path):
    path = tiny_casme3 / "casme3_label.xlsx"
    wb = openpyxl.load_workbook(path)
    wb.worksheets[0].delete_cols(3)  # Onset
    wb.save(path)
    with pytest.raises(LabelError, match=r"casme3_label\.xlsx: column 'Onset' missing"):
        ingest(make_casme3_cfg(tiny_casme3, tmp_path / "out"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\n"
                   "features: {k: 10}\n")
    res = CliRunner().invoke(app, ["ingest", "--config", str(cfg), "--root", str(tiny_casme3),
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert flat(f"{path}: column 'Onset' missing") in flat(res.output)
    assert not (tmp_path / "out/ingest/manifest.parquet").exists()


# -- 3. no face --------------------------------------------------------------------------------


def test_no_face_at_all_and_face_lost_for_a_stretch(tmp_path):
    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(60)
    blank = facegen.write_video(root, "s1", "blank", [np.full_like(frames[0], 90)] * 40)
    lost, _ = facegen.render(60, blank=set(range(18, 42)))  # windows 2, 3, 4 start faceless
    lost_row = facegen.write_video(root, "s1", "lost", lost)
    cfg = videos_config(root, out, k=K)
    no_face, stretch = run_features(cfg, [blank, lost_row], workers=1, progress=False)
    assert no_face.status == "skipped" and "no face detected in any" in no_face.reason
    assert stretch.status == "computed"
    assert stretch.counts == {"detected": 2, "reused": 3, "none": 0}
    vf = read_video_features(stretch.path)
    assert vf.align.tolist() == ["detected", "detected", "reused", "reused", "reused"]
    assert vf.meta["counts"]["reused"] == 3 and np.isfinite(vf.values).all()


# -- 4. killed mid-run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(prefect_harness, tiny_synth_root, tmp_path_factory):
    """One uninterrupted ``vrme run`` of the tiny benchmark (folds in parallel threads):
    its work folder and final numbers."""
    base = tmp_path_factory.mktemp("reference")
    cfg = write_tiny_config(base, tiny_synth_root, base / "work")
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    log = base / "run.log"
    finish(vrme("run", "--config", str(cfg), env=env, log=log), log)
    return base / "work", run_files(base / "work")


@pytest.mark.slow
@pytest.mark.prefect
def test_run_killed_in_features_then_in_training_resumes_to_the_same_numbers(
        prefect_harness, reference_run, tiny_synth_root, tmp_path):
    ref_work, ref = reference_run
    work = tmp_path / "work"
    cfg = write_tiny_config(tmp_path, tiny_synth_root, work,
                            "orchestration: {max_workers: 1, retries: 0}\n")
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}

    def feature_files() -> list[Path]:
        return sorted((work / "features").rglob("*.parquet"))

    def done_folds() -> list[Path]:
        return sorted((work / "runs/tiny/folds").glob("*/fold.json"))

    # 1. SIGKILL in the features step, once the first video's features are written
    log1 = tmp_path / "run1.log"
    kill_when(vrme("run", "--config", str(cfg), env=env, log=log1), lambda: feature_files(), log1)
    kept = {p: p.stat().st_mtime_ns for p in feature_files()}
    assert 1 <= len(kept) < 3, kept
    # what a kill during a write leaves: a temporary next to its final name
    stale = feature_files()[0].parent.parent / "2" / f"a.parquet.tmp-{dead_pid()}-deadbeef"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"PAR1 half a parquet file")

    # 2. run again, SIGKILL in the training step once the first fold has finished
    log2 = tmp_path / "run2.log"
    kill_when(vrme("run", "--config", str(cfg), env=env, log=log2), lambda: done_folds(), log2)
    assert not stale.exists()
    assert re.search(r"removed \d+ unfinished temporary file", log2.read_text())
    assert len(feature_files()) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished videos kept
    finished = {p.parent.name: p.stat().st_mtime_ns for p in done_folds()}
    assert 1 <= len(finished) < 3, finished
    unfinished = sorted({"1", "2", "3"} - set(finished))
    for f in unfinished:  # a fold killed after saving its model, before its done-marker
        write_bytes_atomic(work / "runs/tiny/folds" / f / "model.pt", b"not a finished model")

    # 3. the next run completes: only the unfinished folds train, numbers as uninterrupted
    log3 = tmp_path / "run3.log"
    out = finish(vrme("run", "--config", str(cfg), env=env, log=log3), log3)
    assert f"folds trained: {', '.join(unfinished)};" in out
    assert f"reused: {', '.join(sorted(finished))};" in out
    assert {p.parent.name: p.stat().st_mtime_ns for p in done_folds()
            if p.parent.name in finished} == finished
    same_numbers(run_files(work), ref)
    for p in feature_files():
        ref_values = read_video_features(ref_work / p.relative_to(work)).values
        assert np.array_equal(read_video_features(p).values, ref_values)
    assert not temporaries(work)


@pytest.mark.slow
def test_align_and_features_commands_killed_keep_finished_videos(reference_run, tiny_synth_root,
                                                                  tmp_path):
    ref_work, _ = reference_run
    work = tmp_path / "work"
    cfg = write_tiny_config(tmp_path, tiny_synth_root, work)
    env = dict(os.environ)
    log = tmp_path / "cmd.log"
    finish(vrme("ingest", "--config", str(cfg), env=env, log=log), log)

    def landmark_files() -> list[Path]:
        return sorted((work / "landmarks").rglob("*.parquet"))

    # landmarks on two worker processes, killed with them once the first video is written
    kill_when(vrme("align", "--config", str(cfg), "--workers", "2", env=env, log=log),
              lambda: landmark_files(), log)
    kept = {p: p.stat().st_mtime_ns for p in landmark_files()}
    assert 1 <= len(kept) < 3, kept
    out = finish(vrme("features", "--config", str(cfg), "--workers", "2", env=env, log=log), log)
    assert "videos computed" in out
    assert len(landmark_files()) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    feats = sorted((work / "features").rglob("*.parquet"))
    assert len(feats) == 3
    for p in feats:  # the same numbers as the uninterrupted Prefect run
        ref_values = read_video_features(ref_work / p.relative_to(work)).values
        assert np.array_equal(read_video_features(p).values, ref_values)
    assert not temporaries(work)


# -- 5. write failures -------------------------------------------------------------------------


def test_failed_write_leaves_no_partial_file(tmp_path, disk_full, monkeypatch):
    import pyarrow as pa

    target = tmp_path / "out" / "table.parquet"
    table = pa.table({"x": np.arange(1000)})
    write_parquet_atomic(target, table)
    before = target.read_bytes()
    # the rename of the finished temporary fails: the old file stays, no temporary remains
    refused = disk_full(lambda name: name == str(target))
    with pytest.raises(WriteError) as exc:
        write_parquet_atomic(target, pa.table({"x": np.arange(5)}))
    assert exc.value.errno == errno.ENOSPC and str(target) in str(exc.value)
    assert "No space left on device" in str(exc.value) and refused == [str(target)]
    assert target.read_bytes() == before and not temporaries(tmp_path)
    # the writer dies half-way through the file: nothing under the final name
    monkeypatch.undo()
    fresh = tmp_path / "out" / "fresh.parquet"

    def half_then_full(tab, where, **kw):
        Path(where).write_bytes(b"PAR1" + b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", half_then_full)
    with pytest.raises(WriteError, match=str(fresh)):
        write_parquet_atomic(fresh, table)
    assert not fresh.exists() and not temporaries(tmp_path)


def test_read_only_work_folder_is_a_clear_error(tiny_casme3, tmp_path):
    out = tmp_path / "ro"
    with read_only(out):
        with pytest.raises(WriteError, match=f"cannot create folder {out / 'ingest'}"):
            ingest(make_casme3_cfg(tiny_casme3, out))
        cfg = tmp_path / "c.yaml"
        cfg.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\n"
                       "features: {k: 10}\n")
        res = CliRunner().invoke(app, ["ingest", "--config", str(cfg), "--root",
                                       str(tiny_casme3), "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    # the CLI finds out before it starts (load() tries to create a file there)
    assert flat(f"work folder {out} (--out) is not writable: cannot create a file in {out}") \
        in flat(res.output)
    assert list(out.iterdir()) == []


def test_disk_full_in_the_cli_names_the_file(tiny_casme3, tmp_path, monkeypatch):
    """`vrme ingest` runs its flow in a child process: the full disk is simulated there by the
    test-only fault of vrme.io (the rename of labels.parquet fails with ENOSPC)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\n"
                   "features: {k: 10}\n")
    out = tmp_path / "out"
    monkeypatch.setenv("VRME_FAULT_DISK_FULL", "labels.parquet")
    res = CliRunner().invoke(app, ["ingest", "--config", str(cfg), "--root", str(tiny_casme3),
                                   "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    target = out / "ingest" / "labels.parquet"
    assert flat(f"cannot write {target}: No space left on device") in flat(res.output)
    assert not (out / "ingest/labels.parquet").exists() and not temporaries(out)


@pytest.mark.prefect
def test_disk_full_fails_the_task_without_retry(prefect_harness, tiny_casme3, tmp_path,
                                                disk_full):
    from flows.ingest import ingest_flow

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: {{name: t, layout: casme3, fps: 30, frame_skip: 1, "
                   f"root: {tiny_casme3}}}\nfeatures: {{k: 10}}\nrun: {{out: {tmp_path / 'o'}}}\n"
                   "orchestration: {retries: 2, retry_delay_s: 0}\n")
    refused = disk_full(lambda name: name.endswith("manifest.parquet"))
    state = ingest_flow(config=str(cfg), return_state=True)
    assert state.is_failed()
    target = tmp_path / "o" / "ingest" / "manifest.parquet"
    assert f"cannot write {target}: No space left on device" in state.message
    assert refused == [str(target)]  # a full disk is not retried
    assert not target.exists() and not temporaries(tmp_path / "o")


@pytest.mark.slow
@pytest.mark.prefect
def test_disk_full_for_one_video_fails_the_run_naming_it_then_a_rerun_completes(
        prefect_harness, tiny_synth_root, tmp_path, disk_full, monkeypatch):
    from flows.benchmark import benchmark_flow

    cfg = write_tiny_config(tmp_path, tiny_synth_root, tmp_path / "work",
                            "orchestration: {retries: 2, retry_delay_s: 0}\n")
    refused = disk_full(lambda name: "/features/" in name and name.endswith("/2/a.parquet"))
    state = benchmark_flow(config=str(cfg), return_state=True)
    assert state.is_failed()
    assert "1 video(s) failed" in state.message and "2/a: WriteError" in state.message
    assert "No space left on device" in state.message and len(refused) == 1  # not retried
    run = tmp_path / "work" / "runs" / "tiny"
    status = pd.read_csv(run / "features_status.csv", dtype=str).set_index("subject")
    assert status.loc["2", "status"] == "failed" and refused[0] in status.loc["2", "reason"]
    assert set(status.loc[["1", "3"], "status"]) == {"computed"}
    assert not Path(refused[0]).exists() and not temporaries(tmp_path / "work")
    # space freed: the rerun computes the missing video only, and completes
    monkeypatch.undo()
    again = benchmark_flow(config=str(cfg), return_state=True)
    assert again.is_completed(), again.message
    assert again.result()["videos"] == {"cached": 2, "computed": 1}


@pytest.mark.slow
@pytest.mark.prefect
def test_vrme_run_on_a_read_only_work_folder(prefect_harness, tiny_synth_root, tmp_path):
    out = tmp_path / "ro"
    cfg = write_tiny_config(tmp_path, tiny_synth_root, out)
    log = tmp_path / "run.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    with read_only(out):
        proc = vrme("run", "--config", str(cfg), env=env, log=log)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    assert rc == 1, text
    assert flat(f"work folder {out} (run.out in {cfg}) is not writable") in flat(text)
    assert "Traceback" not in text


# -- 6. two runs at once -----------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_at_once_on_one_work_folder(reference_run, tiny_synth_root, tmp_path):
    _, ref = reference_run
    work = tmp_path / "work"
    cfg = write_tiny_config(tmp_path, tiny_synth_root, work)
    # Prefect's default: each run starts its own temporary server on one shared SQLite
    # database (here a new one, so both also race to create it)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [vrme("run", "--config", str(cfg), env=env, log=lg) for lg in logs]
    outs = [finish(p, lg, timeout=400) for p, lg in zip(procs, logs)]
    for out in outs:
        assert "database is locked" not in out and "STRS =" in out
    for p in work.rglob("*.parquet"):
        pq.read_table(p)  # every file complete
    assert len(list((work / "features").rglob("*.parquet"))) == 3
    assert not temporaries(work)
    same_numbers(run_files(work), ref)


# -- 7. retries --------------------------------------------------------------------------------


def test_transient_and_permanent_errors():
    from tasks.common import TransientError, is_transient
    from vrme.errors import DataError, FrameError

    assert is_transient(TransientError("lost worker")) and is_transient(MemoryError())
    assert is_transient(OSError(errno.EIO, "I/O error"))
    assert is_transient(RuntimeError("CUDA out of memory"))
    assert not is_transient(DataError("bad spreadsheet")) and not is_transient(FrameError("x"))
    assert not is_transient(WriteError(errno.ENOSPC, "cannot write x: No space left"))
    assert not is_transient(WriteError(errno.EACCES, "cannot write x: Permission denied"))
    assert not is_transient(ValueError("a bug"))


# -- 8. inputs from outside --------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["run", "--config", "{cfg}", "--root", "{tmp}/nowhere"], "dataset root {tmp}/nowhere "
                                                             "(--root) does not exist"),
    (["run", "--config", "{cfg}", "--root", "{cfg}"], "(--root) is not a folder"),
    (["run", "--config", "{cfg}", "--root", "{tmp}", "--out", "{cfg}"], "(--out) is a file"),
    (["run", "--config", "{tmp}/missing.yaml"], "config file not found"),
    (["run", "--config", "{cfg}", "--set", "features.k=abc"], "key 'features.k'"),
    (["run", "--config", "{cfg}", "--set", "features.k=15"], "must be even"),
    (["run", "--config", "{cfg}", "--set", "train.colour=1"], "unknown key 'train.colour'"),
    (["run", "--config", "{cfg}", "--set", "features"], "expected key.path=value"),
    (["ingest", "--config", "{cfg}", "--set", "dataset.layout=avi"], "dataset.layout"),
    (["strs", "--pred", "{tmp}/p.csv", "--gt", "{tmp}/g.csv"], "does not exist"),
])
def test_cli_inputs_are_checked_before_anything_runs(tmp_path, args, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: t, layout: casme3, fps: 30, frame_skip: 1}\n"
                   "features: {k: 10}\n")
    fill = {"cfg": str(cfg), "tmp": str(tmp_path)}
    res = CliRunner().invoke(app, [a.format(**fill) for a in args])
    # exit code 2 and the message: stopped while checking inputs (a run that got as far as
    # Prefect would end with exit code 1, "run failed")
    assert res.exit_code == 2, res.output
    assert flat(needle.format(**fill)) in flat(res.output)
    assert "Traceback" not in res.output


def test_stale_temporaries_only_of_dead_writers_are_removed(tmp_path):
    from vrme.io import FOREIGN_TMP_AGE_S, _host_tag

    work = tmp_path / "work"
    here, gone = _host_tag(), dead_pid()
    files = {
        "dead": work / f"features/t/h/1/a.parquet.tmp-{gone}-{here}-0a0b0c0d",
        "old-format": work / f"runs/r/folds/1/model.pt.tmp-{gone}-0a0b0c0d",
        "alive": work / f"landmarks/t/h/1/a.parquet.tmp-{os.getppid()}-{here}-0a0b0c0d",
        "other-host-new": work / f"ingest/manifest.parquet.tmp-{gone}-ffffff-0a0b0c0d",
        "other-host-old": work / f"ingest/labels.parquet.tmp-{gone}-ffffff-0a0b0c0d",
        "not-a-work-folder": work / f"elsewhere/x.tmp-{gone}-{here}-0a0b0c0d",
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    old = time.time() - FOREIGN_TMP_AGE_S - 60
    os.utime(files["other-host-old"], (old, old))
    removed = clean_work_folder(work)
    gone_now = {k for k, p in files.items() if not p.exists()}
    assert gone_now == {"dead", "old-format", "other-host-old"}
    assert sorted(removed) == sorted(files[k] for k in gone_now)
