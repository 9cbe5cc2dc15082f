"""Flows ``vrme-align`` and ``vrme-features``: one task per batch of videos.

Landmarks first (dlib), then flow features (never dlib). A video whose face is never found, or
whose frames cannot be read, is skipped with its reason; the others go on. Both stages write
a status table under the run folder so a skipped video is visible in the run's outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow
from prefect.task_runners import TaskRunner

from flows._shared import batches, config_from_params, configured, submit_validated
from tasks.common import task_runner
from tasks.pipeline import align_task, features_task, outputs_exist
from vrme.config import Config
from vrme.io import clean_work_folder, write_text_atomic
from vrme.schema import read_manifest

log = logging.getLogger("vrme.flows")


def _rows(cfg: Config) -> list[dict[str, Any]]:
    manifest = read_manifest(cfg.ingest_dir / "manifest.parquet")
    return [dict(r) for r in manifest.to_dict(orient="records")]


def _run_stage(task_, cfg: Config, runner: TaskRunner, rows: list[dict[str, Any]],
               refresh: bool) -> list[dict]:
    """Submit one task per batch; collect statuses; a batch whose task failed is reported
    as failed videos (the flow goes on with the others)."""
    size = cfg.orchestration.videos_per_task
    groups = batches(rows, size)
    futures = submit_validated(task_, cfg, runner, refresh,
                               ({"cfg": cfg, "rows": g, "force": refresh} for g in groups))
    statuses: list[dict[str, Any]] = []
    for group, fut in zip(groups, futures):
        fut.wait()
        result = fut.result(raise_on_failure=False)
        if isinstance(result, BaseException) or fut.state.is_failed():
            log.error("%s failed for %s: %s: %s", task_.name,
                      ", ".join(f"{r['subject']}/{r['video']}" for r in group),
                      type(result).__name__, result)
            for r in group:
                statuses.append({"stage": task_.name, "subject": r["subject"], "video": r["video"],
                                 "status": "failed", "reason": f"{type(result).__name__}: {result}"})
            continue
        if not outputs_exist(result):  # cached, but a file was deleted since
            result = configured(task_, cfg, True)(cfg=cfg, rows=group, force=False)
        elif fut.state.name == "Cached":
            result = [{**r, "status": "cached" if r["status"] == "computed" else r["status"]}
                      for r in result]
        statuses.extend(result)
    return statuses


def write_status_table(statuses: list[dict[str, Any]], path: Path) -> Path:
    """Write the per-video statuses of a stage as CSV."""
    cols = ["stage", "subject", "video", "status", "reason", "path", "n_windows", "frames_read",
            "bad_frames", "counts", "seconds"]
    df = pd.DataFrame(statuses)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return write_text_atomic(path, df[cols].to_csv(index=False))


def align_step(cfg: Config, runner: TaskRunner, refresh: bool = False) -> list[dict[str, Any]]:
    """Tasks of the align stage inside the calling flow."""
    statuses = _run_stage(align_task, cfg, runner, _rows(cfg), refresh)
    write_status_table(statuses, cfg.run_dir / "align_status.csv")
    return statuses


def features_step(cfg: Config, runner: TaskRunner, refresh: bool = False
                  ) -> list[dict[str, Any]]:
    """Tasks of the features stage (after align) inside the calling flow."""
    aligned = {(s["subject"], s["video"]): s for s in align_step(cfg, runner, refresh)}
    rows, statuses = [], []
    for r in _rows(cfg):
        a = aligned.get((r["subject"], r["video"]))
        if a is not None and a["status"] in ("skipped", "failed"):
            statuses.append({**a, "stage": "features"})
        else:
            rows.append(r)
    statuses += _run_stage(features_task, cfg, runner, rows, refresh)
    write_status_table(statuses, cfg.run_dir / "features_status.csv")
    counts = pd.Series([s["status"] for s in statuses]).value_counts().to_dict()
    log.info("features: %s", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return statuses


@flow(name="vrme-align")
def align_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
               out: str | None = None, refresh: bool = False) -> list[dict[str, Any]]:
    """Face landmarks for the first frame of every window of every video in the manifest."""
    cfg = config_from_params(config, overrides, root, out)
    clean_work_folder(cfg.out_dir)
    with task_runner(cfg.orchestration) as runner:
        return align_step(cfg, runner, refresh)


@flow(name="vrme-features")
def features_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                  out: str | None = None, refresh: bool = False) -> list[dict[str, Any]]:
    """Landmarks, then ROI optical-flow window features, for every video in the manifest."""
    cfg = config_from_params(config, overrides, root, out)
    clean_work_folder(cfg.out_dir)
    with task_runner(cfg.orchestration) as runner:
        return features_step(cfg, runner, refresh)


class VideosFailed(RuntimeError):
    """Some videos' align or features tasks failed; the message names them and the error."""

    def __init__(self, failed: dict[str, str]):
        self.failed = failed
        detail = "; ".join(f"{v}: {m}" for v, m in sorted(failed.items()))
        super().__init__(f"{len(failed)} video(s) failed and were left out of the folds and "
                         f"the report ({detail}). Fix the cause and run again: finished videos "
                         "and folds are reused.")
