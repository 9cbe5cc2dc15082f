"""``vrme spot``: micro-expressions in one video, as a table (and a plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import friendly_errors, load, setup_logging
from flows.commands.predict import CacheOpt, FpsOpt, ModelOpt, WorkersOpt, check_inputs


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
        cache: CacheOpt = Path("data/work/predict"),
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

        from vrme.io import write_bytes_atomic
        from vrme.predict import load_models, spot_plot_png, spot_video

        check_inputs(model, cache, video=video, outputs=(plot,))  # before any model loads
        setup_logging()
        cfg = load(config, None, dataset=False) if config is not None else None
        ens = load_models(model, config=cfg)
        res = spot_video(video, ens, cache_dir=cache, fps=fps, workers=workers)
        iv = res.intervals
        if plot is not None:
            write_bytes_atomic(plot, spot_plot_png(res, title=f"{video.name}: "
                                                   f"{len(iv)} interval(s)"))
        if as_json:
            typer.echo(json.dumps(iv[["onset", "apex", "offset", "emotion", "score"]]
                                  .to_dict(orient="records")))
            return
        t = Table(title=f"{video.name}: {len(iv)} micro-expression(s) ({res.fps:g} fps, "
                        f"frame skip {res.frame_skip}, k_p {res.k_p})")
        for col in ("onset", "apex", "offset", "time (s)", "emotion", "score"):
            t.add_column(col, justify="left" if col == "emotion" else "right")
        first = int(res.video.get("first_frame", 0) or 0) if res.video else 0
        for r in iv.itertuples(index=False):
            start = (r.onset - first) / res.fps
            end = (r.offset - first + 1) / res.fps
            t.add_row(str(r.onset), str(r.apex), str(r.offset), f"{start:.2f}-{end:.2f}",
                      r.emotion, f"{r.score:.3f}")
        Console().print(t)
        if plot is not None:
            Console(stderr=True).print(f"plot: {plot}")
