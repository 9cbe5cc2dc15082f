"""``vrme synth``: render a synthetic dataset in a real layout (CAS(ME)^3, SAMM-LV, CAS(ME)^2;
every layout of vrme/data/layouts/ that declares a rendering)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.commands._common import friendly_errors, setup_logging
from vrme.data.layouts import rendered, synth_names

if TYPE_CHECKING:
    from vrme.synth.spec import SynthResult


SynthLayoutChoice = Enum(  # type: ignore[misc]
    "SynthLayoutChoice", {name.replace("-", "_"): name for name in synth_names()}, type=str)
"""The layouts ``--layout`` takes: the registry's (vrme.data.layouts.synth_names)."""


def print_synth_summary(result: SynthResult) -> None:
    """Print what was generated: videos, frames, MEs per emotion, macro-expressions, time."""
    from rich.console import Console
    from rich.table import Table

    from vrme.config import EMOTION_CLASSES
    from vrme.synth.generate import summarize

    s = summarize(result.events, result.videos)
    dist = result.distractors
    t = Table(title=f"Synthetic {result.spec.layout} dataset in {result.out_dir}",
              show_header=False)
    t.add_row("subjects", str(result.spec.subjects))
    t.add_row("videos", str(s["videos"]))
    t.add_row("frames", f"{s['frames']:,} ({result.spec.width} x {result.spec.height}, "
                        f"{result.spec.fps:g} fps)")
    t.add_row("micro-expressions", str(s["micro"]))
    for emotion in EMOTION_CLASSES:
        t.add_row(f"  {emotion}", str(s["micro_per_emotion"].get(emotion, 0)))
    layout = rendered(result.spec.layout)
    macro_note = ("" if layout is None or layout.rendering is None
                  or layout.rendering.labels_macros
                  else f" (rendered, not labelled: {layout.title} lists MEs only)")
    t.add_row("macro-expressions", f"{s['macro']}{macro_note}")
    t.add_row("blinks / head jerks (unlabelled)",
              f"{int((dist['type'] == 'blink').sum())} / {int((dist['type'] == 'jerk').sum())}")
    t.add_row("label files", ", ".join(p.name for p in result.label_files))
    t.add_row("seconds taken", f"{result.seconds:.1f}")
    Console().print(t)


def register(app: typer.Typer) -> None:
    @app.command("synth")
    @friendly_errors
    def synth_cmd(
        out: Annotated[Path, typer.Option("--out", help="Dataset root to create (empty or "
                                                        "absent).", show_default=False)],
        layout: Annotated[SynthLayoutChoice, typer.Option(
            "--layout", help="Folder and spreadsheet layout (DATASETS.md).")
        ] = SynthLayoutChoice["casme3"],
        subjects: Annotated[int, typer.Option("--subjects", min=1, help="Subjects.")] = 4,
        videos: Annotated[int, typer.Option("--videos", min=1,
                                            help="Videos per subject.")] = 2,
        seconds: Annotated[float, typer.Option("--seconds", min=0.1,
                                               help="Length of every video (s).")] = 20.0,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
        fps: Annotated[float | None, typer.Option(
            "--fps", help="Frame rate; default the layout's: 30 (casme3, casme2) or 200 "
                          "(samm-lv).",
            show_default=False)] = None,
        width: Annotated[int, typer.Option("--width", min=160, help="Frame width (px).")] = 640,
        height: Annotated[int, typer.Option("--height", min=120,
                                            help="Frame height (px).")] = 480,
        mes: Annotated[int, typer.Option("--mes", min=0,
                                         help="Micro-expressions per video.")] = 4,
        macros: Annotated[int, typer.Option("--macros", min=0,
                                            help="Macro-expressions per video.")] = 1,
        workers: Annotated[int | None, typer.Option(
            "--workers", min=1, help="Rendering processes; default: one per CPU core.",
            show_default=False)] = None,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace a synthetic dataset already in --out.")] = False,
    ) -> None:
        """Render a synthetic micro-expression dataset from scikit-image's astronaut photo, in
        the exact folder layout and spreadsheet formats of CAS(ME)^3, SAMM-LV or CAS(ME)^2,
        plus ground_truth.csv (STRS format).

        Micro-expressions (0.2-0.5 s, apex 1.3-2.4 px) are labelled; macro-expressions are
        labelled in samm-lv (Type 'Macro') and casme2 (macro-expression), not in casme3, as
        the real spreadsheets do; blinks and head motion are never labelled. Same options and
        seed give byte-identical files.
        """
        from vrme.synth.generate import generate_dataset
        from vrme.synth.spec import SynthSpec

        setup_logging()
        spec = SynthSpec(layout=layout.value, subjects=subjects, videos=videos, seconds=seconds,
                         fps=fps, width=width, height=height, mes_per_video=mes,
                         macros_per_video=macros, seed=seed, workers=workers)
        print_synth_summary(generate_dataset(spec, out, progress=True, overwrite=overwrite))
