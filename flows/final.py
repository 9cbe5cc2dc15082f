"""Flows ``vrme-train-final``, ``vrme-predict`` and ``vrme-spot``: a model for new data, a MEGC
submission, one video. Scheduled and watched like the benchmark (``vrme serve --flow ...``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._shared import config_from_params, run_validated
from flows.features import features_step
from flows.ingest import ingest_step
from tasks.common import task_runner
from tasks.pipeline import predict_task, spot_task, train_final_task
from vrme.io import clean_work_folder


@flow(name="vrme-train-final")
def train_final_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                     out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Ingest, features (cached where done), then one model trained on every subject."""
    cfg = config_from_params(config, overrides, root, out)
    clean_work_folder(cfg.out_dir)
    ingest_step(cfg, refresh)
    with task_runner(cfg.orchestration) as runner:
        features_step(cfg, runner, refresh)
    return run_validated(train_final_task, cfg, refresh, cfg=cfg)


@flow(name="vrme-predict")
def predict_flow(model: list[str], root: str, out: str = "submission.csv",
                 cache: str = "data/work/predict", fps: float | None = None) -> dict[str, Any]:
    """MEGC submission CSV for an unlabelled test folder, with a final model or a run's fold
    models (scores averaged)."""
    return predict_task(model, root, out, cache, fps)


@flow(name="vrme-spot")
def spot_flow(video: str, model: list[str], plot: str | None = None,
              cache: str = "data/work/predict", fps: float | None = None) -> dict[str, Any]:
    """Spot and recognise micro-expressions in one video file or folder of frames."""
    return spot_task(video, model, cache, plot, fps)
