"""``vrme features``: ROI optical-flow window features, cached to Parquet."""

from __future__ import annotations

import typer

from flows.commands._common import (ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load,
                                    setup_logging)
from flows.commands.align import ForceOpt, WorkersOpt


def register(app: typer.Typer) -> None:
    @app.command("features")
    @friendly_errors
    def features_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                     set_: SetOpt = None, workers: WorkersOpt = None,
                     force: ForceOpt = False) -> None:
        """Compute the 36 x k window features of every video in <out>/ingest/manifest.parquet
        (aligning first where landmarks are missing); write <out>/features/<dataset>/<hash>/
        <subject>/<video>.parquet and print a summary (computed / cached / skipped)."""
        from flows.commands._videostages import load_manifest, print_summary, timed
        from vrme.features import features_dir, run_features
        from vrme.io import clean_work_folder

        setup_logging()
        cfg = load(config, set_, root, out)
        clean_work_folder(cfg.out_dir)
        manifest = load_manifest(cfg)
        statuses, seconds = timed(run_features, cfg, manifest, workers=workers, force=force)
        print_summary(f"Features in {features_dir(cfg)}", statuses, seconds)
