"""Flow ``vrme-benchmark``: the whole benchmark, chained.

(synthetic dataset) -> ingest -> align -> features -> one task per fold -> report.
Every task reuses what its outputs' own records say is valid (parameters, input fingerprints,
code version), so running the flow again recomputes only what is missing, changed or failed;
a Prefect "Retry" of a failed run does the same. A fault stays where it happened: a video whose
align or features task failed is left out of the folds, a fold that failed is left out of the
report; the report and every artifact are built from what finished, and the run ends Failed
naming each failed video and fold with its reason and the command that reruns it. After a stop
request (Ctrl-C) the run ends Cancelled; everything that finished is kept.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows._shared import (
    config_from_params,
    name_from_parameters,
    tag_this_run,
)
from flows.features import count_note, failed_videos, features_step
from flows.ingest import ingest_step, stages_of
from flows.naming import cli_command, run_tags
from flows.outcome import FAILURES_FILE, finish_run, record_failures
from flows.progress import RunProgress
from flows.report import fold_table, publish_artifacts, report_step
from flows.train import flow_run_name, train_step
from tasks.common import task_runner
from vrme.catalog import STAGES_FILE, manifest_path, run_manifest_path
from vrme.config import Config
from vrme.interrupt import stop_requested
from vrme.schema import MANIFEST_SCHEMA, read_manifest, write_table

log = logging.getLogger("vrme.flows")


def write_run_manifest(cfg: Config, statuses: list[dict[str, Any]]) -> str:
    """The manifest of the videos whose features exist (``<run>/manifest.parquet``): folds
    train and test on these; the others are listed with their reason in
    ``<run>/features_status.csv``."""
    manifest = read_manifest(manifest_path(cfg))
    ok = {(s["subject"], s["video"]) for s in statuses if s["status"] in ("computed", "cached")}
    keep = [(s, v) in ok for s, v in zip(manifest["subject"], manifest["video"])]
    path = run_manifest_path(cfg)
    write_table(manifest[keep].reset_index(drop=True), path, MANIFEST_SCHEMA)
    return str(path)


def data_step(cfg: Config, runner: Any, refresh: bool, progress: RunProgress
              ) -> tuple[list[dict[str, Any]], str, str]:
    """Ingest, align and features (per dataset for a multi-dataset config, then their union,
    :mod:`vrme.data.union`) inside the calling flow; returns (per-video statuses, the manifest of
    the videos with features, the labels)."""
    from flows.features import write_status_table
    from flows.progress import ScopedProgress

    if not cfg.datasets:
        labels = ingest_step(cfg, refresh, progress)["files"]["labels"]
        statuses = features_step(cfg, runner, refresh, progress)
        return statuses, write_run_manifest(cfg, statuses), labels
    from vrme.data.union import union_subject, write_union

    statuses: list[dict[str, Any]] = []
    for part in cfg.parts():
        name = part.dataset.name
        scoped = ScopedProgress(progress, name)
        ingest_step(part, refresh, scoped)  # type: ignore[arg-type]
        for s in features_step(part, runner, refresh, scoped):  # type: ignore[arg-type]
            statuses.append({**s, "dataset": name, "part_subject": s["subject"],
                             "subject": union_subject(name, str(s["subject"]))})
    keep = {(s["dataset"], str(s["part_subject"]), str(s["video"])) for s in statuses
            if s["status"] in ("computed", "cached")}
    _, labels, _ = write_union(cfg, keep)
    write_status_table(statuses, cfg.run_dir / "features_status.csv")
    return statuses, write_run_manifest(cfg, statuses), str(labels)


def run_benchmark(cfg: Config, folds: list[str] | None = None, refresh: bool = False, *,
                  params: dict[str, Any] | None = None) -> Any:
    """The benchmark's stages inside the calling flow (see the module docstring); returns the
    flow's final state. ``params`` are the flow's parameters (for the rerun commands)."""
    from vrme.io import clean_work_folder, ensure_folder
    from vrme.record import write_run_info

    p = params or {"config": cfg.source}
    rerun = cli_command("run", p.get("config"), p.get("overrides"), p.get("root"), p.get("out"))
    t0 = time.perf_counter()
    stale = clean_work_folder(cfg.out_dir)  # temporaries of a killed earlier run
    ensure_folder(cfg.run_dir)
    progress = RunProgress(cfg.run_name, stages_of(cfg, "align", "features", "folds", "report"),
                           title=f"benchmark {cfg.run_name}")
    flow_run = flow_run_name()
    summary: dict[str, Any] = {"run_dir": str(cfg.run_dir), "report": None,
                               "stale_temporaries_removed": len(stale)}
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    stopped = False
    with task_runner(cfg.orchestration) as runner:
        statuses, manifest, labels = data_step(cfg, runner, refresh, progress)
        bad_videos = failed_videos(statuses)
        stopped = stop_requested() or any(s["status"] == "interrupted" for s in statuses)
        write_run_info(Path(cfg.run_dir), cfg, manifest_path=manifest, labels_path=labels)
        if stopped:
            progress.skip("folds", "stopped on request")
        elif not any(s["status"] in ("computed", "cached") for s in statuses):
            progress.skip("folds", "no video has features")
        else:
            done, failed, stopped = train_step(cfg, runner, manifest, labels, folds, refresh,
                                               force_folds=folds, progress=progress,
                                               flow_run=flow_run)
    record_failures(Path(cfg.run_dir) / FAILURES_FILE, failed, bad_videos, list(done), flow_run)
    progress.write(Path(cfg.run_dir) / STAGES_FILE)  # the report shows the time per stage
    report, report_error = None, ""
    if stopped:
        progress.skip("report", "stopped on request")
    elif done or not (failed or bad_videos):
        try:
            report = report_step(cfg, manifest, labels, progress)
        except Exception as exc:  # noqa: BLE001 - the run still ends with its artifacts
            report_error = f"{type(exc).__name__}: {exc}"
            log.error("report failed: %s", report_error)
    else:
        progress.skip("report", "no fold finished")
    note = ""
    if failed or bad_videos or report_error:
        note = "Incomplete run: " + "; ".join(
            [f"{len(bad_videos)} video(s) failed"] * bool(bad_videos)
            + [f"fold(s) {', '.join(sorted(failed))} failed"] * bool(failed)
            + [f"report failed ({report_error})"] * bool(report_error))
    publish_artifacts(cfg, report, fold_table(report, done, failed), note=note)
    summary.update(
        report=report,
        videos=_video_counts(statuses),
        folds_trained=sorted(f for f, d in done.items() if d.get("how") == "trained"),
        folds_decoded=sorted(f for f, d in done.items() if d.get("how") == "decoded"),
        folds_cached=sorted(f for f, d in done.items() if d.get("how") == "cached"),
        folds_failed=failed,
        seconds=time.perf_counter() - t0,
        stages=progress.state,
    )
    log.info("videos: %s; folds: %d done, %d failed", count_note(statuses), len(done),
             len(failed))
    progress.write(Path(cfg.run_dir) / STAGES_FILE)
    fold_rerun = cli_command("run", p.get("config"), p.get("overrides"), p.get("root"),
                             p.get("out"),
                             folds=",".join(sorted(failed, key=lambda s: (len(s), s))))
    return finish_run(progress, summary, folds=failed, videos=bad_videos,
                      report_error=report_error, interrupted=stopped, rerun=rerun,
                      fold_rerun=fold_rerun)


def _video_counts(statuses: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    return counts


@flow(name="vrme-benchmark", flow_run_name=name_from_parameters("benchmark"),
      persist_result=False)
def benchmark_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                   out: str | None = None, folds: list[str] | None = None,
                   refresh: bool = False) -> dict[str, Any]:
    """Run the whole benchmark for a config: ingest, align, features, every fold, report.

    ``folds``: make just these folds again (the report pools every finished fold);
    ``refresh``: recompute everything, ignoring what is already done.
    """
    cfg = config_from_params(config, overrides, root, out)
    tag_this_run(run_tags(cfg.run_name, config, overrides))
    return run_benchmark(cfg, folds, refresh,
                         params={"config": config, "overrides": overrides, "root": root,
                                 "out": out})
