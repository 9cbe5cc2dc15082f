"""Benchmark of a stage command's start-up: seconds from the command to its first task.

    python benchmarks/startup.py [--repeat 5] [--seconds 4] [--data DIR]

Generates (once, into ``--data``) a one-clip CAS(ME)^3-layout dataset, ingests it, then runs
``vrme features --config ...`` as a user does, as a whole process, ``--repeat`` rounds, in two
set-ups interleaved round by round:

- ``running server``: a ``prefect server start`` this script starts first (its own Prefect
  home), named by ``PREFECT_API_URL``, as the README advises for watching runs in the UI;
- ``temporary server``: no API configured, so every command starts its own temporary server
  (its own Prefect home, whose database a warm-up run migrated first, untimed).

Each round removes the clip's landmarks and features, so both are computed again. From the
Prefect database of the set-up (the record the UI shows) it reads when the flow run and its
first task run started; the figures are those times minus the moment the command was started
(``time.time()`` just before the process is spawned), and the command's whole wall time. It
also times ``vrme features --help`` and a refused broken input (``--root`` naming a missing
folder: exit code 2 before any server starts). Medians, with min and max.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
VRME = Path(sys.executable).with_name("vrme")
RUN_ID = re.compile(r"runs/flow-run/([0-9a-f-]{36})")


def generate(data: Path, seconds: float) -> None:
    if (data / "synth_spec.json").is_file():
        return
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec

    spec = SynthSpec(layout="casme3", subjects=1, videos=1, seconds=seconds, mes_per_video=1,
                     macros_per_video=0, seed=0, workers=1)
    generate_dataset(spec, data, progress=False)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen([str(VRME.with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=base_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("prefect server start did not answer within 300 s")


def utc_epoch(text: str) -> float:
    """A timestamp as Prefect's SQLite database stores it (UTC) in seconds since the epoch."""
    stamp = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def run_times(db: Path, flow_run_id: str) -> tuple[float, float]:
    """(flow run start, first task run start) of ``flow_run_id``, epoch seconds."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (flow_start,) = con.execute("select start_time from flow_run where id = ?",
                                    (flow_run_id,)).fetchone()
        (task_start,) = con.execute("select min(start_time) from task_run where flow_run_id = ?",
                                    (flow_run_id,)).fetchone()
    finally:
        con.close()
    return utc_epoch(flow_start), utc_epoch(task_start)


def one_run(cfg: Path, out: Path, env: dict[str, str], db: Path) -> dict[str, float]:
    for stage in ("landmarks", "features"):
        shutil.rmtree(out / stage, ignore_errors=True)
    t0 = time.time()
    proc = subprocess.run([str(VRME), "features", "--config", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vrme features failed ({proc.returncode}): {proc.stderr[-2000:]}")
    m = RUN_ID.search(proc.stderr + proc.stdout)
    if m is None:
        raise SystemExit(f"no flow run id in the output: {proc.stderr[-2000:]}")
    flow_start, task_start = run_times(db, m.group(1))
    return {"flow run starts": flow_start - t0, "first task starts": task_start - t0,
            "command ends": wall}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode
    return time.perf_counter() - t0, rc


def fmt(values: list[float]) -> str:
    return (f"{statistics.median(values):6.2f} s  (min {min(values):.2f}, "
            f"max {max(values):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the clip")
    ap.add_argument("--data", type=Path, default=None, help="where the clip is generated")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vrme-startup-"))
    data = args.data or tmp / "data"
    generate(data, args.seconds)
    out = tmp / "work"
    cfg = tmp / "startup.yaml"
    cfg.write_text(f"dataset:\n  name: startup\n  layout: casme3\n  root: {data}\n  fps: 30\n"
                   f"features:\n  k: 30\nrun:\n  out: {out}\n")
    server_home, temp_home = tmp / "home-server", tmp / "home-temporary"
    server, url = start_server(server_home)
    try:
        setups = {
            "running server": (dict(base_env(server_home), PREFECT_API_URL=url),
                               server_home / "prefect.db"),
            "temporary server": (base_env(temp_home), temp_home / "prefect.db"),
        }
        # untimed: ingestion, the temporary server's first migration, compiled-kernel caches
        subprocess.run([str(VRME), "ingest", "--config", str(cfg)], check=True,
                       env=setups["temporary server"][0], capture_output=True, timeout=600)
        for env, db in setups.values():
            one_run(cfg, out, env, db)
        results: dict[str, dict[str, list[float]]] = {k: {} for k in setups}
        for _ in range(args.repeat):
            for name, (env, db) in setups.items():
                for what, value in one_run(cfg, out, env, db).items():
                    results[name].setdefault(what, []).append(value)
        env = setups["running server"][0]
        helps = [timed([str(VRME), "features", "--help"], env)[0] for _ in range(args.repeat)]
        refused = [timed([str(VRME), "features", "--config", str(cfg), "--root",
                          str(tmp / "missing")], env) for _ in range(args.repeat)]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"vrme features on one {args.seconds:g} s clip (640x480, 30 fps), {args.repeat} "
          f"rounds, load average {load:.1f}; seconds from the command's start:")
    for name, figures in results.items():
        for what, values in figures.items():
            print(f"  {name:17s} {what:18s} {fmt(values)}")
    print(f"  vrme features --help               {fmt(helps)}")
    codes = sorted({rc for _, rc in refused})
    print(f"  broken input refused (exit {','.join(map(str, codes))})    "
          f"{fmt([t for t, _ in refused])}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
