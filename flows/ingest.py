"""Flow ``vrme-ingest``: (generate the synthetic dataset if the config asks for one, then)
ingest."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._shared import (
    call_task,
    config_from_params,
    name_from_parameters,
    tag_this_run,
)
from flows.naming import cli_command, run_tags
from flows.progress import RunProgress
from tasks.pipeline import ingest_task, synthesize_task
from vrme.config import Config, wants_synthesis
from vrme.io import clean_work_folder


def ingest_step(cfg: Config, refresh: bool = False,
                progress: RunProgress | None = None) -> dict[str, Any]:
    """Tasks of the ingest stage (synthesis first when the config asks for it) inside the
    calling flow; returns the ingest record (files, summary)."""
    if wants_synthesis(cfg):
        if progress is not None:
            progress.start("synthesis")
        call_task(synthesize_task, cfg, cfg=cfg)
        if progress is not None:
            progress.finish("synthesis", str(cfg.dataset.root))
    if progress is not None:
        progress.start("ingest")
    rec = call_task(ingest_task, cfg, cfg=cfg, force=refresh)
    if progress is not None:
        s = rec["summary"]
        progress.finish("ingest", f"{s.get('videos', 0)} videos, {s.get('frames', 0):,} frames")
    return rec


def stages_of(cfg: Config, *rest: str) -> list[str]:
    """The stages of a flow on ``cfg``: synthesis (when asked for), ingest, then ``rest``; for a
    multi-dataset config, ingest (and of ``rest`` align and features) once per dataset."""
    if cfg.datasets:
        per = [s for s in ("ingest", *rest) if s in ("ingest", "align", "features")]
        return ([f"{s} {p.dataset.name}" for p in cfg.parts() for s in per]
                + [s for s in rest if s not in per])
    return (["synthesis"] if wants_synthesis(cfg) else []) + ["ingest", *rest]


@flow(name="vrme-ingest", flow_run_name=name_from_parameters("ingest"), persist_result=False)
def ingest_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Scan the dataset root and write manifest.parquet, labels.parquet and skipped.csv."""
    from flows.outcome import finish_run

    cfg = config_from_params(config, overrides, root, out)
    tag_this_run(run_tags(cfg.run_name, config, overrides))
    clean_work_folder(cfg.out_dir)
    progress = RunProgress(cfg.run_name, stages_of(cfg), title=f"ingest of {cfg.run_name}")
    rec = ingest_step(cfg, refresh, progress)
    return finish_run(progress, rec, rerun=cli_command("ingest", config, overrides, root, out))
