"""Against a real ``prefect server start`` on a free loopback port (started and stopped here):
the CLI's runs, their names, tags, task runs and artifacts read back through the Prefect client;
the Retry of a failed ``vrme run`` (what the UI's button does) executed by ``vrme serve``; the
A/B/A config sequence through the served deployment; ``vrme serve`` registering a cron
deployment and pausing it on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import PROJECT, real_prefect_server, tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server with its own SQLite database; yields (api_url, env)."""
    with real_prefect_server(tmp_path_factory.mktemp("prefect-server-home")) as server:
        yield server


def client_for(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: url})


def flow_runs(url: str, flow_name: str):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with client_for(url), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def run_vrme(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "vrme"), *args], env=env, cwd=PROJECT, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_run_against_server_and_read_back(prefect_server, tiny_synth_root, tmp_path):
    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work",
                                    "orchestration: {retries: 0}\n"))
    proc = run_vrme(env, "run", "--config", str(cfg), "--set", "decode.p=0.6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report:" in proc.stdout and "report.html" in proc.stdout

    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    runs = flow_runs(url, "vrme-benchmark")
    assert len(runs) == 1 and runs[0].state.is_completed()
    run = runs[0]
    assert run.name == "tiny decode.p=0.6"
    assert {"vrme", "run:tiny", "config:tiny.yaml", "set:decode.p=0.6"} <= set(run.tags)
    assert run.deployment_id is not None  # a deployment run: the UI offers Retry
    with client_for(url), get_client(sync_client=True) as client:
        assert client.read_deployment(run.deployment_id).name == "tiny"
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        names = sorted(t.name for t in tasks)
        assert [n for n in names if n.startswith("fold ")] == ["fold 1", "fold 2", "fold 3"]
        assert sum(n.startswith("features ") for n in names) == 3
        assert all(t.state.is_completed() for t in tasks)
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        by_type: dict[str, list] = {}
        for a in arts:
            by_type.setdefault(a.type, []).append(a)
        assert len(by_type["progress"]) == 1 and by_type["progress"][0].data == 100.0
        assert "features: done" in by_type["progress"][0].description
        md = by_type["markdown"][0].data
        assert "STRS" in md and "report.html" in md
        assert "](plots/" not in md and md.count("](data:image/png;base64,") >= 3
        table = by_type["table"][0].data
        rows = json.loads(table) if isinstance(table, str) else table
        assert {"spot_tp", "spot_fp", "spot_fn", "true_intervals", "predicted_intervals",
                "spot_f1", "fold_strs", "train_s"} <= set(rows[0])
        for r in rows:  # rounded figures
            assert r["spot_f1"] is None or len(repr(r["spot_f1"])) <= 6
        logs = client.read_logs()
        assert any("fold" in lg.message and lg.name.startswith("vrme") for lg in logs)
        assert any("frames/s" in lg.message for lg in logs)  # per-video lines


def test_the_command_creates_the_run_while_its_engine_starts(prefect_server, tiny_synth_root,
                                                             tmp_path):
    """The first run of a deployment is created by the engine (which registers the
    deployment), later ones by the command over the REST API: the same deployment, name, tags
    and parameters either way. A run the command created whose engine ends first is marked
    Crashed, not left Pending."""
    url, env = prefect_server
    cfg = tmp_path / "early.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work").replace(
        "name: tiny", "name: early"))
    for _ in range(2):
        proc = run_vrme(env, "ingest", "--config", str(cfg))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout + proc.stderr
        assert out.count("flow run 'early' (vrme-ingest/early): http") == 1, out  # one link
        assert len(set(re.findall(r"runs/flow-run/([0-9a-f-]{36})", out))) == 1, out
    runs = [r for r in flow_runs(url, "vrme-ingest") if "run:early" in r.tags]
    assert len(runs) == 2 and all(r.state.is_completed() for r in runs)
    first, second = sorted(runs, key=lambda r: r.created)
    assert first.deployment_id == second.deployment_id is not None
    assert first.name == second.name == "early"
    assert first.tags == second.tags and first.parameters == second.parameters

    from prefect import get_client

    from flows.launch import _mark_crashed, create_run_early

    assert create_run_early(url, "vrme-ingest", "no-such-deployment", {}, "x", []) == {}
    run = create_run_early(url, "vrme-ingest", "early", dict(second.parameters), "early x",
                           ["vrme", "run:early", "set:x"])
    assert run["state"]["type"] == "PENDING" and run["name"] == "early x"
    assert run["deployment_id"] == str(second.deployment_id)
    assert set(run["tags"]) >= {"vrme", "run:early", "set:x"}
    with client_for(url):  # as in the command, inside its Prefect API's settings
        _mark_crashed(run["id"], 1)
    with client_for(url), get_client(sync_client=True) as client:
        state = client.read_flow_run(run["id"]).state
    assert state.is_crashed() and "exit code 1" in state.message


@pytest.fixture
def served(prefect_server, tmp_path):
    """Start ``vrme serve --config <cfg>`` (no schedule) for a config written by the test;
    yields a function that starts it, and stops it afterwards (Ctrl-C)."""
    url, env = prefect_server
    procs = []

    def start(cfg: Path) -> subprocess.Popen:
        proc = subprocess.Popen([str(BIN / "vrme"), "serve", "--config", str(cfg)], env=env,
                                cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_final(url: str, run_id, timeout: float = 400):
    from prefect import get_client

    deadline = time.time() + timeout
    while time.time() < deadline:
        with client_for(url), get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish: {run.state}")


def test_retry_of_a_failed_vrme_run_redoes_only_the_failed_fold(prefect_server, served,
                                                               tiny_synth_root, tmp_path):
    """The UI's Retry sets a failed deployment run to AwaitingRetry; `vrme serve` executes it;
    only the failed fold is made again."""
    from prefect import get_client
    from prefect.states import AwaitingRetry

    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(
        tiny_synth_root, tmp_path / "work",
        "orchestration: {retries: 0, fault: {fail_folds: ['2'], kind: data, times: 1}}\n"))
    cfg.write_text(cfg.read_text().replace("run: {out:", "run: {name: retry, out:"))
    proc = run_vrme(env, "run", "--config", str(cfg))
    assert proc.returncode == 1 and "fold(s) failed: 2" in proc.stdout, proc.stdout + proc.stderr
    assert f"vrme run --config {cfg} --folds 2" in proc.stdout
    folds = tmp_path / "work" / "runs" / "retry" / "folds"
    before = {f: (folds / f / "fold.json").stat().st_mtime_ns for f in ("1", "3")}
    failed = [r for r in flow_runs(url, "vrme-benchmark") if r.state.is_failed()
              and "run:retry" in r.tags]
    assert len(failed) == 1 and failed[0].deployment_id is not None
    served(cfg)
    with client_for(url), get_client(sync_client=True) as client:
        client.set_flow_run_state(failed[0].id, AwaitingRetry(message="Retry from the UI"))
    run = wait_final(url, failed[0].id)
    assert run.state.is_completed(), run.state
    assert run.run_count == 2
    assert (folds / "2" / "fold.json").is_file()
    after = {f: (folds / f / "fold.json").stat().st_mtime_ns for f in ("1", "3")}
    assert after == before  # the finished folds were not redone


def test_configs_a_b_a_through_the_served_deployment(prefect_server, served, tiny_synth_root,
                                                     tmp_path):
    """Default, decode.p=0.6, default again, each a run of the served deployment (as the
    schedule or the UI's Run starts them): every run reports its own config's numbers and is
    tagged with its overrides by the flow (the deployment's tags are only ``vrme``)."""
    from prefect.deployments import run_deployment

    url, env = prefect_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work",
                                    "orchestration: {retries: 0}\n")
                   .replace("run: {out:", "run: {name: aba, out:"))
    proc = served(cfg)
    from prefect import get_client

    deadline = time.time() + 120
    while True:
        try:
            with client_for(url), get_client(sync_client=True) as client:
                client.read_deployment_by_name("vrme-benchmark/aba")
            break
        except Exception:  # noqa: BLE001 - not registered yet
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(1)
    metrics = tmp_path / "work" / "runs" / "aba" / "report" / "metrics.json"
    seen = []
    for overrides in ([], ["decode.p=0.6"], []):
        with client_for(url):
            run = run_deployment("vrme-benchmark/aba", parameters={"overrides": overrides},
                                 timeout=0)
        run = wait_final(url, run.id)
        assert run.state.is_completed(), run.state
        assert {"vrme", "run:aba", *(f"set:{o}" for o in overrides)} <= set(run.tags)  # added
        seen.append(json.loads(metrics.read_text()))
    assert seen[0]["official"] == seen[2]["official"]
    assert seen[0]["fold_config_hash"] == seen[2]["fold_config_hash"] != seen[1][
        "fold_config_hash"]
    direct = tmp_path / "direct.yaml"  # the same B config run directly in a fresh folder
    direct.write_text(tiny_config_text(tiny_synth_root, tmp_path / "direct",
                                       "orchestration: {retries: 0}\n")
                      .replace("run: {out:", "run: {name: aba, out:"))
    assert run_vrme(env, "run", "--config", str(direct), "--set", "decode.p=0.6").returncode == 0
    b_alone = json.loads((tmp_path / "direct/runs/aba/report/metrics.json").read_text())
    assert seen[1]["official"] == b_alone["official"]


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
            try:  # (vrme run registered this deployment before, without a schedule)
                with client_for(url), get_client(sync_client=True) as client:
                    deployment = client.read_deployment_by_name("vrme-benchmark/tiny")
                if not deployment.schedules:
                    deployment = None
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(1)
        assert deployment is not None, proc.stdout.read() if proc.poll() is not None else ""
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == ["0 2 * * *"] and deployment.schedules[0].active
        assert deployment.parameters["config"] == str(cfg)
        deadline = time.time() + 60
        while True:  # every flow of the config is served
            try:
                with client_for(url), get_client(sync_client=True) as client:
                    client.read_deployment_by_name("vrme-ingest/tiny")
                break
            except Exception:  # noqa: BLE001 - not registered yet
                assert time.time() < deadline
                time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, out
    assert "deployments stay registered" in out and "schedule is paused" in out
    with client_for(url), get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("vrme-benchmark/tiny")
    assert dep.paused or not any(s.active for s in dep.schedules)  # paused, still registered
