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
         out: Path | None = None, *, dataset: bool = True,
         can_generate: bool = True):  # noqa: ANN201 - returns vrme.config.Config
    """Load and validate a config for a CLI command, and check, before Prefect starts or a
    model loads, everything that can be checked now (``dataset=True``, the default, for
    commands that read the dataset and write the work folder):

    - the dataset root is an existing folder, unless the config generates its synthetic
      dataset there (:func:`vrme.config.check_dataset_root`: only into the config file's own
      ``dataset.root``, never into a ``--root`` path; ``can_generate=False`` for commands
      that do not run the generation step);
    - the work folder is a folder (or can be created as one) and is writable
      (:func:`vrme.config.check_work_folder`);
    - the layout's folder and label spreadsheets are there and can be read as meant
      (:func:`vrme.data.ingest.check_labels`).

    ``dataset=False`` (``predict``/``spot``/``report``, whose config only describes a model)
    checks the config alone."""
    from vrme.config import check_dataset_root, check_work_folder, load_config

    cfg = load_config(config, overrides, root=root, out=out)
    if dataset:
        check_work_folder(cfg)
        for part in cfg.parts():  # every dataset of a multi-dataset config
            generated = check_dataset_root(part, can_generate=can_generate)
            if not generated:
                from vrme.data.ingest import check_labels

                check_labels(part)  # the layout's folder and spreadsheets, read once
    return cfg


def flow_parameters(config: Path, overrides: list[str] | None, root: Path | None,
                    out: Path | None, **extra: Any) -> dict[str, Any]:
    """A config flow's parameters from CLI options: absolute paths (so a retry of the run,
    executed by ``vrme serve``, reads the same files), the overrides as given."""
    params: dict[str, Any] = {
        "config": str(Path(config).absolute()), "overrides": list(overrides or []),
        "root": str(Path(root).absolute()) if root is not None else None,
        "out": str(Path(out).absolute()) if out is not None else None,
    }
    params.update(extra)
    return params


def run_config_flow(flow_name: str, cfg: Any, params: dict[str, Any], what: str,
                    extra_title: str = "") -> Any:
    """Run a config flow (``vrme-benchmark``, ``vrme-ingest``, ...) as a deployment run in a
    child process (:func:`flows.launch.launch`); returns its :class:`LaunchResult`. A user
    error inside the run (a bad spreadsheet, say) exits 2 with its one line."""
    from flows.launch import launch
    from flows.naming import run_tags, run_title

    res = launch(flow_name, params, deployment=cfg.run_name,
                 run_title=run_title(cfg.run_name, params.get("overrides"), extra_title),
                 tags=run_tags(cfg.run_name, params.get("config"), params.get("overrides")),
                 work_dir=cfg.out_dir, title=f"{what} {cfg.run_name}")
    if res.status == "error":
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {res.message}", markup=True,
                                   highlight=False, soft_wrap=True)
        sys.exit(res.exit_code)
    if res.status == "interrupted":
        from rich.console import Console

        from flows.launch import describe_stages

        rerun = res.outcome.get("rerun") or _rerun_words(flow_name, params)
        Console(stderr=True).print(
            f"[bold yellow]interrupted:[/] {describe_stages(res.stages) or 'nothing finished'}. "
            f"Finished work is kept; resume with `{rerun}`", markup=True, highlight=False,
            soft_wrap=True)
        sys.exit(130)
    return res


def _rerun_words(flow_name: str, params: dict[str, Any]) -> str:
    from flows.naming import cli_command

    command = {"vrme-benchmark": "run"}.get(flow_name, flow_name.removeprefix("vrme-"))
    return cli_command(command, params.get("config"), params.get("overrides"),
                       params.get("root"), params.get("out"))


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


class _NoExpectedTraceback(logging.Filter):
    """Drops the traceback of a log record whose exception is one vrme expects (its message
    already says what happened); other exceptions keep theirs."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_expected_tracebacks() -> None:
    """Show errors vrme expects (bad input or data, a failed write, failed folds or videos) in
    Prefect's console log as one line, without a traceback. Call after importing the flows;
    the Prefect API log (the UI) still gets the traceback (its handler runs first)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.outcome import RunFailed
    from vrme.errors import UserError
    from vrme.interrupt import Interrupted
    from vrme.io import WriteError

    expected = (UserError, WriteError, RunFailed, Interrupted)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _NoExpectedTraceback) for f in handler.filters):
            handler.addFilter(_NoExpectedTraceback(expected))


def friendly_errors(fn: F) -> F:
    """Turn vrme's user-facing errors into one red line and exit code 2, and a failed write
    (:class:`vrme.io.WriteError`: a full disk, a read-only folder) into one red line naming
    the file and exit code 1; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vrme.errors import UserError
        from vrme.io import WriteError

        try:
            return fn(*args, **kwargs)
        except (UserError, WriteError) as exc:
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]error:[/] {exc}", markup=True,
                                       highlight=False, soft_wrap=True)
            sys.exit(1 if isinstance(exc, WriteError) else 2)

    return wrapper  # type: ignore[return-value]
