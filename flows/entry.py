"""The ``vrme`` console script: starts the engine of the command's flow before anything else
(:func:`flows.launch.prewarm`: Prefect's import, most of a run's start-up, then overlaps the
command line's own imports and checks), then runs the command line (:mod:`flows.cli`)."""

from __future__ import annotations

import sys


def main() -> None:  # pragma: no cover - console entry; tests run flows.cli.app
    args = sys.argv[1:]
    if args and not {"--help", "-h"} & set(args):
        from flows.launch import prewarm

        prewarm(args[0])
    from flows.cli import app

    app()
