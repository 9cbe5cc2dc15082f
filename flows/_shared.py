"""Helpers the flows share: config from flow parameters, running many tasks with every fault
kept to its own task, batching, the run-name callable and tagging (the names and command
lines themselves are in :mod:`flows.naming`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import Task
from prefect.task_runners import TaskRunner

from flows.naming import run_title
from tasks.common import task_options
from vrme.config import Config, load_config
from vrme.interrupt import Interrupted, stop_requested

log = logging.getLogger("vrme.flows")


def config_from_params(config: str, overrides: Sequence[str] | None = None,
                       root: str | None = None, out: str | None = None) -> Config:
    """Load the flow's config (the flow parameters are the CLI's)."""
    return load_config(config, list(overrides or []), root=root, out=out)


def configured(t: Task[..., Any], cfg: Config) -> Task[..., Any]:
    """``t`` with the config's retries, retry delay and timeout."""
    return t.with_options(**task_options(cfg.orchestration))


def call_task(t: Task[..., Any], options_from: Config, **params: Any) -> Any:
    """Run task ``t`` (with the retries and timeout of config ``options_from``) in this flow and
    return its result (also when the task reports its outputs as reused); its error is
    raised."""
    state = configured(t, options_from)(**params, return_state=True)
    return state.result()


@dataclass
class Outcome:
    """What one task run gave: its parameters, its result or the error that ended it, and
    the name of its final state (Completed, Cached, Failed, Crashed, ...)."""

    params: dict[str, Any]
    result: Any = None
    error: str = ""
    state: str = ""
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


def run_tasks(t: Task[..., Any], cfg: Config, runner: TaskRunner,
              param_sets: Iterable[dict[str, Any]], *, sequential: bool = False,
              on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run task ``t`` once per parameter set through ``runner`` and wait for all; return one
    :class:`Outcome` per set, in order. A task that fails (or crashes) is reported in its
    outcome and the others go on: a fault stays where it happened. ``sequential`` runs one at
    a time (tasks that take all the cores of this process, such as folds under the threads
    runner, so that their durations in the UI are their own). After a stop request no new
    task is started."""
    task_ = configured(t, cfg)
    params = list(param_sets)
    outcomes: list[Outcome | None] = [None] * len(params)

    def collect(i: int, fut: Any) -> None:
        fut.wait()
        state = fut.state
        result = fut.result(raise_on_failure=False)
        if state.is_completed() and not isinstance(result, BaseException):
            out = Outcome(params[i], result=result, state=state.name)
        else:
            err = result if isinstance(result, BaseException) else None
            msg = (f"{type(err).__name__}: {err}" if err is not None
                   else f"{state.name}: {state.message or 'no message'}")
            out = Outcome(params[i], error=msg, state=state.name,
                          interrupted=isinstance(err, Interrupted) or stop_requested())
        outcomes[i] = out
        if on_done is not None:
            on_done(out)

    if sequential:
        for i, p in enumerate(params):
            if stop_requested():
                outcomes[i] = Outcome(p, error="Interrupted: not started (stop requested)",
                                      state="NotRun", interrupted=True)
                continue
            collect(i, runner.submit(task_, parameters=p))
    else:
        futures = [runner.submit(task_, parameters=p) for p in params]
        for i, fut in enumerate(futures):
            collect(i, fut)
    return [o for o in outcomes if o is not None]


def batches(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Split manifest rows into batches of ``size`` videos."""
    size = max(1, size)
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def name_from_parameters(default: str) -> Callable[[], str]:
    """A ``flow_run_name`` callable: the run name from the config and overrides of the flow
    run's parameters (the same for runs from the CLI, a schedule or the UI)."""

    def name() -> str:
        from prefect.runtime import flow_run

        p = flow_run.parameters or {}
        cfg_path = p.get("config")
        overrides = p.get("overrides") or []
        try:
            cfg = config_from_params(cfg_path, overrides, p.get("root"), p.get("out"))
            base = cfg.run_name
        except Exception:  # noqa: BLE001 - a bad config fails in the flow, with its message
            from pathlib import Path

            base = Path(str(cfg_path)).stem if cfg_path else default
        extra = f"folds {','.join(p['folds'])}" if p.get("folds") else ""
        return run_title(base, overrides, extra)

    return name


def tag_this_run(tags: list[str]) -> None:
    """Add ``tags`` to the current flow run (for runs started by a schedule or the UI, whose
    tags are the deployment's)."""
    from prefect import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    current = list(ctx.flow_run.tags or [])  # as the run started: no request when complete
    missing = [t for t in tags if t not in current]
    if not missing:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=current + missing)
    except Exception as exc:  # noqa: BLE001 - tags are a convenience, never a failure
        log.debug("could not tag the flow run: %s", exc)
