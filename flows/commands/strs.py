"""``vrme strs``: score a predictions CSV against a ground-truth CSV with STRS."""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import friendly_errors


class StrsVariant(str, enum.Enum):
    """Which scoring rules to apply (see vrme.metrics.strs)."""

    official = "official"
    reference = "reference"


def _parse_emotions(text: str | None) -> list[str] | None:
    if text is None:
        return None
    emotions = [e.strip() for e in text.split(",") if e.strip()]
    if not emotions:
        raise typer.BadParameter("give at least one emotion, e.g. negative,positive,surprise",
                                 param_hint="--emotions")
    return emotions


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """Send vrme's log records to stderr for the duration (stdout carries the result/JSON)."""
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("vrme")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers = [RichHandler(console=Console(stderr=True), show_path=False)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "undefined (NaN)"
    return f"{value:.4f}"


def register(app: typer.Typer) -> None:
    """Add the ``strs`` command to ``app``."""

    @app.command("strs")
    @friendly_errors
    def strs(
        pred: Annotated[
            Path,
            typer.Option("--pred", help="Predictions CSV: subject,video,onset,offset,emotion.",
                         exists=True, dir_okay=False, readable=True),
        ],
        gt: Annotated[
            Path,
            typer.Option("--gt", help="Ground-truth CSV with the same columns.",
                         exists=True, dir_okay=False, readable=True),
        ],
        emotions: Annotated[
            str | None,
            typer.Option("--emotions", help="Analysed emotions, comma-separated (default: every "
                         "emotion in the ground truth; MEGC uses negative,positive,surprise)."),
        ] = None,
        variant: Annotated[
            StrsVariant,
            typer.Option("--variant", help="official = the MEGC evaluator (default); reference "
                         "= the paper code's own scoring, to explain published numbers."),
        ] = StrsVariant.official,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of a table.")
        ] = False,
        allow_negative: Annotated[
            bool, typer.Option("--allow-negative", help="Score negative frame numbers (the "
                               "official evaluator does; its sample predictions have some) "
                               "instead of refusing them.")
        ] = False,
    ) -> None:
        """Score predictions with the Spot-Then-Recognize Score (STRS).

        Frame numbers are inclusive and not negative (--allow-negative scores negative ones, as
        the official evaluator does). Subjects, videos and emotions are compared exactly as
        written: use one style ('1', '001' or 'spNO.1') in both files. Emotions outside
        negative/positive/surprise/others, repeated rows and other likely mistakes are warned
        about on stderr.
        """
        from vrme.metrics.strs import csv_line_of, evaluate_strs, input_warnings, read_strs_csv

        wanted = _parse_emotions(emotions)
        with _logs_to_stderr():
            pred_df = read_strs_csv(pred, allow_negative=allow_negative)
            gt_df = read_strs_csv(gt, allow_negative=allow_negative)
            for warning in input_warnings(pred_df, gt_df, wanted, pred_name=str(pred),
                                          gt_name=str(gt), pred_line=csv_line_of(pred),
                                          gt_line=csv_line_of(gt)):
                logging.getLogger("vrme.metrics.strs").warning("%s", warning)
            result = evaluate_strs(pred_df, gt_df, wanted, variant=variant.value)

        if as_json:
            typer.echo(json.dumps(result.to_dict()))
            return

        from rich.console import Console
        from rich.table import Table

        console = Console()
        head = Table(title=f"STRS ({result.variant})", show_header=True)
        head.add_column("metric")
        head.add_column("value", justify="right")
        head.add_row("STRS", _fmt(result.strs), style="bold")
        head.add_section()
        head.add_row("spotting TP / FP / FN",
                     f"{result.spot_tp} / {result.spot_fp} / {result.spot_fn}")
        head.add_row("spotting precision", _fmt(result.spot_precision))
        head.add_row("spotting recall", _fmt(result.spot_recall))
        head.add_row("spotting F1", _fmt(result.spot_f1))
        head.add_section()
        head.add_row("analysis precision", _fmt(result.analysis_precision))
        head.add_row("analysis recall", _fmt(result.analysis_recall))
        head.add_row("analysis F1", _fmt(result.analysis_f1))
        head.add_row("analysis UF1", _fmt(result.analysis_uf1))
        console.print(head)

        per = Table(title="Per analysed emotion (one-vs-rest on recognised pairs)")
        for col in ("emotion", "TP", "FP", "FN", "precision", "recall", "F1", "note"):
            per.add_column(col, justify="left" if col in ("emotion", "note") else "right")
        skip_note = ("zeroed (degenerate)" if result.variant == "official"
                     else "left out (degenerate)")
        for row in result.per_emotion.itertuples(index=False):
            per.add_row(str(row.emotion), str(row.tp), str(row.fp), str(row.fn),
                        _fmt(float(row.precision)), _fmt(float(row.recall)), _fmt(float(row.f1)),
                        skip_note if row.degenerate else "")
        console.print(per)
        console.print(
            f"{len(result.pairs)} recognised pairs ({int(result.pairs['analysed'].sum())} "
            f"analysed). Not scored: {result.pred_unscored} prediction(s) in videos without "
            f"ground truth, {result.gt_unscored} ground-truth interval(s) of subjects without "
            "predictions.",
            highlight=False,
        )
