"""The process that executes one vrme flow run: ``python -m flows.engine FLOW_RUN_ID``.

The ``vrme`` command (:mod:`flows.launch`) creates the flow run through the Prefect API and
starts this process in a session of its own, so Ctrl-C in the terminal reaches only the
command, which then asks this process to stop (the stop file of :mod:`vrme.interrupt`). This
process also stops when the command that started it is gone.
"""

from __future__ import annotations

import importlib
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


def main(flow_run_id: str) -> int:
    from prefect import get_client
    from prefect.flow_engine import load_flow_run, run_flow

    from flows.commands._common import quiet_expected_tracebacks
    from flows.progress import emit
    from vrme.errors import UserError

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    stop_on_sigterm()
    quiet_expected_tracebacks()
    flow_run = load_flow_run(flow_run_id)
    with get_client(sync_client=True) as client:
        name = client.read_flow(flow_run.flow_id).name
    state = run_flow(load_flow(name), flow_run=flow_run, return_type="state")
    if state.is_failed() or state.is_crashed():
        err = state.result(raise_on_failure=False)
        if isinstance(err, UserError):  # bad input or config: the command exits 2
            emit({"type": "error", "user_error": True, "message": str(err)})
        elif isinstance(err, BaseException):
            emit({"type": "error", "user_error": False,
                  "message": f"{type(err).__name__}: {err}"})
    return EXIT_CODES.get(state.type.value, 1)


if __name__ == "__main__":  # pragma: no cover - runs as its own process
    sys.exit(main(sys.argv[1]))
