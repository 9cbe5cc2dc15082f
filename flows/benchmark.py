"""Flow ``vrme-benchmark``: the whole benchmark, chained.

(synthetic dataset) -> ingest -> align -> features -> one task per fold -> report.
Every stage's tasks are cached on their inputs' fingerprints and config, so running the flow
again recomputes only what is missing, changed or failed; a Prefect "Retry" of a failed run does
the same. Folds that fail do not stop the others: the report is built from the finished folds
and marked incomplete, and the flow ends Failed naming the failed folds. Likewise a video whose
align or features task failed (a write error, a crash; not a video skipped for a data reason)
is left out of the folds and the flow ends Failed naming it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow

from flows._shared import config_from_params
from flows.features import VideosFailed, features_step
from flows.ingest import ingest_step
from flows.report import publish_artifacts, report_step
from flows.train import FoldsFailed, train_step
from tasks.common import task_runner
from vrme.config import Config
from vrme.schema import MANIFEST_SCHEMA, read_manifest, write_table

log = logging.getLogger("vrme.flows")


def write_run_manifest(cfg: Config, statuses: list[dict[str, Any]]) -> str:
    """The manifest of the videos whose features exist (``<run>/manifest.parquet``): folds
    train and test on these; the others are listed with their reason in
    ``<run>/features_status.csv``."""
    manifest = read_manifest(cfg.ingest_dir / "manifest.parquet")
    ok = {(s["subject"], s["video"]) for s in statuses if s["status"] in ("computed", "cached")}
    keep = [(s, v) in ok for s, v in zip(manifest["subject"], manifest["video"])]
    path = Path(cfg.run_dir) / "manifest.parquet"
    write_table(manifest[keep].reset_index(drop=True), path, MANIFEST_SCHEMA)
    return str(path)


def fold_table(report: dict[str, Any], done: dict[str, dict], failed: dict[str, str]
               ) -> list[dict[str, Any]]:
    """Rows of the folds artifact: subject, status, spot F1, STRS contribution, duration."""
    per_fold = {str(r["fold"]): r for r in report.get("per_fold", [])}
    rows = []
    for f in sorted(set(done) | set(failed), key=lambda s: (len(s), s)):
        m = per_fold.get(f, {})
        rows.append({
            "subject": f,
            "status": "failed" if f in failed else ("cached" if done[f].get("reused") else "trained"),
            "spot_f1": m.get("spot_f1"),
            "strs_contribution": m.get("strs_contribution", m.get("strs")),
            "duration_s": round(float(done[f]["seconds"]), 1) if f in done else None,
            "error": failed.get(f, ""),
        })
    return rows


def run_benchmark(cfg: Config, folds: list[str] | None = None, refresh: bool = False
                  ) -> dict[str, Any]:
    """The benchmark's stages inside the calling flow (see module docstring)."""
    from vrme.io import clean_work_folder, ensure_folder
    from vrme.report import write_run_info

    t0 = time.perf_counter()
    stale = clean_work_folder(cfg.out_dir)  # temporaries of a killed earlier run
    ensure_folder(cfg.run_dir)
    ingest = ingest_step(cfg, refresh)
    labels = ingest["files"]["labels"]
    with task_runner(cfg.orchestration) as runner:
        statuses = features_step(cfg, runner, refresh)
        manifest = write_run_manifest(cfg, statuses)
        write_run_info(Path(cfg.run_dir), cfg, manifest_path=manifest, labels_path=labels)
        done, failed = train_step(cfg, runner, manifest, labels, folds, refresh, force_folds=folds)
    report = report_step(cfg, manifest, labels)
    publish_artifacts(cfg, report, fold_table(report, done, failed))
    counts = pd.Series([s["status"] for s in statuses]).value_counts().to_dict()
    summary = {
        "run_dir": str(cfg.run_dir),
        "report": report,
        "videos": counts,
        "folds_trained": sorted(f for f, d in done.items() if not d.get("reused")),
        "folds_cached": sorted(f for f, d in done.items() if d.get("reused")),
        "folds_failed": failed,
        "stale_temporaries_removed": len(stale),
        "seconds": time.perf_counter() - t0,
    }
    if failed:
        raise FoldsFailed(failed)
    bad_videos = {f"{s['subject']}/{s['video']}": str(s.get("reason", "")) for s in statuses
                  if s["status"] == "failed"}
    if bad_videos:
        raise VideosFailed(bad_videos)
    return summary


@flow(name="vrme-benchmark")
def benchmark_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                   out: str | None = None, folds: list[str] | None = None,
                   refresh: bool = False) -> dict[str, Any]:
    """Run the whole benchmark for a config: ingest, align, features, every fold, report.

    ``folds``: retrain just these folds (the report pools every finished fold);
    ``refresh``: recompute everything, ignoring caches.
    """
    cfg = config_from_params(config, overrides, root, out)
    return run_benchmark(cfg, folds, refresh)
