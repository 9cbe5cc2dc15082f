"""How vrme names a run: its rerun command line, its tags and its title. Free of Prefect, so
that a command (:mod:`flows.commands._common`) names its run without importing Prefect, which
its flow's engine process is importing meanwhile (:mod:`flows.launch`)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any


def cli_command(command: str, config: str | None, overrides: Sequence[str] | None = None,
                root: str | None = None, out: str | None = None, **options: Any) -> str:
    """The ``vrme`` command line that reruns a flow with these parameters, e.g.
    ``vrme run --config configs/demo.yaml --set decode.p=0.6 --folds 2,3``."""
    words = ["vrme", command]
    if config:
        words += ["--config", config]
    for o in overrides or []:
        words += ["--set", o]
    if root:
        words += ["--root", root]
    if out:
        words += ["--out", out]
    for k, v in options.items():
        if v is None or v is False:
            continue
        words.append(f"--{k.replace('_', '-')}")
        if v is not True:
            words.append(str(v))
    return shlex.join(words)


def run_tags(run_name: str, config: str | None, overrides: Sequence[str] | None) -> list[str]:
    """Tags of a flow run: ``vrme``, the run name, the config file and every override, so a
    ``decode.p=0.6`` run is found by its tag in the UI."""
    from pathlib import Path

    tags = ["vrme", f"run:{run_name}"]
    if config:
        tags.append(f"config:{Path(config).name}")
    tags += [f"set:{o}" for o in overrides or []]
    return tags


def run_title(run_name: str, overrides: Sequence[str] | None, extra: str = "") -> str:
    """A flow run's name: the run name, then the overrides (``demo decode.p=0.6``)."""
    return " ".join([run_name, *(overrides or []), *([extra] if extra else [])])
