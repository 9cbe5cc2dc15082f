"""Against a real ``prefect server start`` on a free loopback port (started and stopped here):
the CLI's runs, their task runs and artifacts read back through the Prefect client; a
``prefect flow-run retry`` of a failed run; ``vrme serve`` registering a cron deployment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PROJECT, tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server with its own SQLite database; yields (api_url, env)."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_EXTRA_LOGGERS="vrme", PREFECT_UI_ENABLED="false")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()}")
        time.sleep(0.5)
    client_env = {**env, "PREFECT_API_URL": url}
    yield url, client_env
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def client_for(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: url})


def flow_runs(url: str, flow_name: str):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with client_for(url), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def test_cli_run_against_server_and_read_back(prefect_server, tiny_synth_root, tmp_path):
    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work",
                                    "orchestration: {retries: 0}\n"))
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report:" in proc.stdout and "report.html" in proc.stdout

    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId,
                                                FlowRunFilter, FlowRunFilterId)

    runs = flow_runs(url, "vrme-benchmark")
    assert len(runs) == 1 and runs[0].state.is_completed()
    with client_for(url), get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])))
        names = sorted(t.name for t in tasks)
        assert [n for n in names if n.startswith("fold ")] == ["fold 1", "fold 2", "fold 3"]
        assert sum(n.startswith("features ") for n in names) == 3
        assert all(t.state.is_completed() for t in tasks)
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id])))
        by_type = {a.type: a for a in arts}
        assert {"progress", "table", "markdown"} <= set(by_type)
        assert by_type["progress"].data == 100.0
        assert "STRS" in by_type["markdown"].data
        table = by_type["table"].data
        assert "spot_f1" in table and "strs_contribution" in table and "duration_s" in table
        logs = client.read_logs()
        assert any("fold" in lg.message and lg.name.startswith("vrme") for lg in logs)


def test_flow_run_retry_redoes_only_the_failed_fold(prefect_server, tiny_synth_root, tmp_path):
    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(
        tiny_synth_root, tmp_path / "work",
        "orchestration: {retries: 0, fault: {fail_folds: ['2'], kind: data, times: 1}}\n"))
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "fold(s) failed: 2" in proc.stdout, proc.stdout + proc.stderr
    folds = tmp_path / "work" / "runs" / "tiny" / "folds"
    before = {f: (folds / f / "fold.json").stat().st_mtime_ns for f in ("1", "3")}
    failed = [r for r in flow_runs(url, "vrme-benchmark") if r.state.is_failed()]
    assert len(failed) == 1

    retry = subprocess.run([str(BIN / "prefect"), "flow-run", "retry", str(failed[0].id),
                            "--entrypoint", "flows/benchmark.py:benchmark_flow"],
                           env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    runs = {r.id: r for r in flow_runs(url, "vrme-benchmark")}
    assert runs[failed[0].id].state.is_completed() and runs[failed[0].id].run_count == 2
    assert (folds / "2" / "fold.json").is_file()
    after = {f: (folds / f / "fold.json").stat().st_mtime_ns for f in ("1", "3")}
    assert after == before  # the finished folds were not redone


def test_serve_registers_cron_deployment_and_stops(prefect_server, tiny_synth_root, tmp_path):
    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work"))
    proc = subprocess.Popen([str(BIN / "vrme"), "serve", "--config", str(cfg), "--cron",
                             "0 2 * * *"], env=env, cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    from prefect import get_client

    deployment = None
    try:
        deadline = time.time() + 120
        while deployment is None and time.time() < deadline and proc.poll() is None:
            try:
                with client_for(url), get_client(sync_client=True) as client:
                    deployment = client.read_deployment_by_name("vrme-benchmark/tiny-scheduled")
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(1)
        assert deployment is not None, proc.stdout.read() if proc.poll() is not None else ""
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == ["0 2 * * *"] and deployment.schedules[0].active
        assert deployment.parameters["config"] == str(cfg)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, out
