"""How the ``vrme`` command runs a flow: as a run of a deployment, in a process of its own,
watched from the terminal.

1. The Prefect API: the server named by ``PREFECT_API_URL`` (checked at once, one line if it
   does not answer), else a temporary one (:mod:`flows.tempserver`).
2. The run executes in a child process (:mod:`flows.engine`) in a session of its own, started
   as early as the command knows its flow (:func:`prewarm`, from the console script): it
   imports Prefect and the flow's modules while the command reads its config and checks the
   inputs, then gets its job on standard input.
3. The flow run is created from the deployment ``<flow>/<run name>`` by the command itself,
   over the REST API while the child still imports Prefect (:func:`create_run_early`), or, the
   first time (the deployment is registered then, with no schedule), by the child. It is named
   after the run and its overrides and tagged with the run name, the config file and every
   override. Being a deployment run, it has a **Retry** button in the UI, executed by ``vrme
   serve`` (see the README). The command relays its log lines, draws one progress bar for the
   whole run (with an ETA) from the child's events (:mod:`flows.progress`), and receives the
   run's outcome. A run whose child ends before the run does is marked Crashed.
4. Ctrl-C or SIGTERM: the command creates the run's stop file; every loop in the child (and in
   its worker processes) stops at its next check and the run ends Cancelled. If the child is
   still there after :data:`STOP_GRACE_S`, its whole process group is killed (every output is
   written atomically, so nothing half-written remains) and the run is marked Cancelled. A
   second Ctrl-C kills at once. The command then says what finished and how to resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_GRACE_S = 8.0
"""Seconds a stopped run may take to end by itself before it is killed."""


@dataclass
class LaunchResult:
    """How a launched flow run ended."""

    status: str  # completed | failed | interrupted | error
    exit_code: int
    outcome: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    flow_run_id: str = ""
    user_error: bool = False
    stages: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def prefect_api(say: Callable[[str], None], services: bool = False) -> Iterator[str]:
    """Yield the URL of a Prefect API to use: ``PREFECT_API_URL`` when set (it must answer),
    else a temporary server, exported as ``PREFECT_API_URL`` to child processes meanwhile."""
    from flows.tempserver import PrefectStateError, healthy, temporary_server

    url = os.environ.get("PREFECT_API_URL") or _profile_api_url()
    if url:
        if not healthy(url, timeout=5.0):
            raise PrefectStateError(f"the Prefect API at {url} (PREFECT_API_URL) does not answer: "
                                    "start it with `prefect server start`, or unset "
                                    "PREFECT_API_URL to let vrme use a temporary server")
        with _exported(url):  # a URL from a Prefect profile reaches the child processes too
            yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_server(say, services=services) as url:
        with _exported(url), temporary_settings({PREFECT_API_URL: url}):
            yield url


def _profile_api_url() -> str:
    """The API URL of the active Prefect profile (imports Prefect's settings: only when the
    environment names none)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or ""


@contextlib.contextmanager
def _exported(url: str) -> Iterator[None]:
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


class _Relay:
    """Reads the child's output and events in threads."""

    def __init__(self, proc: subprocess.Popen, events_fd: int, show: Callable[[str], None],
                 on_event: Callable[[dict[str, Any]], None]):
        self.threads = [
            threading.Thread(target=self._lines, args=(proc.stdout, show), daemon=True),
            threading.Thread(target=self._events, args=(events_fd, on_event), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _lines(stream: Any, show: Callable[[str], None]) -> None:
        for raw in iter(stream.readline, b""):
            show(raw.decode(errors="replace").rstrip("\n"))

    @staticmethod
    def _events(fd: int, on_event: Callable[[dict[str, Any]], None]) -> None:
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                try:
                    on_event(json.loads(raw))
                except ValueError:
                    continue

    def join(self, timeout: float = 5.0) -> None:
        for t in self.threads:
            t.join(timeout)


class _Display:
    """One progress bar for the whole run (with an ETA) on a terminal; plain lines otherwise."""

    def __init__(self, title: str) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.title = title
        self.progress = None
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=True)
            self.task = self.progress.add_task(f"{title}: starting", total=1000)
            self.progress.start()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, event: dict[str, Any]) -> None:
        if self.progress is None:
            return
        stage = event.get("stage") or ""
        st = (event.get("stages") or {}).get(stage, {})
        count = f" {st.get('done', 0)}/{st.get('total')} {st.get('unit', '')}" if st.get(
            "total") else ""
        self.progress.update(self.task, completed=int(1000 * float(event.get("fraction", 0))),
                             description=f"{self.title}: {stage}{count}".rstrip())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def stop_file_for(work_dir: Path | None) -> Path:
    """Where a run's stop file goes: the work folder (remote Dask workers on a shared folder see
    it too), else a temporary folder."""
    folder = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f".vrme-stop-{os.getpid()}-{time.time_ns()}"


COMMAND_FLOWS = {
    "run": "vrme-benchmark", "demo": "vrme-benchmark", "ingest": "vrme-ingest",
    "align": "vrme-align", "features": "vrme-features", "train-final": "vrme-train-final",
    "predict": "vrme-predict", "spot": "vrme-spot", "sweep": "vrme-sweep",
}
"""The flow each ``vrme`` command runs (the commands :func:`prewarm` starts an engine for)."""


class _Engine:
    """A flow engine process (:mod:`flows.engine`), started before its job is known: it imports
    Prefect and the flow's modules meanwhile, then reads the job from its standard input."""

    def __init__(self, flow_name: str):
        from flows.tempserver import die_with_parent

        self.flow_name = flow_name
        self.read_fd, write_fd = os.pipe()
        env = dict(os.environ, VRME_EVENTS_FD=str(write_fd), PYTHONUNBUFFERED="1")
        env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "vrme")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.engine", flow_name], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL))
        os.close(write_fd)
        self.started = False

    def start(self, job: dict[str, Any]) -> None:
        """Send the job; from here the command's relay owns the engine's output streams."""
        self.started = True
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # a dead engine: its exit code says so
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.close()

    def discard(self) -> None:
        """End an engine that got no job (nothing of it is worth waiting for); an engine that
        got one is left to its run."""
        if self.started:
            return
        self.started = True
        _kill_group(self.proc)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


_prewarmed: dict[str, _Engine] = {}


def prewarm(command: str) -> None:
    """Start the engine of ``command``'s flow now (see :data:`COMMAND_FLOWS`), so that its
    start-up overlaps the command's own; :func:`launch` uses it, :func:`discard_prewarmed`
    (at exit) ends it when the command ends without a run."""
    flow_name = COMMAND_FLOWS.get(command)
    if flow_name is None or flow_name in _prewarmed:
        return
    _prewarmed[flow_name] = _Engine(flow_name)
    if len(_prewarmed) == 1:
        import atexit

        atexit.register(discard_prewarmed)


def discard_prewarmed() -> None:
    """End every started engine that got no job."""
    while _prewarmed:
        _prewarmed.popitem()[1].discard()


def launch(flow_name: str, parameters: dict[str, Any], *, deployment: str, run_title: str,
           tags: list[str], work_dir: Path | None = None, title: str = "") -> LaunchResult:
    """Run flow ``flow_name`` with ``parameters`` as a run of deployment
    ``<flow_name>/<deployment>`` in a child process, watched from here (module docstring)."""
    display = _Display(title or run_title)
    engine = _prewarmed.pop(flow_name, None) or _Engine(flow_name)
    try:
        with prefect_api(display.line) as api_url:
            return _launch(engine, parameters, deployment, run_title, tags, work_dir,
                           display, api_url)
    finally:
        engine.discard()  # when no job was sent (the API did not answer, say)
        display.close()


def _launch(engine: _Engine, parameters: dict[str, Any], deployment: str, run_title: str,
            tags: list[str], work_dir: Path | None, display: _Display,
            api_url: str) -> LaunchResult:
    flow_name, proc = engine.flow_name, engine.proc
    ui = api_url[:-4] if api_url.endswith("/api") else api_url
    stop_file = stop_file_for(work_dir)
    state: dict[str, Any] = {"outcome": {}, "error": {}, "stages": {}, "flow_run_id": ""}

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("type") == "flow_run":
            state["flow_run_id"] = ev["id"]
            display.line(f"flow run '{run_title}' ({flow_name}/{deployment}): "
                         f"{ui}/runs/flow-run/{ev['id']}")
        elif ev.get("type") == "progress":
            state["stages"] = ev.get("stages", state["stages"])
            display.update(ev)
        elif ev.get("type") == "outcome":
            state["outcome"] = ev
            state["stages"] = ev.get("stages", state["stages"])
        elif ev.get("type") == "error":
            state["error"] = ev

    stop = {"at": None, "count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        stop["count"] += 1
        if stop["at"] is None:
            stop["at"] = time.monotonic()
            with contextlib.suppress(OSError):
                stop_file.touch()
            display.line(f"{signal.Signals(signum).name}: stopping the run (finished work is "
                         "kept); press Ctrl-C again to stop at once")
        if stop["count"] > 1:
            _kill_group(proc)

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    early = {} if stop["at"] is not None else create_run_early(
        api_url, flow_name, deployment, parameters, run_title, tags)
    if early:
        on_event({"type": "flow_run", "id": early["id"]})
    engine.start({"api_url": api_url, "deployment": deployment, "parameters": parameters,
                  "run_title": run_title, "tags": tags, "stop_file": str(stop_file),
                  "flow_run": early or None})
    relay = _Relay(proc, engine.read_fd, display.line, on_event)
    killed = False
    try:
        while proc.poll() is None:
            if stop["at"] is not None and time.monotonic() - stop["at"] > STOP_GRACE_S:
                killed = True
                _kill_group(proc)
            time.sleep(0.1)
        relay.join()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        with contextlib.suppress(OSError):
            stop_file.unlink()
    fr_id = state["flow_run_id"]
    interrupted = stop["at"] is not None or proc.returncode == 130
    if interrupted or killed or proc.returncode < 0:
        if fr_id:
            _mark_cancelled(fr_id, killed)
    elif fr_id and proc.returncode != 0 and not state["outcome"]:
        _mark_crashed(fr_id, proc.returncode)  # the engine died before the run ended
        if work_dir is not None:
            from vrme.io import clean_work_folder

            clean_work_folder(work_dir)
    outcome = state["outcome"]
    if interrupted:
        return LaunchResult("interrupted", 130, outcome, outcome.get("message", ""), fr_id,
                            stages=state["stages"])
    if outcome:
        status = outcome.get("status", "failed")
        return LaunchResult(status, 0 if status == "completed" else 1, outcome,
                            outcome.get("message", ""), fr_id, stages=state["stages"])
    err = state["error"]
    message = err.get("message") or (fr_id and _final_message(fr_id)) or (
        f"the flow run ended with exit code {proc.returncode}")
    user = bool(err.get("user_error"))
    return LaunchResult("error", 2 if user else 1, {}, message, fr_id, user_error=user,
                        stages=state["stages"])


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def create_run_early(api_url: str, flow_name: str, deployment: str, parameters: dict[str, Any],
                     run_title: str, tags: list[str]) -> dict[str, Any]:
    """The job's flow run (the API's JSON of it), created here from deployment
    ``<flow_name>/<deployment>`` over the REST API (urllib: the command imports no Prefect),
    Pending, named and tagged as the engine would (:func:`flows.engine.create_run`), while
    the engine is still importing Prefect. ``{}`` when the deployment does not exist yet (its
    first run: the engine registers it) or the API refuses (authentication, say): then the
    engine creates the run, as before, with Prefect's client and its error messages."""
    import urllib.parse
    import urllib.request

    def quoted(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{quoted(flow_name)}/"
                                    f"{quoted(deployment)}", timeout=10) as r:
            dep_id = json.load(r)["id"]
        body = {"parameters": parameters, "tags": tags, "name": run_title,
                "state": {"type": "PENDING", "name": "Pending"}}
        req = urllib.request.Request(f"{api_url}/deployments/{dep_id}/create_flow_run",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            run = json.load(r)
        run["id"] = str(run["id"])
        return run
    except (OSError, ValueError, KeyError, TypeError):  # HTTP errors are OSErrors
        return {}


def _mark_cancelled(flow_run_id: Any, killed: bool) -> None:
    """Mark a stopped run Cancelled in Prefect, unless it already reached a final state."""
    from prefect.states import Cancelled

    how = "killed after the grace period" if killed else "stopped"
    _mark_final(flow_run_id, Cancelled(
        message=f"stopped from the vrme command (Ctrl-C or SIGTERM); {how}"))


def _mark_crashed(flow_run_id: Any, exit_code: int) -> None:
    """Mark Crashed a run whose engine ended (exit code ``exit_code``) before the run did."""
    from prefect.states import Crashed

    _mark_final(flow_run_id, Crashed(
        message=f"the vrme engine process ended with exit code {exit_code} before the run did"))


def _mark_final(flow_run_id: Any, final: Any) -> None:
    """Set state ``final`` on a run, unless it already reached a final state."""
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            if run.state is None or not run.state.is_final():
                client.set_flow_run_state(flow_run_id, final, force=True)
    except Exception:  # noqa: BLE001 - the API may be gone as well; nothing else to do
        pass


def _final_message(flow_run_id: Any) -> str:
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        return run.state.message if run.state else ""
    except Exception:  # noqa: BLE001
        return ""


def describe_stages(stages: dict[str, Any]) -> str:
    """'ingest done; align 8/8 videos; features 3/8 videos; folds not run' from the last
    progress event."""
    parts = []
    for name, st in stages.items():
        status = st.get("status", "")
        if status in ("stopped", "failed") and st.get("note"):
            parts.append(f"{name} {status} ({st['note']})")
        elif st.get("total") and status != "done":
            parts.append(f"{name} {st.get('done', 0)}/{st['total']} {st.get('unit', '')}".rstrip())
        else:
            parts.append(f"{name} {status}")
    return "; ".join(parts)
