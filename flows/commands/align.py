"""``vrme align``: face detection and landmarks for every window start, cached to Parquet."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.commands._common import (ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load,
                                    setup_logging)

WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-j", help="Worker processes (default: "
                             "features.workers, else the CPU count).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even when cached.")]


def register(app: typer.Typer) -> None:
    @app.command("align")
    @friendly_errors
    def align_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                  set_: SetOpt = None, workers: WorkersOpt = None,
                  force: ForceOpt = False) -> None:
        """Detect the face and its 68 landmarks on every window's first frame of every video in
        <out>/ingest/manifest.parquet; write <out>/landmarks/<dataset>/<hash>/<subject>/
        <video>.parquet and print a summary (computed / cached / skipped with reasons)."""
        from flows.commands._videostages import load_manifest, print_summary, timed
        from vrme.align import landmarks_dir, run_align
        from vrme.io import clean_work_folder

        setup_logging()
        cfg = load(config, set_, root, out)
        clean_work_folder(cfg.out_dir)
        manifest = load_manifest(cfg)
        statuses, seconds = timed(run_align, cfg, manifest, workers=workers, force=force)
        print_summary(f"Landmarks in {landmarks_dir(cfg)}", statuses, seconds)
