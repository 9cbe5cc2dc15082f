"""Flow ``vrme-ingest``: (generate the synthetic dataset if the config has one, then) ingest."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._shared import config_from_params, run_validated
from tasks.pipeline import ingest_task, synthesize_task
from vrme.config import Config, wants_synthesis
from vrme.io import clean_work_folder


def ingest_step(cfg: Config, refresh: bool = False) -> dict[str, Any]:
    """Tasks of the ingest stage inside the calling flow."""
    if wants_synthesis(cfg):  # only into the config file's own dataset.root (vrme.config)
        synthesize_task(cfg)
    return run_validated(ingest_task, cfg, refresh, cfg=cfg)


@flow(name="vrme-ingest", log_prints=True)
def ingest_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Scan the dataset root and write manifest.parquet, labels.parquet and skipped.csv."""
    cfg = config_from_params(config, overrides, root, out)
    clean_work_folder(cfg.out_dir)
    return ingest_step(cfg, refresh)
