"""How a vrme flow run ends: Completed with its summary, Failed naming every failed fold and
video with its reason and the command that reruns it, or Cancelled after a stop request.

Failures are also written to ``<run>/failures.json`` (the run folder, which is writable when a
fold folder is not), so the report and the next run can name them.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from prefect.states import Cancelled, Completed, Failed, State

from flows.progress import RunProgress, emit
from vrme.catalog import RUN_FAILURES_FILE as FAILURES_FILE

__all__ = ["FAILURES_FILE", "RunFailed", "failure_message", "finish_run", "record_failures"]

log = logging.getLogger("vrme.flows")



class RunFailed(RuntimeError):
    """Some folds, videos or the report failed; the message names each and how to rerun."""


def failure_message(folds: dict[str, str], videos: dict[str, str], report_error: str = "",
                    rerun: str = "", fold_rerun: str = "",
                    settings: dict[str, str] | None = None) -> str:
    """One message naming every failure, the root causes (videos) first."""
    parts = []
    if settings:
        detail = "; ".join(f"{s}: {m}" for s, m in settings.items())
        parts.append(f"{len(settings)} setting(s) failed ({detail})")
    if videos:
        detail = "; ".join(f"{v}: {m}" for v, m in sorted(videos.items()))
        parts.append(f"{len(videos)} video(s) failed and were left out ({detail})")
    if folds:
        names = ",".join(sorted(folds, key=lambda s: (len(s), s)))
        detail = "; ".join(f"fold {f}: {m}" for f, m in sorted(folds.items()))
        parts.append(f"{len(folds)} fold(s) failed: {names} ({detail})")
    if report_error:
        parts.append(f"the report could not be built: {report_error}")
    msg = ". ".join(parts)
    commands = []
    if folds and fold_rerun:
        commands.append(f"`{fold_rerun}` reruns just the failed folds")
    if rerun and (videos or report_error or settings or not fold_rerun):
        commands.append(f"`{rerun}` reruns what is missing")
    if commands:
        msg += ". Fix the cause, then " + " and ".join(commands) + " (finished work is reused)"
        msg += ", or retry this flow run."
    return msg


def record_failures(path: Path, folds: dict[str, str], videos: dict[str, str],
                    finished_folds: list[str], flow_run: str | None) -> None:
    """Merge this run's failures into ``failures.json``: folds that finished now are removed,
    new failures replace old ones. A write that fails is logged, never raised."""
    from vrme.io import write_json_atomic

    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    fold_failures = {f: m for f, m in (old.get("folds") or {}).items()
                     if f not in finished_folds}
    stamp = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    for f, m in folds.items():
        fold_failures[f] = {"message": m, "flow_run": flow_run, "time": stamp}
    data = {"folds": fold_failures,
            "videos": {v: {"message": m, "flow_run": flow_run, "time": stamp}
                       for v, m in videos.items()}}
    try:
        if fold_failures or videos or path.exists():
            write_json_atomic(path, data)
    except OSError as exc:
        log.error("could not record the failures in %s: %s", path, exc)


def finish_run(progress: RunProgress, summary: dict[str, Any], *,
               folds: dict[str, str] | None = None, videos: dict[str, str] | None = None,
               report_error: str = "", interrupted: bool = False, rerun: str = "",
               fold_rerun: str = "", settings: dict[str, str] | None = None) -> State[Any]:
    """The flow's final state (returned by the flow): Cancelled after a stop request, Failed
    when anything failed (message from :func:`failure_message`), else Completed. Marks the
    progress view complete and sends the outcome to the launching command."""
    folds, videos = dict(folds or {}), dict(videos or {})
    progress.complete()
    if interrupted:
        message = f"stopped on request; finished work is kept. Resume with `{rerun}`."
        state: State[Any] = Cancelled(message=message)
        status = "interrupted"
    elif folds or videos or report_error or settings:
        message = failure_message(folds, videos, report_error, rerun, fold_rerun, settings)
        state = Failed(message=message)
        status = "failed"
        log.error(message)
    else:
        message = "completed"
        state = Completed(message=message, data=summary)
        status = "completed"
    emit({"type": "outcome", "status": status, "message": message, "summary": summary,
          "failed_folds": folds, "failed_videos": videos, "rerun": rerun,
          "fold_rerun": fold_rerun, "stages": progress.state})
    return state
