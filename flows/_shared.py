"""Helpers the flows share: config from flow parameters, cached-result validation, batching."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner

from tasks.common import task_options
from tasks.pipeline import outputs_exist
from vrme.config import Config, load_config

log = logging.getLogger("vrme.flows")


def config_from_params(config: str, overrides: Sequence[str] | None = None,
                       root: str | None = None, out: str | None = None) -> Config:
    """Load the flow's config (the flow parameters are the CLI's)."""
    return load_config(config, list(overrides or []), root=root, out=out)


def configured(t: Task[..., Any], cfg: Config, refresh: bool = False) -> Task[..., Any]:
    """``t`` with the config's retries, retry delay, timeout and, if asked, a refreshed cache."""
    opts = task_options(cfg.orchestration)
    if refresh:
        opts["refresh_cache"] = True
    return t.with_options(**opts)


def run_validated(t: Task[..., Any], config: Config, refresh: bool, **params: Any) -> Any:
    """Run task ``t`` (waiting for it); if its result came from the cache but names files that
    no longer exist, run it again with a refreshed cache."""
    result = configured(t, config, refresh)(**params)
    if not outputs_exist(result):
        log.info("cached result of %s names missing files: recomputing", t.name)
        result = configured(t, config, True)(**params)
    return result


def submit_validated(t: Task[..., Any], cfg: Config, runner: TaskRunner, refresh: bool,
                     param_sets: Iterable[dict[str, Any]]) -> list[PrefectFuture[Any]]:
    """Submit ``t`` once per parameter set through ``runner`` (the config's task runner)."""
    task_ = configured(t, cfg, refresh)
    return [runner.submit(task_, parameters=p) for p in param_sets]


def batches(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Split manifest rows into batches of ``size`` videos."""
    size = max(1, size)
    return [rows[i:i + size] for i in range(0, len(rows), size)]
