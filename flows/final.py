"""Flows ``vrme-train-final``, ``vrme-predict`` and ``vrme-spot``: a model for new data, a MEGC
submission, one video. Scheduled and watched like the benchmark (``vrme serve --flow ...``)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._shared import (
    call_task,
    config_from_params,
    name_from_parameters,
    tag_this_run,
)
from flows.features import failed_videos
from flows.ingest import stages_of
from flows.naming import cli_command, run_tags
from flows.outcome import finish_run
from flows.progress import RunProgress
from tasks.common import task_runner
from tasks.pipeline import predict_task, spot_task, train_final_task
from vrme.catalog import PREDICT_CACHE
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


def _prediction_features(ens: Any, manifest: Any, root: Any, cache: str, workers: int | None,
                         what: str) -> tuple[RunProgress, list[dict[str, Any]]]:
    """Landmarks and features of the videos to predict, with the benchmark's tasks (grouped by
    the frame skip each video is read at); returns the run's progress view and the statuses."""
    from flows.features import video_stages
    from flows.progress import ScopedProgress
    from vrme.inference.predict import feature_groups

    groups = feature_groups(ens, manifest, root, cache, workers)
    scopes = [f"skip {c.dataset.frame_skip}" for c, _ in groups]
    many = len(groups) > 1
    stages = ([f"{s} {sc}" for sc in scopes for s in ("align", "features")] if many
              else ["align", "features"]) + [what]
    progress = RunProgress(what, stages, title=f"{what} {root}")
    statuses: list[dict[str, Any]] = []
    with task_runner(groups[0][0].orchestration) as runner:
        for (fcfg, rows), scope in zip(groups, scopes):
            view = ScopedProgress(progress, scope) if many else progress
            statuses += video_stages(fcfg, runner, rows, False, view)  # type: ignore[arg-type]
    return progress, statuses


def _models(model: list[str], config: str | None) -> Any:
    from pathlib import Path

    from vrme.config import load_config
    from vrme.inference.predict import load_models

    return load_models([Path(m) for m in model],
                       config=load_config(config) if config else None)


@flow(name="vrme-predict", flow_run_name="predict {root}", persist_result=False)
def predict_flow(model: list[str], root: str, out: str = "submission.csv",
                 cache: str = str(PREDICT_CACHE), fps: float | None = None,
                 decode_mode: str | None = None, decode_set: list[str] | None = None,
                 config: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """MEGC submission CSV for an unlabelled test folder, with a final model or a run's fold
    models (scores averaged): every video's landmarks and features with the benchmark's tasks,
    then the models' outputs, decoded (the models' decode section, changed by ``decode_mode``
    and ``decode.key=value`` items of ``decode_set``)."""
    from vrme.inference.predict import prediction_decode, scan_videos

    ens = _models(model, config)
    dec = prediction_decode(ens.cfg, decode_mode, decode_set)
    manifest, _ = scan_videos(root, ens, fps=fps)
    progress, statuses = _prediction_features(ens, manifest, root, cache, workers, "predict")
    if stop_requested():
        return finish_run(progress, {}, interrupted=True, rerun=f"vrme predict --root {root}")
    progress.start("predict")
    res = predict_task(model, root, out, cache, fps, dec.model_dump(mode="json"), config)
    progress.finish("predict", f"{len(res['videos'])} videos, {res['n_intervals']} intervals")
    return finish_run(progress, res, videos=failed_videos(statuses),
                      rerun=f"vrme predict --root {root} --out {out}")


@flow(name="vrme-spot", flow_run_name="spot {video}", persist_result=False)
def spot_flow(video: str, model: list[str], plot: str | None = None,
              cache: str = str(PREDICT_CACHE), fps: float | None = None,
              config: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """Spot and recognise micro-expressions in one video file or folder of frames (its
    landmarks and features with the benchmark's tasks, then the models)."""
    from vrme.inference.predict import single_video_manifest

    ens = _models(model, config)
    manifest, root = single_video_manifest(video, ens, fps)
    progress, statuses = _prediction_features(ens, manifest, root, cache, workers, "spot")
    if stop_requested():
        return finish_run(progress, {}, interrupted=True, rerun=f"vrme spot {video}")
    progress.start("spot")
    res = spot_task(video, model, cache, plot, fps, config)
    progress.finish("spot", f"{len(res['intervals'])} intervals")
    return finish_run(progress, res, videos=failed_videos(statuses), rerun=f"vrme spot {video}")
