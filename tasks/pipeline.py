"""The benchmark's Prefect tasks: thin wrappers around vrme library calls.

Each task's cache key is built from the content fingerprint of its inputs and the config
sections that change its output, and its (small) result is persisted, so a rerun of a flow
skips every task whose inputs did not change. A cached result is only trusted if the files it
names still exist (the flows check with :func:`outputs_exist` and refresh the task otherwise).
The library keeps its own file-level caches as well (parameters + input fingerprints in every
output file), so a task that does run on unchanged inputs recomputes nothing either.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from tasks.common import CACHE_EXPIRATION, TransientError, cache_key
from vrme.config import Config
from vrme.errors import DataError

log = logging.getLogger("vrme.tasks")


def _key_cfg(parameters: dict[str, Any]) -> Config:
    return parameters["cfg"]


# -- synthetic dataset ------------------------------------------------------------------------


@task(name="synthesize", persist_result=False)
def synthesize_task(cfg: Config) -> str:
    """Generate the config's synthetic dataset into ``dataset.root`` unless it is complete."""
    from vrme.synth import generate_dataset, spec_from_config

    root = Path(cfg.dataset.root or "")
    if (root / "synth_spec.json").is_file():
        log.info("synthetic dataset present in %s", root)
        return str(root)
    result = generate_dataset(spec_from_config(cfg), root, progress=False,
                              overwrite=root.exists())
    log.info("generated %d videos (%d frames) in %.1f s into %s", len(result.videos),
             result.n_frames, result.seconds, root)
    return str(root)


# -- ingest -----------------------------------------------------------------------------------


def _ingest_key(ctx: TaskRunContext, parameters: dict[str, Any]) -> str:
    from vrme.ingest import dataset_fingerprint

    cfg = _key_cfg(parameters)
    return cache_key("ingest", dataset_fingerprint(cfg), str(cfg.dataset.root),
                     str(cfg.ingest_dir), cfg.dataset.name)


@task(name="ingest", persist_result=True, cache_key_fn=_ingest_key,
      cache_expiration=CACHE_EXPIRATION)
def ingest_task(cfg: Config) -> dict[str, Any]:
    """Read the dataset root into manifest/labels/skipped; return their paths and a summary."""
    from vrme.ingest import ingest

    res = ingest(cfg)
    return {"files": {k: str(v) for k, v in res.files.items()}, "summary": res.summary()}


# -- align and features (per batch of videos) -------------------------------------------------


def _video_key(stage: str):  # noqa: ANN202 - returns a Prefect cache_key_fn
    """Cache key of an align/features task: the stage's parameter hash (the one naming its
    cache folder) and the frame fingerprint of every video of the batch."""

    def key(ctx: TaskRunContext, parameters: dict[str, Any]) -> str:
        from vrme.align import align_hash
        from vrme.features import feature_hash
        from vrme.videojobs import frames_fingerprint

        cfg = _key_cfg(parameters)
        params_hash = align_hash(cfg) if stage == "align" else feature_hash(cfg)
        prints = [(r["subject"], r["video"],
                   frames_fingerprint(r, cfg.dataset.root, cfg.dataset.frame_skip))
                  for r in parameters["rows"]]
        return cache_key(stage, params_hash, prints, cfg.dataset.name, str(cfg.dataset.root),
                         str(cfg.out_dir))

    return key


def _statuses(statuses: list[Any]) -> list[dict[str, Any]]:
    return [asdict(s) for s in statuses]


@task(name="align", persist_result=True, cache_key_fn=_video_key("align"),
      cache_expiration=CACHE_EXPIRATION, task_run_name="align {rows[0][subject]}/{rows[0][video]}")
def align_task(cfg: Config, rows: list[dict[str, Any]], force: bool = False) -> list[dict]:
    """Landmarks for a batch of manifest rows (one process; cached videos are skipped)."""
    from vrme.align import run_align

    return _statuses(run_align(cfg, rows, workers=1, progress=False, force=force))


@task(name="features", persist_result=True, cache_key_fn=_video_key("features"),
      cache_expiration=CACHE_EXPIRATION, task_run_name="features {rows[0][subject]}/{rows[0][video]}")
def features_task(cfg: Config, rows: list[dict[str, Any]], force: bool = False) -> list[dict]:
    """Window features for a batch of manifest rows whose landmarks exist."""
    from vrme.features import run_features

    return _statuses(run_features(cfg, rows, workers=1, progress=False, force=force,
                                  align_first=False))


# -- folds ------------------------------------------------------------------------------------


def _fold_key(ctx: TaskRunContext, parameters: dict[str, Any]) -> str:
    from vrme.train import fold_config_hash, plan_fold

    cfg = _key_cfg(parameters)
    fold = str(parameters["fold"])
    plan = plan_fold(cfg, fold, parameters["manifest_path"], parameters["labels_path"],
                     parameters["features_dir"])
    return cache_key("fold", fold_config_hash(cfg), fold, plan.input_fingerprint,
                     str(parameters["run_dir"]))


def inject_fault(cfg: Config, fold: str, run_dir: Path) -> None:
    """Test-only fault hook (``orchestration.fault``): fail the first ``times`` attempts of the
    listed folds, counting attempts in a marker file so the count survives across runs."""
    fault = cfg.orchestration.fault
    if fold not in fault.fail_folds or fault.times <= 0:
        return
    marker_dir = Path(fault.marker_dir or (run_dir / ".faults"))
    marker_dir.mkdir(parents=True, exist_ok=True)
    counter = marker_dir / f"fold-{fold}.attempts"
    attempts = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(attempts + 1))
    if attempts < fault.times:
        msg = f"fold {fold}: injected {fault.kind} fault (attempt {attempts + 1} of {fault.times})"
        if fault.kind == "data":
            raise DataError(msg)
        raise TransientError(msg)


@task(name="train-fold", persist_result=True, cache_key_fn=_fold_key,
      cache_expiration=CACHE_EXPIRATION, task_run_name="fold {fold}")
def train_fold_task(cfg: Config, fold: str, manifest_path: str, labels_path: str,
                    features_dir: str, run_dir: str, force: bool = False) -> dict[str, Any]:
    """Train and evaluate one leave-one-subject-out fold; return its folder and figures."""
    from vrme.loso import fold_dir_for
    from vrme.train import fold_config_hash, fold_is_complete, load_fold_result, plan_fold, train_fold

    t0 = time.perf_counter()
    d = fold_dir_for(run_dir, fold)
    inject_fault(cfg, fold, Path(run_dir))
    if not force and fold_is_complete(d, fold_config_hash(cfg)):
        fp = plan_fold(cfg, fold, manifest_path, labels_path, features_dir).input_fingerprint
        if fold_is_complete(d, fold_config_hash(cfg), fp):
            res = load_fold_result(d)
            return _fold_summary(res, time.perf_counter() - t0, reused=True)
    res = train_fold(cfg, fold, manifest_path, labels_path, features_dir, d, progress=False)
    return _fold_summary(res, time.perf_counter() - t0, reused=False)


def _fold_summary(res: Any, seconds: float, reused: bool) -> dict[str, Any]:
    return {
        "fold": res.fold,
        "fold_dir": str(res.fold_dir),
        "n_intervals": int(len(res.intervals)),
        "k_p": int(res.priors.k_p),
        "n_train_windows": int(res.n_train_windows),
        "seconds": float(res.timings.get("total_s", seconds)),
        "reused": reused,
        "final_loss": float(res.history[-1]["loss"]) if res.history else None,
    }


# -- report -----------------------------------------------------------------------------------


@task(name="report", persist_result=False)
def report_task(cfg: Config, run_dir: str, manifest_path: str, labels_path: str) -> dict[str, Any]:
    """Pool the finished folds, score them, and write the run's report folder; return the
    paths, metrics.json's content, the per-fold rows and the markdown text."""
    import pandas as pd

    from vrme.report import build_report

    res = build_report(Path(run_dir), cfg, manifest=manifest_path, labels=labels_path)
    per_fold = pd.read_parquet(res.folds_path).to_dict(orient="records")
    out = {
        "html": str(res.html),
        "markdown_path": str(res.markdown),
        "markdown": res.markdown.read_text(),
        "metrics": res.metrics,
        "per_fold": per_fold,
        "complete": res.complete,
        "missing_folds": list(res.missing_folds),
        "files": {"html": str(res.html), "metrics": str(res.metrics_path),
                  "predictions": str(res.predictions)},
    }
    return json.loads(json.dumps(out, default=str))


def outputs_exist(result: Any) -> bool:
    """True if every file a task result names still exists (a cached result is then valid)."""
    paths: list[str] = []
    if isinstance(result, dict):
        if "files" in result:
            paths += list(result["files"].values())
        if "fold_dir" in result:
            paths += [str(Path(result["fold_dir"]) / "fold.json")]
    elif isinstance(result, list):
        paths += [r["path"] for r in result if isinstance(r, dict) and r.get("path")]
    return all(Path(p).exists() for p in paths)


# -- final model, predictions, one video --------------------------------------------------------


def _final_key(ctx: TaskRunContext, parameters: dict[str, Any]) -> str:
    from vrme.features import features_dir
    from vrme.final import plan_final
    from vrme.train import fold_config_hash

    cfg = _key_cfg(parameters)
    plan = plan_final(cfg, cfg.ingest_dir / "manifest.parquet", cfg.ingest_dir / "labels.parquet",
                      features_dir(cfg))
    return cache_key("final", fold_config_hash(cfg), plan.input_fingerprint, str(cfg.out_dir),
                     cfg.run_name)


@task(name="train-final", persist_result=True, cache_key_fn=_final_key,
      cache_expiration=CACHE_EXPIRATION)
def train_final_task(cfg: Config) -> dict[str, Any]:
    """Train the final model on every subject; return its folder."""
    from vrme.final import train_final

    folder = train_final(cfg, progress=False)
    return {"model_dir": str(folder), "files": {"model": str(Path(folder) / "model.json")}}


@task(name="predict", persist_result=False)
def predict_task(models: list[str], root: str, out_csv: str, cache_dir: str,
                 fps: float | None = None) -> dict[str, Any]:
    """MEGC submission CSV for every video under ``root`` with the given model(s)."""
    from vrme.predict import load_models, predict_folder

    ens = load_models([Path(m) for m in models])
    pred = predict_folder(ens, root, out_csv, cache_dir=cache_dir, fps=fps, workers=1,
                          progress=False)
    return {"csv": str(out_csv), "n_intervals": int(len(pred.intervals)),
            "videos": pred.videos.to_dict(orient="records")}


@task(name="spot", persist_result=False)
def spot_task(video: str, models: list[str], cache_dir: str, plot: str | None = None,
              fps: float | None = None) -> dict[str, Any]:
    """Spot one video; return its intervals (and write the score plot if asked)."""
    from vrme.io import write_bytes_atomic
    from vrme.predict import load_models, spot_plot_png, spot_video

    ens = load_models([Path(m) for m in models])
    res = spot_video(video, ens, cache_dir=cache_dir, fps=fps, workers=1, progress=False)
    if plot:
        write_bytes_atomic(plot, spot_plot_png(res))
    intervals, _ = res
    return {"intervals": intervals.to_dict(orient="records"), "plot": plot}
