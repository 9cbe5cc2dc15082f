"""Flow ``vrme-report``: rebuild a run's report from its stored fold outputs (no training)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.train import artifact_key
from tasks.pipeline import report_task
from vrme.config import Config


def publish_artifacts(cfg: Config, report: dict[str, Any], fold_rows: list[dict[str, Any]]) -> None:
    """The fold table and the final metrics as Prefect artifacts (visible in the UI)."""
    if fold_rows:
        create_table_artifact(table=fold_rows, key=artifact_key(cfg, "folds"),
                              description=f"Leave-one-subject-out folds of {cfg.run_name}")
    create_markdown_artifact(markdown=report.get("markdown", ""), key=artifact_key(cfg, "metrics"),
                             description=f"Final metrics of {cfg.run_name}")


def report_step(cfg: Config, manifest_path: str, labels_path: str) -> dict[str, Any]:
    """The report task inside the calling flow."""
    return report_task(cfg, str(cfg.run_dir), manifest_path, labels_path)


@flow(name="vrme-report")
def report_flow(run: str) -> dict[str, Any]:
    """Rebuild ``<run>/report/`` from the finished folds under ``<run>/folds``."""
    from pathlib import Path

    from vrme.report import read_run_info, run_config

    info = read_run_info(Path(run))
    cfg = run_config(Path(run))
    return report_step(cfg, info["manifest"], info["labels"])
