"""``vrme align``: face detection and landmarks for every window start, cached to Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors

WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-j", min=1, help="Videos processed side by side "
                             "(sets orchestration.max_workers; default: the CPU count).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even when the outputs are "
                                        "valid.")]


def run_video_stage(stage: str, config: Path, set_: list[str] | None, root: Path | None,
                    out: Path | None, workers: int | None, force: bool) -> None:
    """Run the ``vrme-align`` or ``vrme-features`` flow (the tasks ``vrme run`` runs) and print
    its summary; exit 1 naming the videos whose tasks failed."""
    import sys

    from flows.commands._common import flow_parameters, load, run_config_flow
    from flows.commands._videostages import print_summary

    overrides = list(set_ or [])
    if workers is not None:
        overrides.append(f"orchestration.max_workers={workers}")
    cfg = load(config, overrides, root, out)
    from vrme.catalog import manifest_path
    from vrme.errors import UserError

    if not manifest_path(cfg).is_file():
        raise UserError(f"{manifest_path(cfg)} not found: run "
                        f"`vrme ingest --config {config}` first")
    params = flow_parameters(config, overrides, root, out, refresh=force)
    res = run_config_flow(f"vrme-{stage}", cfg, params, stage)
    summary = res.outcome.get("summary") or {}
    statuses = [s for s in summary.get("statuses", []) if s.get("stage") == stage]
    from vrme.features.align import landmarks_dir
    from vrme.features.flow import features_dir

    where = landmarks_dir(cfg) if stage == "align" else features_dir(cfg)
    print_summary(f"{'Landmarks' if stage == 'align' else 'Features'} in {where}", statuses)
    if res.status != "completed":
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]{stage} failed:[/] {res.message}",
                                   highlight=False, soft_wrap=True)
        sys.exit(1)


def register(app: typer.Typer) -> None:
    @app.command("align")
    @friendly_errors
    def align_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                  set_: SetOpt = None, workers: WorkersOpt = None,
                  force: ForceOpt = False) -> None:
        """Detect the face and its 68 landmarks on every window's first frame of every video in
        <out>/ingest/manifest.parquet; write <out>/landmarks/<dataset>/<hash>/<subject>/
        <video>.parquet and print a summary (computed / cached / skipped with reasons). Runs
        the vrme-align flow: the same tasks as `vrme run`."""
        run_video_stage("align", config, set_, root, out, workers, force)
