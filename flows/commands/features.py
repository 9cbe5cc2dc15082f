"""``vrme features``: ROI optical-flow window features, cached to Parquet."""

from __future__ import annotations

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors
from flows.commands.align import ForceOpt, WorkersOpt, run_video_stage


def register(app: typer.Typer) -> None:
    @app.command("features")
    @friendly_errors
    def features_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                     set_: SetOpt = None, workers: WorkersOpt = None,
                     force: ForceOpt = False) -> None:
        """Compute the 36 x k window features of every video in <out>/ingest/manifest.parquet
        (aligning first where landmarks are missing); write <out>/features/<dataset>/<hash>/
        <subject>/<video>.parquet and print a summary (computed / cached / skipped). Runs the
        vrme-features flow: the same tasks as `vrme run`."""
        run_video_stage("features", config, set_, root, out, workers, force)
