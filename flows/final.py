"""Flows ``vrme-train-final``, ``vrme-predict`` and ``vrme-spot``: a model for new data, a MEGC
submission, one video. Scheduled and watched like the benchmark (``vrme serve --flow ...``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._shared import (call_task, cli_command, config_from_params, name_from_parameters,
                           run_tags, tag_this_run)
from flows.features import failed_videos
from flows.ingest import stages_of
from flows.outcome import finish_run
from flows.progress import RunProgress
from tasks.common import task_runner
from tasks.pipeline import predict_task, spot_task, train_final_task
from vrme.interrupt import stop_requested
from vrme.io import clean_work_folder


@flow(name="vrme-train-final", flow_run_name=name_from_parameters("train-final"),
      persist_result=False)
def train_final_flow(config: str, overrides: list[str] | None = None, root: str | None = None,
                     out: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Ingest, features (reused where done), then one model trained on every subject."""
    cfg = config_from_params(config, overrides, root, out)
    tag_this_run(run_tags(cfg.run_name, config, overrides))
    clean_work_folder(cfg.out_dir)
    progress = RunProgress(cfg.run_name, stages_of(cfg, "align", "features", "final model"),
                           title=f"final model of {cfg.run_name}")
    rerun = cli_command("train-final", config, overrides, root, out)
    from flows.benchmark import data_step

    with task_runner(cfg.orchestration) as runner:
        statuses, _, _ = data_step(cfg, runner, refresh, progress)
    if stop_requested():
        return finish_run(progress, {}, interrupted=True, rerun=rerun)
    progress.start("final model")
    res = call_task(train_final_task, cfg, cfg=cfg, force=refresh)
    progress.finish("final model", res["model_dir"])
    # A video whose task failed is missing from the final model's training: say so.
    return finish_run(progress, res, videos=failed_videos(statuses), rerun=rerun)


@flow(name="vrme-predict", flow_run_name="predict {root}", persist_result=False)
def predict_flow(model: list[str], root: str, out: str = "submission.csv",
                 cache: str = "data/work/predict", fps: float | None = None) -> dict[str, Any]:
    """MEGC submission CSV for an unlabelled test folder, with a final model or a run's fold
    models (scores averaged)."""
    progress = RunProgress("predict", ["predict"], title=f"predict {root}")
    progress.start("predict")
    res = predict_task(model, root, out, cache, fps)
    progress.finish("predict", f"{len(res['videos'])} videos, {res['n_intervals']} intervals")
    return finish_run(progress, res, rerun=f"vrme predict --root {root} --out {out}")


@flow(name="vrme-spot", flow_run_name="spot {video}", persist_result=False)
def spot_flow(video: str, model: list[str], plot: str | None = None,
              cache: str = "data/work/predict", fps: float | None = None) -> dict[str, Any]:
    """Spot and recognise micro-expressions in one video file or folder of frames."""
    progress = RunProgress("spot", ["spot"], title=f"spot {video}")
    progress.start("spot")
    res = spot_task(video, model, cache, plot, fps)
    progress.finish("spot", f"{len(res['intervals'])} intervals")
    return finish_run(progress, res, rerun=f"vrme spot {video}")
