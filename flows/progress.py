"""One progress view of a run: a Prefect progress artifact and the terminal's progress bar.

A flow declares its stages (synthesis, ingest, align, features, folds, report, ...) with a
weight each; :class:`RunProgress` turns "stage s: n of N done" into one percentage for the whole
run and publishes it:

- to the Prefect UI as one progress artifact per flow run, whose description names the stage
  and its counts (a retried flow run keeps updating the artifact it already has);
- to the ``vrme`` command that launched the run (:mod:`flows.launch`), as JSON lines on the
  file descriptor named by ``VRME_EVENTS_FD``: the command draws the terminal progress bar
  with an ETA from them, and receives the run's outcome the same way.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger("vrme.flows")

EVENTS_FD_ENV = "VRME_EVENTS_FD"

STAGE_WEIGHTS: dict[str, float] = {
    "synthesis": 10.0, "ingest": 2.0, "align": 12.0, "features": 40.0, "folds": 30.0,
    "final model": 30.0, "predict": 40.0, "spot": 40.0, "report": 3.0,
}
"""Share of a run's time each stage takes, roughly (the demo's proportions)."""

_ARTIFACT_EVERY_S = 2.0
_emit_lock = threading.Lock()


def stage_weight(stage: str) -> float:
    """The weight of ``stage``; a stage of one dataset of several (``features casme3``) weighs
    like its kind."""
    return STAGE_WEIGHTS.get(stage, STAGE_WEIGHTS.get(stage.split(" ")[0], 5.0))


class ScopedProgress:
    """The stages of one dataset of a multi-dataset run: ``start("align")`` is stage
    ``align <dataset>`` of the run's :class:`RunProgress`."""

    def __init__(self, progress: "RunProgress | None", scope: str) -> None:
        self.progress, self.scope = progress, scope

    def _name(self, stage: str) -> str:
        return f"{stage} {self.scope}"

    def start(self, stage: str, total: int = 0, unit: str = "") -> None:
        if self.progress is not None:
            self.progress.start(self._name(stage), total, unit)

    def advance(self, stage: str, done: int | None = None, step: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self._name(stage), done, step)

    def finish(self, stage: str, note: str = "", failed: bool = False,
               stopped: bool = False) -> None:
        if self.progress is not None:
            self.progress.finish(self._name(stage), note, failed, stopped)

    def skip(self, stage: str, note: str) -> None:
        if self.progress is not None:
            self.progress.skip(self._name(stage), note)


def emit(event: dict[str, Any]) -> None:
    """Send one event (a JSON line) to the launching command, if there is one."""
    fd = os.environ.get(EVENTS_FD_ENV)
    if not fd:
        return
    line = (json.dumps(event, default=str) + "\n").encode()
    with _emit_lock:
        try:
            os.write(int(fd), line)
        except (OSError, ValueError):
            pass


def artifact_key(run_name: str, what: str) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    name = "".join(c if c.isalnum() else "-" for c in f"vrme-{run_name}-{what}".lower())
    return "-".join(p for p in name.split("-") if p)


def _flow_run_id() -> Any:
    from prefect.runtime import flow_run

    return flow_run.get_id()


def _existing_progress_artifact(flow_run_id: Any) -> Any:
    """The progress artifact a retried flow run already has (None for a first attempt)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            type=ArtifactFilterType(any_=["progress"])))
    return arts[0].id if arts else None


class RunProgress:
    """Progress of one flow run over its ``stages`` (names of :data:`STAGE_WEIGHTS`)."""

    def __init__(self, run_name: str, stages: list[str], title: str = "") -> None:
        self.run_name = run_name
        self.stages = list(stages)
        total = sum(stage_weight(s) for s in self.stages)
        self.weights = {s: stage_weight(s) / total for s in self.stages}
        self.state: dict[str, dict[str, Any]] = {
            s: {"done": 0, "total": 0, "unit": "", "status": "pending", "note": ""}
            for s in self.stages}
        self.title = title or run_name
        self.current = ""
        self.over = False
        self._artifact = None
        self._last_publish = 0.0
        self._lock = threading.Lock()
        self.t0 = time.time()
        try:
            flow_run_id = _flow_run_id()
            self._artifact = _existing_progress_artifact(flow_run_id) if flow_run_id else None
            if self._artifact is None and flow_run_id:
                from prefect.artifacts import create_progress_artifact

                self._artifact = create_progress_artifact(
                    progress=0.0, key=artifact_key(run_name, "progress"),
                    description=self.describe())
        except Exception as exc:  # noqa: BLE001 - progress must never fail a run
            log.debug("progress artifact unavailable: %s", exc)
        self._publish(force=True)

    # -- updates --------------------------------------------------------------------------
    def start(self, stage: str, total: int = 0, unit: str = "") -> None:
        """Stage ``stage`` begins, with ``total`` items (videos, folds) to do."""
        with self._lock:
            st = self.state.setdefault(stage, {"done": 0, "total": 0, "unit": "", "note": ""})
            st.update(status="running", total=int(total), done=0, unit=unit,
                      started=time.time())
            self.current = stage
        log.info("stage %s: %s", stage, f"{total} {unit}" if total else "started")
        self._publish(force=True)

    def advance(self, stage: str, done: int | None = None, step: int = 1) -> None:
        """``done`` items of ``stage`` finished (or ``step`` more)."""
        with self._lock:
            st = self.state[stage]
            st["done"] = int(done) if done is not None else st["done"] + step
        self._publish()

    def finish(self, stage: str, note: str = "", failed: bool = False,
               stopped: bool = False) -> None:
        """Stage ``stage`` is over (``note``: what it did, e.g. '8 computed, 2 cached');
        ``failed``: some of it failed; ``stopped``: a stop request ended it early."""
        status = "stopped" if stopped else "failed" if failed else "done"
        with self._lock:
            st = self.state[stage]
            st.update(status=status, note=note)
            if "started" in st:
                st["seconds"] = round(time.time() - st["started"], 3)
            if status == "done":
                st["done"] = st["total"]
        if note:
            log.info("stage %s %s: %s", stage, status, note)
        self._publish(force=True)

    def skip(self, stage: str, note: str) -> None:
        """Stage ``stage`` does not run (``note`` says why)."""
        with self._lock:
            self.state[stage].update(status="skipped", note=note)
        self._publish(force=True)

    # -- views ----------------------------------------------------------------------------
    def fraction(self) -> float:
        """Share of the whole run done, 0..1 (finished and skipped stages count fully; 1 once
        the run is over, whatever its outcome)."""
        if self.over:
            return 1.0
        f = 0.0
        for s, w in self.weights.items():
            st = self.state[s]
            if st["status"] in ("done", "skipped", "failed", "stopped"):
                f += w
            elif st["status"] == "running" and st["total"]:
                f += w * min(1.0, st["done"] / st["total"])
        return min(1.0, f)

    def describe(self) -> str:
        """One line per stage, for the artifact's description."""
        parts = []
        for s in self.stages:
            st = self.state[s]
            count = f" {st['done']}/{st['total']} {st['unit']}".rstrip() if st["total"] else ""
            note = f" ({st['note']})" if st["note"] else ""
            parts.append(f"{s}: {st['status']}{count}{note}")
        return f"{self.title}: " + "; ".join(parts)

    def _publish(self, force: bool = False) -> None:
        frac = self.fraction()
        emit({"type": "progress", "fraction": frac, "stage": self.current,
              "stages": {s: dict(self.state[s]) for s in self.stages}})
        now = time.time()
        if self._artifact is None or (not force and now - self._last_publish < _ARTIFACT_EVERY_S):
            return
        self._last_publish = now
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, progress=round(100.0 * frac, 1),
                                     description=self.describe())
        except Exception as exc:  # noqa: BLE001 - progress must never fail a run
            log.debug("progress artifact not updated: %s", exc)

    def write(self, path: Any) -> None:
        """Write the stages so far (status, counts, note, start time and seconds) as JSON to
        ``path`` (the run's ``stages.json``, which the report shows). Never raises."""
        from vrme.io import write_json_atomic

        try:
            write_json_atomic(path, {"stages": {s: dict(self.state[s]) for s in self.stages}})
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    def complete(self) -> None:
        """The run is over (whatever its outcome): the artifact shows 100 %."""
        for s in self.stages:
            if self.state[s]["status"] in ("pending", "running"):
                self.state[s]["status"] = "not run"
        self.over = True
        self._publish(force=True)
