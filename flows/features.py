"""Flows ``vrme-align`` and ``vrme-features``: one task per batch of videos.

Landmarks first (dlib), then flow features (never dlib). A video whose face is never found, or
whose frames cannot be read, is skipped with its reason; a video whose task fails (a failed
write, a crash) is reported as failed; the others go on either way. Both stages write a status
table under the run folder so every skipped or failed video is visible in the run's outputs.
``vrme align`` and ``vrme features`` run these flows: the same tasks, caching, parallelism and
failure handling as ``vrme run``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow
from prefect.task_runners import TaskRunner

from flows._shared import (
    Outcome,
    batches,
    config_from_params,
    name_from_parameters,
    run_tasks,
    tag_this_run,
)
from flows.naming import cli_command, run_tags
from flows.progress import RunProgress
from tasks.common import task_runner
from tasks.pipeline import align_task, features_task
from vrme.catalog import manifest_path
from vrme.config import Config
from vrme.io import clean_work_folder, write_text_atomic
from vrme.schema import read_manifest

log = logging.getLogger("vrme.flows")

STATUS_COLUMNS = ["stage", "subject", "video", "status", "reason", "path", "n_windows",
                  "frames_read", "bad_frames", "counts", "seconds"]


def _rows(cfg: Config) -> list[dict[str, Any]]:
    from vrme.errors import UserError

    path = manifest_path(cfg)
    if not path.is_file():
        raise UserError(f"{path} not found: run `vrme ingest --config {cfg.source}` first")
    manifest = read_manifest(path)
    return [dict(r) for r in manifest.to_dict(orient="records")]


def _run_stage(task_, stage: str, cfg: Config, runner: TaskRunner, rows: list[dict[str, Any]],
               refresh: bool, progress: RunProgress | None) -> list[dict]:
    """One task per batch of videos; a batch whose task failed is reported as failed videos
    (the flow goes on with the others)."""
    groups = batches(rows, cfg.orchestration.videos_per_task)
    if progress is not None:
        progress.start(stage, len(rows), "videos")
    done = [0]

    def on_done(o: Outcome) -> None:
        done[0] += len(o.params["rows"])
        if progress is not None:
            progress.advance(stage, done[0])

    outcomes = run_tasks(task_, cfg, runner,
                         ({"cfg": cfg, "rows": g, "force": refresh} for g in groups),
                         on_done=on_done)
    statuses: list[dict[str, Any]] = []
    for o in outcomes:
        if o.ok:
            cached = o.state == "Cached"
            statuses += [{**r, "status": "cached" if cached and r["status"] == "computed"
                          else r["status"]} for r in o.result]
            continue
        names = ", ".join(f"{r['subject']}/{r['video']}" for r in o.params["rows"])
        log.error("%s failed for %s: %s", stage, names, o.error)
        statuses += [{"stage": stage, "subject": r["subject"], "video": r["video"],
                      "status": "interrupted" if o.interrupted else "failed", "reason": o.error}
                     for r in o.params["rows"]]
    if progress is not None:
        progress.finish(stage, count_note(statuses),
                        failed=any(s["status"] == "failed" for s in statuses),
                        stopped=any(s["status"] == "interrupted" for s in statuses))
    return statuses


def count_note(statuses: list[dict[str, Any]]) -> str:
    """'6 computed, 2 cached, 1 failed' for a list of video statuses."""
    counts = pd.Series([s["status"] for s in statuses], dtype=object).value_counts()
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def write_status_table(statuses: list[dict[str, Any]], path: Path) -> Path:
    """Write the per-video statuses of a stage as CSV."""
    df = pd.DataFrame(statuses)
    for c in STATUS_COLUMNS:
        if c not in df.columns:
            df[c] = None
    return write_text_atomic(path, df[STATUS_COLUMNS].to_csv(index=False))


def align_step(cfg: Config, runner: TaskRunner, refresh: bool = False,
               progress: RunProgress | None = None, write: bool = True) -> list[dict[str, Any]]:
    """Tasks of the align stage inside the calling flow (``write``: the status table)."""
    statuses = _run_stage(align_task, "align", cfg, runner, _rows(cfg), refresh, progress)
    if write:
        write_status_table(statuses, cfg.run_dir / "align_status.csv")
    return statuses


def features_step(cfg: Config, runner: TaskRunner, refresh: bool = False,
                  progress: RunProgress | None = None, write: bool = True
                  ) -> list[dict[str, Any]]:
    """Tasks of the features stage (after align) inside the calling flow, for the videos of
    the config's manifest; returns the statuses of both stages (``write``: write their tables
    into the run folder)."""
    return video_stages(cfg, runner, _rows(cfg), refresh, progress, write)


def video_stages(cfg: Config, runner: TaskRunner, videos: list[dict[str, Any]],
                 refresh: bool = False, progress: RunProgress | None = None,
                 write: bool = False) -> list[dict[str, Any]]:
    """Landmarks, then features, of ``videos`` (manifest rows of ``cfg``'s dataset): one task
    per batch of videos through ``runner`` (the benchmark's, prediction's and the stage
    commands' one way to process videos); returns their statuses."""
    align_statuses = _run_stage(align_task, "align", cfg, runner, videos, refresh, progress)
    if write:
        write_status_table(align_statuses, cfg.run_dir / "align_status.csv")
    aligned = {(s["subject"], s["video"]): s for s in align_statuses}
    rows, statuses = [], []
    for r in videos:
        a = aligned.get((r["subject"], r["video"]))
        if a is not None and a["status"] in ("skipped", "failed", "interrupted"):
            statuses.append({**a, "stage": "features"})
        else:
            rows.append(r)
    statuses += _run_stage(features_task, "features", cfg, runner, rows, refresh, progress)
    if write:
        write_status_table(statuses, cfg.run_dir / "features_status.csv")
    return statuses


def failed_videos(statuses: list[dict[str, Any]]) -> dict[str, str]:
    """``subject/video`` -> reason of every video whose task failed (not skipped for a data
    reason, not interrupted)."""
    return {f"{s['subject']}/{s['video']}": str(s.get("reason", "")) for s in statuses
            if s["status"] == "failed"}


def _video_flow(stage: str, config: str, overrides: list[str] | None, root: str | None,
                out: str | None, refresh: bool) -> dict[str, Any]:
    from flows.outcome import finish_run

    cfg = config_from_params(config, overrides, root, out)
    tag_this_run(run_tags(cfg.run_name, config, overrides))
    clean_work_folder(cfg.out_dir)
    stages = ["align"] if stage == "align" else ["align", "features"]
    progress = RunProgress(cfg.run_name, stages, title=f"{stage} of {cfg.run_name}")
    step = align_step if stage == "align" else features_step
    with task_runner(cfg.orchestration) as runner:
        statuses = step(cfg, runner, refresh, progress)
    summary = {"stage": stage, "statuses": statuses, "run_dir": str(cfg.run_dir),
               "counts": count_note(statuses)}
    return finish_run(progress, summary, videos=failed_videos(statuses),
                      interrupted=any(s["status"] == "interrupted" for s in statuses),
                      rerun=cli_command(stage, config, overrides, root, out))


@flow(name="vrme-align", flow_run_name=name_from_parameters("align"), persist_result=False)
def align_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
               out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Face landmarks for the first frame of every window of every video in the manifest."""
    return _video_flow("align", config, overrides, root, out, refresh)


@flow(name="vrme-features", flow_run_name=name_from_parameters("features"),
      persist_result=False)
def features_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                  out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Landmarks, then ROI optical-flow window features, for every video in the manifest."""
    return _video_flow("features", config, overrides, root, out, refresh)
