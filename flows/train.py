"""Flow ``vrme-train``: one task per leave-one-subject-out fold.

A fold that fails does not stop the others: its error is recorded (in the fold folder when it
can be written, and always in ``<run>/failures.json``) and the run goes on. Under the threads
runner folds run one at a time (each takes every core of the process, and the UI then shows
each fold's own duration); under processes or Dask they run side by side.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import TaskRunner

from flows._shared import (
    Outcome,
    config_from_params,
    name_from_parameters,
    run_tasks,
    tag_this_run,
)
from flows.naming import cli_command, run_tags
from flows.progress import RunProgress
from tasks.common import task_runner
from tasks.pipeline import train_fold_task
from vrme.catalog import FOLD_FAILED_FILE, fold_dir, labels_path, manifest_path, run_manifest_path
from vrme.config import Config
from vrme.features.flow import features_dir as features_dir_of
from vrme.io import clean_work_folder, write_json_atomic

log = logging.getLogger("vrme.flows")


def fold_threads(cfg: Config, n_folds: int) -> Config:
    """``cfg`` with ``train.threads`` set, when it is not, to share the cores between the folds
    that run side by side (all of them for one fold at a time)."""
    if cfg.train.threads is not None:
        return cfg
    parallel = 1
    if cfg.orchestration.task_runner != "threads":
        parallel = min(n_folds, cfg.orchestration.max_workers or os.cpu_count() or 1)
    cfg = cfg.model_copy(deep=True)
    cfg.train.threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    return cfg


def train_step(cfg: Config, runner: TaskRunner, manifest_path: str, labels_path: str,
               folds: list[str] | None = None, refresh: bool = False,
               force_folds: list[str] | None = None, progress: RunProgress | None = None,
               flow_run: str | None = None) -> tuple[dict[str, dict], dict[str, str], bool]:
    """Run one task per fold and wait for all; returns (summaries of finished folds, error
    message of every failed fold, whether a stop request interrupted them). ``force_folds``
    are made again even if their outputs are valid."""
    from vrme.errors import DataError
    from vrme.training.loso import loso_subjects

    all_folds = loso_subjects(manifest_path, labels_path)
    which = [str(f) for f in folds] if folds else all_folds
    unknown = sorted(set(which) - set(all_folds))
    if unknown:
        raise DataError(f"unknown fold(s) {unknown}; this dataset's folds are {all_folds}")
    cfg = fold_threads(cfg, len(which))
    feats = str(features_dir_of(cfg))
    run_dir = str(cfg.run_dir)
    forced = {str(f) for f in (force_folds or [])}
    if progress is not None:
        progress.start("folds", len(which), "folds")
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    interrupted = [False]

    def on_done(o: Outcome) -> None:
        f = o.params["fold"]
        if o.ok:
            done[f] = {**o.result, "reused": o.state == "Cached"}
            _clear_fold_failure(run_dir, f)
        elif o.interrupted:
            interrupted[0] = True
        else:
            failed[f] = o.error
            log.error("fold %s failed: %s", f, o.error)
            _record_fold_failure(run_dir, f, o.error, flow_run)
        if progress is not None:
            progress.advance("folds", len(done) + len(failed))

    params = [dict(cfg=cfg, fold=f, manifest_path=manifest_path, labels_path=labels_path,
                   features_dir=feats, run_dir=run_dir, force=refresh or f in forced)
              for f in which]
    run_tasks(train_fold_task, cfg, runner, params, on_done=on_done,
              sequential=cfg.orchestration.task_runner == "threads")
    if progress is not None:
        hows = [d.get("how", "trained") for d in done.values()]
        note = ", ".join(f"{hows.count(h)} {h}" for h in ("trained", "decoded", "cached")
                         if hows.count(h))
        progress.finish("folds", note + (f", {len(failed)} failed" if failed else ""),
                        failed=bool(failed), stopped=interrupted[0])
    return done, failed, interrupted[0]


def _record_fold_failure(run_dir: str, fold: str, message: str, flow_run: str | None) -> None:
    """``failed.json`` in the fold folder, when that folder can be written (the run-level
    ``failures.json`` is written at the end of the run in any case)."""
    try:
        write_json_atomic(fold_dir(run_dir, fold) / FOLD_FAILED_FILE,
                          {"fold": fold, "message": message, "flow_run": flow_run})
    except OSError as exc:
        log.warning("fold %s: could not write its failed.json (%s); the failure is recorded in "
                    "%s", fold, exc, Path(run_dir) / "failures.json")


def _clear_fold_failure(run_dir: str, fold: str) -> None:
    try:
        (fold_dir(run_dir, fold) / FOLD_FAILED_FILE).unlink(missing_ok=True)
    except OSError:
        pass


def flow_run_name() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.get_name()


@flow(name="vrme-train", flow_run_name=name_from_parameters("train"), persist_result=False)
def train_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
               out: str | None = None, folds: list[str] | None = None,
               refresh: bool = False) -> dict[str, Any]:
    """Train every leave-one-subject-out fold (or the named ones) on cached features."""
    from flows.outcome import FAILURES_FILE, finish_run, record_failures

    cfg = config_from_params(config, overrides, root, out)
    tag_this_run(run_tags(cfg.run_name, config, overrides))
    clean_work_folder(cfg.out_dir)
    manifest = _run_manifest(cfg)
    progress = RunProgress(cfg.run_name, ["folds"], title=f"folds of {cfg.run_name}")
    with task_runner(cfg.orchestration) as runner:
        done, failed, stopped = train_step(cfg, runner, manifest,
                                           str(labels_path(cfg)), folds,
                                           refresh, force_folds=folds, progress=progress,
                                           flow_run=flow_run_name())
    record_failures(Path(cfg.run_dir) / FAILURES_FILE, failed, {}, list(done), flow_run_name())
    return finish_run(progress, {"folds": done}, folds=failed, interrupted=stopped,
                      rerun=cli_command("run", config, overrides, root, out),
                      fold_rerun=cli_command("run", config, overrides, root, out,
                                             folds=",".join(sorted(failed))))


def _run_manifest(cfg: Config) -> str:
    p = run_manifest_path(cfg)
    return str(p if p.exists() else manifest_path(cfg))
