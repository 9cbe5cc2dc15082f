"""``vrme run`` as a newcomer meets it: a subprocess with an empty Prefect home and no server
(vrme starts its temporary one), Ctrl-C and SIGTERM sent to its process group as a terminal
and a service manager do, then a rerun that resumes to the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import PROJECT, tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent
EPOCHS = 120


def newcomer_env(home: Path) -> dict[str, str]:
    """The environment of a fresh machine: an empty Prefect home, no API URL, nothing that the
    test session set for its own harness."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    return env


STOP_WITHIN_S = 20
"""A stopped run must end within this many seconds of the signal: the engine's 8 s grace
period, then the process group is killed; the rest is slack for a loaded, shared CI machine
(one run under full load took 11 s; unloaded it takes about 3 s)."""


def write_config(folder: Path, root: Path) -> Path:
    cfg = folder / "tiny.yaml"
    text = tiny_config_text(root, folder / "work", "orchestration: {retries: 0}\n")
    cfg.write_text(text.replace("epochs: 2", f"epochs: {EPOCHS}"))
    return cfg


def our_processes(home: Path) -> list[psutil.Process]:
    """Processes left behind by runs with Prefect home ``home`` (temporary server, engine)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if ("flows.engine" in cmd or "flows.tempserver" in cmd) and \
                    p.environ().get("PREFECT_HOME") == str(home):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def uninterrupted(tiny_synth_root, tmp_path_factory):
    """The first run on a fresh machine: empty Prefect home, no server. Its metrics."""
    base = tmp_path_factory.mktemp("first-run")
    home = base / "prefect-home"
    cfg = write_config(base, tiny_synth_root)
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)],
                          env=newcomer_env(home), cwd=PROJECT, capture_output=True, text=True,
                          timeout=900)
    return base, home, proc


def test_first_run_on_a_fresh_machine_works(uninterrupted):
    base, home, proc = uninterrupted
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "First run with Prefect home" in proc.stderr
    assert (home / "prefect.db").is_file()
    assert "report:" in proc.stdout
    assert (base / "work" / "runs" / "tiny" / "report" / "metrics.json").is_file()
    assert not our_processes(home)


def _interrupt(cfg: Path, env: dict[str, str], sig: int, when: str,
               log: Path) -> tuple[int, float, str]:
    """Start ``vrme run`` in its own process group, send ``sig`` to the group once a line
    containing ``when`` appears; returns (exit code, seconds from signal to exit, output)."""
    proc = subprocess.Popen([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env,
                            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines, t_sig = [], None
    deadline = time.time() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if t_sig is None and when in line:
            t_sig = time.time()
            os.killpg(proc.pid, sig)
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    log.write_text("".join(lines))
    assert t_sig is not None, "".join(lines)[-3000:]
    return proc.returncode, time.time() - t_sig, "".join(lines)


def test_ctrl_c_and_sigterm_stop_the_run_and_the_rerun_resumes(uninterrupted, tiny_synth_root,
                                                                tmp_path):
    ref_base, _, ref = uninterrupted
    assert ref.returncode == 0
    home = tmp_path / "prefect-home"
    env = newcomer_env(home)
    cfg = write_config(tmp_path, tiny_synth_root)
    work = tmp_path / "work"

    # Ctrl-C (SIGINT to the foreground process group) while fold 1 trains
    rc, took, out = _interrupt(cfg, env, signal.SIGINT, f"fold 1 epoch 3/{EPOCHS}",
                               tmp_path / "sigint.log")
    assert rc == 130, out[-3000:]
    assert took < STOP_WITHIN_S, took
    last = [ln for ln in out.splitlines() if ln.startswith("interrupted:")]
    assert len(last) == 1 and "folds 0/3 folds" in last[0] and "resume with `vrme run" in last[0]
    assert "httpx.ConnectError" not in out and "Error logging to API" not in out
    assert "Traceback" not in out
    assert not our_processes(home)
    assert not [p for p in work.rglob("*") if ".tmp-" in p.name]
    assert len(list((work / "features").rglob("*.parquet"))) == 3  # finished work kept

    # SIGTERM (systemd, kill) while the next run is making its folds; fold 1 finishes first
    rc, took, out = _interrupt(cfg, env, signal.SIGTERM, f"fold 2 epoch 3/{EPOCHS}",
                               tmp_path / "sigterm.log")
    assert rc == 130 and took < STOP_WITHIN_S, (rc, took, out[-3000:])
    assert "SIGTERM: stopping the run" in out
    assert (work / "runs/tiny/folds/1/fold.json").is_file()
    assert not (work / "runs/tiny/folds/2/fold.json").exists()
    assert not our_processes(home)

    # the rerun resumes: folds 2 and 3 train; the numbers are the uninterrupted run's
    done = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "folds trained: 2, 3;" in done.stdout and "reused: 1;" in done.stdout
    ours = json.loads((work / "runs/tiny/report/metrics.json").read_text())
    theirs = json.loads((ref_base / "work/runs/tiny/report/metrics.json").read_text())
    assert ours["official"] == theirs["official"] and ours["reference"] == theirs["reference"]
    assert ((work / "runs/tiny/report/predictions.csv").read_text()
            == (ref_base / "work/runs/tiny/report/predictions.csv").read_text())


def test_a_damaged_prefect_database_is_one_line(tmp_path, tiny_synth_root):
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "prefect.db").write_bytes(b"this is not a SQLite database" * 100)
    cfg = write_config(tmp_path, tiny_synth_root)
    t0 = time.time()
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)],
                          env=newcomer_env(home), cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and str(home / "prefect.db") in err[0] and "mv " in err[0], err
    assert time.time() - t0 < 30


def test_an_unreachable_prefect_api_is_one_line(tmp_path, tiny_synth_root):
    env = newcomer_env(tmp_path / "home")
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    cfg = write_config(tmp_path, tiny_synth_root)
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "does not answer" in err[0] and "PREFECT_API_URL" in err[0]


def test_a_terminal_shows_one_progress_bar_with_an_eta(uninterrupted):
    """In a terminal (a pseudo-terminal here) `vrme run` draws one progress bar for the whole
    run, naming the stage, with the elapsed time and an ETA."""
    import pty
    import re

    base, home, ref = uninterrupted
    assert ref.returncode == 0
    master, slave = pty.openpty()
    env = {**newcomer_env(home), "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen([str(BIN / "vrme"), "run", "--config", str(base / "tiny.yaml")],
                            env=env, cwd=PROJECT, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=600)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert proc.returncode == 0, text[-3000:]
    bars = [ln for ln in re.split(r"[\r\n]", text) if ln.startswith("benchmark tiny")]
    assert any("ETA" in ln and "%" in ln for ln in bars), text[-3000:]
    assert any(": folds" in ln or ": report" in ln for ln in bars), bars[-5:]
