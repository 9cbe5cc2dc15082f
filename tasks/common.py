"""What every vrme Prefect task shares: retry rules, task options, task runners, states.

Tasks wrap library calls only. Their parameters are small (a config, names, paths) and their
results are small dicts of paths and counts; large arrays never pass through Prefect.

Prefect's result cache is not used: whether an output is done and valid is decided by the
record the output carries (its parameters, input fingerprints and code version; see
:mod:`vrme.training.train`, :mod:`vrme.features.align`, :mod:`vrme.features.flow`,
:mod:`vrme.data.ingest`). A task whose outputs are valid returns at once in the state ``Cached``
(:func:`reused`), so the UI shows what was reused without a second cache that could disagree with
the files.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import Completed, State

from vrme.config import OrchestrationConfig
from vrme.errors import UserError

log = logging.getLogger("vrme.tasks")

TASK_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
"""Options of every vrme task: no Prefect result cache (the outputs' own records decide)."""


class TransientError(RuntimeError):
    """An error that can pass on a second try (used by the test-only fault hook too)."""


# A full disk (ENOSPC, EDQUOT) is deliberately absent: it does not empty itself within a retry
# delay, and retrying every remaining task would only add delays before the same failure. The
# task fails at once naming the file; a rerun after freeing space reuses all finished work.
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EIO, errno.ETIMEDOUT,
                     errno.ECONNRESET, errno.ECONNREFUSED, errno.ESTALE, errno.EINTR}


def is_transient(exc: BaseException | None) -> bool:
    """True for errors worth retrying: out of memory, a lost worker or connection, an I/O
    hiccup, a timeout. Data and config errors, a full disk, permission errors (a read-only
    folder) and programming errors are not retried."""
    if exc is None:
        return False
    if isinstance(exc, UserError):
        return False
    if isinstance(exc, (TransientError, MemoryError, TimeoutError, ConnectionError)):
        return True
    name = type(exc).__name__
    if name in {"KilledWorker", "CommClosedError", "OutOfMemoryError", "BrokenProcessPool",
                "WorkerLostError"}:
        return True
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return False


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only :func:`is_transient` failures."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - the result itself may be unreadable
        exc = err
    retry = isinstance(exc, BaseException) and is_transient(exc)
    log.info("task %s failed with %s: %s", task_run.name, type(exc).__name__,
             "retrying" if retry else "not retried (not a transient error)")
    return retry


def task_options(orch: OrchestrationConfig, **extra: Any) -> dict[str, Any]:
    """``Task.with_options`` arguments for retries, delays and timeout from the config."""
    opts: dict[str, Any] = dict(
        TASK_DEFAULTS,
        retries=orch.retries,
        retry_delay_seconds=orch.retry_delay_s,
        retry_condition_fn=retry_if_transient,
        timeout_seconds=orch.timeout_s,
    )
    opts.update(extra)
    return opts


def reused(result: Any, what: str) -> State[Any]:
    """The state of a task that found its outputs already valid: ``Cached`` (a completed state)
    carrying ``result``; ``what`` says what was reused."""
    return Completed(name="Cached", message=f"reused: {what}", data=result)


def task_runner(orch: OrchestrationConfig):  # noqa: ANN201 - a Prefect TaskRunner
    """The task runner the config asks for: threads, processes, or a Dask cluster."""
    if orch.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=orch.max_workers)
    if orch.task_runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=orch.max_workers)
    from prefect_dask import DaskTaskRunner

    if orch.dask_address:
        return DaskTaskRunner(address=orch.dask_address)
    kwargs: dict[str, Any] = {"processes": True}
    if orch.max_workers:
        kwargs["n_workers"] = orch.max_workers
        kwargs["threads_per_worker"] = 1
    return DaskTaskRunner(cluster_kwargs=kwargs)
