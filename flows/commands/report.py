"""``vrme report``: rebuild a run's report from its stored fold outputs (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import friendly_errors, load, setup_logging


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    @friendly_errors
    def report_cmd(
        run: Annotated[Path, typer.Option("--run", help="Run folder (<out>/runs/<name>) holding "
                                          "folds/ and run.json.", show_default=False)],
        config: Annotated[Path | None, typer.Option(
            "--config", "-c", help="Config the run was made with; default: the run's "
            "run.json.", show_default=False)] = None,
        max_videos: Annotated[int, typer.Option(
            "--max-videos", min=0, help="Per-video score curves to draw.")] = 12,
    ) -> None:
        """Rebuild <run>/report/ (metrics.json, folds.parquet, predictions.csv,
        ground_truth.csv, report.md, self-contained report.html, plots/) from the finished
        folds, and print the path of report.html. Missing folds are listed in the report."""
        from rich.console import Console
        from rich.table import Table

        from vrme.report.build import build_report

        setup_logging()
        cfg = load(config, None) if config is not None else None
        res = build_report(run, cfg, max_videos=max_videos)
        m = res.metrics
        t = Table(title=f"Run {m['run']}: {len(m['completed_folds'])} of "
                        f"{len(m['expected_folds'])} folds", show_header=True)
        t.add_column("metric")
        t.add_column("official", justify="right")
        t.add_column("paper-code scoring", justify="right")
        for key in ("strs", "spot_precision", "spot_recall", "spot_f1", "analysis_f1"):
            o, r = m["official"][key], m["reference"][key]
            t.add_row(key, "n/a" if o is None else f"{o:.4f}", "n/a" if r is None else f"{r:.4f}")
        console = Console(stderr=True)
        console.print(t)
        if not res.complete:
            console.print(f"[yellow]missing folds:[/] {', '.join(res.missing_folds)}")
        typer.echo(str(res.html.absolute()))
