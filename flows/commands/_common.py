"""Options and error handling shared by the CLI commands."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="YAML config (see configs/).", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: key.path=value (repeatable)."),
]
RootOpt = Annotated[
    Path | None, typer.Option("--root", help="Dataset root (overrides dataset.root).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Work folder (overrides run.out).")
]

F = TypeVar("F", bound=Callable[..., Any])


def load(config: Path, overrides: list[str] | None, root: Path | None = None,
         out: Path | None = None):  # noqa: ANN201 - returns vrme.config.Config
    """Load and validate a config for a CLI command."""
    from vrme.config import load_config

    return load_config(config, overrides, root=root, out=out)


def setup_logging(verbose: bool = False) -> None:
    """Log vrme's messages to stderr through rich."""
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("vrme")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=Console(stderr=True), show_path=False,
                                    rich_tracebacks=False))
    root.setLevel(level)


def friendly_errors(fn: F) -> F:
    """Turn vrme's user-facing errors into one red line and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vrme.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
