"""The ``vrme`` command line (Typer).

Every module in :mod:`flows.commands` exposes ``register(app)``; this file only assembles them.
Command modules import heavy libraries (torch, Prefect, OpenCV) inside their functions so that
``vrme --help`` and light commands start fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import flows.commands

app = typer.Typer(
    name="vrme",
    help="Micro-expression spotting and recognition benchmarks, rebuilt end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Micro-expression spotting and recognition benchmarks, rebuilt end to end.

    Start with `vrme demo`; see README.md for real datasets.
    """


for _mod in sorted(m.name for m in pkgutil.iter_modules(flows.commands.__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"flows.commands.{_mod}").register(app)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
