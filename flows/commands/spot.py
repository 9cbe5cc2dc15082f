"""``vrme spot``: micro-expressions in one video, as a table (and a plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import friendly_errors, load, setup_logging
from flows.commands.predict import CacheOpt, FpsOpt, ModelOpt, WorkersOpt, check_inputs
from vrme.catalog import PREDICT_CACHE


def register(app: typer.Typer) -> None:
    """Add the ``spot`` command to ``app``."""

    @app.command("spot")
    @friendly_errors
    def spot_cmd(
        video: Annotated[Path, typer.Argument(help="A video file (.mp4, .avi, ...) or a folder "
                                              "of numbered frames.", show_default=False)],
        model: ModelOpt,
        plot: Annotated[Path | None, typer.Option(
            "--plot", help="Also draw the score curve with the intervals into this PNG.",
            show_default=False)] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", "-c", help="Training config, only for models whose folder records "
            "none.", show_default=False)] = None,
        cache: CacheOpt = PREDICT_CACHE,
        fps: FpsOpt = None,
        workers: WorkersOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the intervals as JSON "
                                              "records instead of a table.")] = False,
    ) -> None:
        """Print the micro-expressions spotted in one video: onset, apex, offset (original
        frame numbers: positions from 0 in a video file, file numbers in a frame folder), time
        in seconds, emotion and score."""
        from rich.console import Console
        from rich.table import Table

        from flows.commands.predict import run_prediction_flow

        check_inputs(model, cache, video=video, outputs=(plot,))  # before any model loads
        setup_logging()
        if config is not None:
            load(config, None, dataset=False)
        res = run_prediction_flow("vrme-spot", {
            "video": str(video.absolute()), "model": [str(m.absolute()) for m in model],
            "plot": str(plot.absolute()) if plot else None, "cache": str(cache.absolute()),
            "fps": fps, "config": str(config.absolute()) if config else None,
            "workers": workers}, f"spot {video}")
        if res.status != "completed":
            Console(stderr=True).print(f"[bold red]spot failed:[/] {res.message}",
                                       highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        out = res.outcome.get("summary") or {}
        iv = out.get("intervals") or []
        if as_json:
            typer.echo(json.dumps([{k: r[k] for k in ("onset", "apex", "offset", "emotion",
                                                      "score")} for r in iv]))
            return
        fps_used = float(out["fps"])
        t = Table(title=f"{video.name}: {len(iv)} micro-expression(s) ({fps_used:g} fps, "
                        f"frame skip {out['frame_skip']}, k_p {out['k_p']})")
        for col in ("onset", "apex", "offset", "time (s)", "emotion", "score"):
            t.add_column(col, justify="left" if col == "emotion" else "right")
        first = int(out.get("first_frame") or 0)
        for r in iv:
            start = (r["onset"] - first) / fps_used
            end = (r["offset"] - first + 1) / fps_used
            t.add_row(str(r["onset"]), str(r["apex"]), str(r["offset"]),
                      f"{start:.2f}-{end:.2f}", str(r["emotion"]), f"{r['score']:.3f}")
        Console().print(t)
        if plot is not None:
            Console(stderr=True).print(f"plot: {plot}")
