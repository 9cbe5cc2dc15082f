"""The process that executes one vrme flow run: ``python -m flows.engine FLOW_NAME``.

The ``vrme`` command (:mod:`flows.launch`) starts this process as soon as it knows which flow
it runs, in a session of its own, so Ctrl-C in the terminal reaches only the command, which then
asks this process to stop (the stop file of :mod:`vrme.interrupt`). While the command reads its
config, checks the inputs and finds a Prefect API, this process imports Prefect and the flow's
modules (the larger part of the start-up); then it reads its job, one JSON line on standard
input (:func:`run_job`): the flow run the command created meanwhile (or, when the command
could not, one it creates from the deployment, whose id it tells the command in an event), and
executes the run. An empty standard input (the command ended without
a job: a refused input, ``--help``) ends it at once. This process also stops when the command
that started it is gone.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any

FLOWS: dict[str, str] = {
    "vrme-benchmark": "flows.benchmark:benchmark_flow",
    "vrme-ingest": "flows.ingest:ingest_flow",
    "vrme-align": "flows.features:align_flow",
    "vrme-features": "flows.features:features_flow",
    "vrme-train": "flows.train:train_flow",
    "vrme-report": "flows.report:report_flow",
    "vrme-train-final": "flows.final:train_final_flow",
    "vrme-predict": "flows.final:predict_flow",
    "vrme-spot": "flows.final:spot_flow",
    "vrme-sweep": "flows.sweep:sweep_flow",
}
"""Every vrme flow by name, as ``module:object``."""

EXIT_CODES = {"COMPLETED": 0, "FAILED": 1, "CRASHED": 1, "CANCELLED": 130, "CANCELLING": 130}


def load_flow(name: str) -> Any:
    """The flow object called ``name`` (a key of :data:`FLOWS`)."""
    module, obj = FLOWS[name].split(":")
    return getattr(importlib.import_module(module), obj)


def stop_on_sigterm() -> None:
    """On SIGTERM (a cancelled Prefect run, ``kill``) ask every loop to stop, then let the
    signal's previous handler run. Call from the main thread."""
    from vrme.interrupt import request_stop

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        request_stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def _watch_parent(parent: int) -> None:
    """The command that started this process is gone (killed): end at once, as it did. (On
    Linux the kernel's parent-death signal usually comes first.)"""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(137)


def deployment_for(flow_name: str, deployment: str, parameters: dict[str, Any]) -> Any:
    """The id of deployment ``<flow_name>/<deployment>``, registered (as a served deployment,
    no schedule) if it does not exist yet; an existing one is left as it is (its schedule,
    if ``vrme serve`` gave it one, is kept)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flows import EntrypointType

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(f"{flow_name}/{deployment}").id
        except ObjectNotFound:
            pass
    dep = load_flow(flow_name).to_deployment(
        name=deployment, parameters=parameters, tags=["vrme"],
        entrypoint_type=EntrypointType.MODULE_PATH)
    return dep.apply()


def create_run(flow_name: str, job: dict[str, Any]) -> Any:
    """The flow run of ``job`` (deployment, parameters, run title, tags), created from the
    deployment ``<flow_name>/<deployment>`` (registered on first use), Pending."""
    from prefect import get_client
    from prefect.states import Pending

    dep_id = deployment_for(flow_name, job["deployment"], job["parameters"])
    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(
            dep_id, parameters=job["parameters"], name=job["run_title"], tags=job["tags"],
            state=Pending())


def run_job(flow_name: str, job: dict[str, Any]) -> int:
    """Execute ``job`` (from the command): the Prefect API at ``api_url``, the stop file at
    ``stop_file``, the flow run ``flow_run`` the command created (the API's JSON of it,
    :func:`flows.launch.create_run_early`); without one, the run is
    created here (:func:`create_run`) and its id sent as an event."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.flow_engine import run_flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.progress import emit
    from vrme.errors import UserError
    from vrme.interrupt import STOP_FILE_ENV, stop_requested

    os.environ["PREFECT_API_URL"] = job["api_url"]  # for this process's workers too
    if job.get("stop_file"):
        os.environ[STOP_FILE_ENV] = job["stop_file"]
    with temporary_settings({PREFECT_API_URL: job["api_url"]}):
        if stop_requested():  # stopped before the run existed
            return 130
        try:
            flow_run = FlowRun.model_validate(job["flow_run"]) if job.get("flow_run") else \
                create_run(flow_name, job)
        except Exception as exc:  # noqa: BLE001 - the API refused or is gone: one line
            emit({"type": "error", "user_error": False,
                  "message": f"could not create the flow run: {type(exc).__name__}: {exc}"})
            return 1
        if not job.get("flow_run"):
            emit({"type": "flow_run", "id": str(flow_run.id)})
        state = run_flow(load_flow(flow_name), flow_run=flow_run, return_type="state")
    if state.is_failed() or state.is_crashed():
        err = state.result(raise_on_failure=False)
        if isinstance(err, UserError):  # bad input or config: the command exits 2
            emit({"type": "error", "user_error": True, "message": str(err)})
        elif isinstance(err, BaseException):
            emit({"type": "error", "user_error": False,
                  "message": f"{type(err).__name__}: {err}"})
    return EXIT_CODES.get(state.type.value, 1)


def main(flow_name: str) -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    stop_on_sigterm()
    import prefect.flow_engine  # noqa: F401 - the start-up work, done before the job comes

    from flows.commands._common import quiet_expected_tracebacks

    load_flow(flow_name)
    quiet_expected_tracebacks()
    line = sys.stdin.readline()
    if not line.strip():  # the command ended without starting a run
        return 0
    return run_job(flow_name, json.loads(line))


if __name__ == "__main__":  # pragma: no cover - runs as its own process
    sys.exit(main(sys.argv[1]))
