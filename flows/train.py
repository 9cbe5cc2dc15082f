"""Flow ``vrme-train``: one task per leave-one-subject-out fold.

A failed fold does not stop the others. While folds train, a progress artifact shows how many
have finished; at the end a table artifact lists every fold.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner

from flows._shared import config_from_params, configured
from tasks.common import task_runner
from tasks.pipeline import outputs_exist, train_fold_task
from vrme.config import Config
from vrme.features import features_dir as features_dir_of
from vrme.io import clean_work_folder, write_json_atomic
from vrme.loso import fold_dir_for

log = logging.getLogger("vrme.flows")


def artifact_key(cfg: Config, what: str) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    name = "".join(c if c.isalnum() else "-" for c in f"vrme-{cfg.run_name}-{what}".lower())
    return "-".join(p for p in name.split("-") if p)


def train_step(cfg: Config, runner: TaskRunner, manifest_path: str, labels_path: str,
               folds: list[str] | None = None, refresh: bool = False,
               force_folds: list[str] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Submit one task per fold and wait for all; returns (summaries of finished folds,
    error message of every failed fold). ``force_folds`` are retrained even if cached."""
    from vrme.loso import loso_subjects

    all_folds = loso_subjects(manifest_path, labels_path)
    which = [str(f) for f in folds] if folds else all_folds
    unknown = sorted(set(which) - set(all_folds))
    if unknown:
        from vrme.errors import DataError

        raise DataError(f"unknown fold(s) {unknown}; this dataset's folds are {all_folds}")
    if cfg.train.threads is None:  # share the cores between folds running side by side
        parallel = min(len(which), cfg.orchestration.max_workers or os.cpu_count() or 1)
        if cfg.orchestration.task_runner == "threads":
            parallel = 1  # folds in threads of one process train one at a time (fit_plan)
        cfg = cfg.model_copy(deep=True)
        cfg.train.threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    feats = str(features_dir_of(cfg))
    run_dir = str(cfg.run_dir)
    forced = {str(f) for f in (force_folds or [])}
    progress_id = create_progress_artifact(
        progress=0.0, key=artifact_key(cfg, "fold-progress"),
        description=f"Folds finished out of {len(which)} ({cfg.run_name})")
    futures = {}
    for f in which:
        t = configured(train_fold_task, cfg, refresh or f in forced)
        params = dict(cfg=cfg, fold=f, manifest_path=manifest_path, labels_path=labels_path,
                      features_dir=feats, run_dir=run_dir, force=refresh or f in forced)
        futures[runner.submit(t, parameters=params)] = (f, params)
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for i, fut in enumerate(as_completed(list(futures)), 1):
        f, params = futures[fut]
        result = fut.result(raise_on_failure=False)
        if fut.state.is_failed() or isinstance(result, BaseException):
            failed[f] = f"{type(result).__name__}: {result}"
            log.error("fold %s failed: %s", f, failed[f])
            write_json_atomic(fold_dir_for(run_dir, f) / "failed.json",
                              {"fold": f, "message": failed[f], "flow_run": _flow_run_name()})
        else:
            (fold_dir_for(run_dir, f) / "failed.json").unlink(missing_ok=True)
            if not outputs_exist(result):
                result = configured(train_fold_task, cfg, True)(**params)
            elif fut.state.name == "Cached":
                result = {**result, "reused": True}
            done[f] = result
        if progress_id is not None:
            update_progress_artifact(progress_id, progress=100.0 * i / len(which))
    return done, failed


def _flow_run_name() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.get_name()


@flow(name="vrme-train")
def train_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
               out: str | None = None, folds: list[str] | None = None,
               refresh: bool = False) -> dict[str, Any]:
    """Train every leave-one-subject-out fold (or the named ones) on cached features."""
    cfg = config_from_params(config, overrides, root, out)
    clean_work_folder(cfg.out_dir)
    manifest = _run_manifest(cfg)
    t0 = time.perf_counter()
    with task_runner(cfg.orchestration) as runner:
        done, failed = train_step(cfg, runner, manifest, str(cfg.ingest_dir / "labels.parquet"),
                                  folds, refresh, force_folds=folds)
    if failed:
        raise FoldsFailed(failed)
    return {"folds": done, "seconds": time.perf_counter() - t0}


def _run_manifest(cfg: Config) -> str:
    p = Path(cfg.run_dir) / "manifest.parquet"
    return str(p if p.exists() else cfg.ingest_dir / "manifest.parquet")


class FoldsFailed(RuntimeError):
    """Some folds failed; the message names them and how to rerun them."""

    def __init__(self, failed: dict[str, str]):
        self.failed = failed
        names = ",".join(sorted(failed))
        detail = "; ".join(f"fold {f}: {m}" for f, m in sorted(failed.items()))
        super().__init__(f"{len(failed)} fold(s) failed: {names} ({detail}). Rerun just them "
                         f"with `vrme run --folds {names}`, or retry this flow run.")
