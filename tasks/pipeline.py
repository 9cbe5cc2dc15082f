"""The benchmark's Prefect tasks: thin wrappers around vrme library calls.

Every task asks the library whether its outputs are already valid (the record each output
carries: parameters, input fingerprints, code version) and returns at once in the state
``Cached`` when they are; otherwise it computes them. Prefect's result cache is not used
(:data:`tasks.common.TASK_DEFAULTS`), so there is one authority for "done": the files.
Parameters and results are small (a config, rows of the manifest, paths, counts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task

from tasks.common import TASK_DEFAULTS, TransientError, reused
from vrme.config import Config
from vrme.errors import DataError

log = logging.getLogger("vrme.tasks")


# -- synthetic dataset ------------------------------------------------------------------------


@task(name="synthesize", **TASK_DEFAULTS)
def synthesize_task(cfg: Config) -> Any:
    """Generate the config's synthetic dataset into ``dataset.root`` unless the folder already
    holds the one the config describes (its ``synth_spec.json``)."""
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import spec_from_config

    root = Path(cfg.dataset.root or "")
    spec = spec_from_config(cfg)
    spec_file = root / "synth_spec.json"
    if spec_file.is_file():
        try:
            present = json.loads(spec_file.read_text())
        except (OSError, ValueError):
            present = None
        if (present or {}).get("spec") == json.loads(json.dumps(spec.as_dict())):
            log.info("synthetic dataset present in %s", root)
            return reused(str(root), f"synthetic dataset in {root}")
        log.warning("%s holds a synthetic dataset made with other settings: generating the "
                    "one the config describes", root)
    result = generate_dataset(spec, root, progress=False, overwrite=root.exists())
    log.info("generated %d videos (%d frames) in %.1f s into %s", len(result.videos),
             result.n_frames, result.seconds, root)
    return str(root)


# -- ingest -----------------------------------------------------------------------------------


@task(name="ingest", **TASK_DEFAULTS)
def ingest_task(cfg: Config, force: bool = False) -> Any:
    """Read the dataset root into manifest/labels/skipped (unless the ingest record says the
    tables are current); return their paths and a summary."""
    from vrme.data.ingest import ingest_if_needed

    rec, was_current = ingest_if_needed(cfg, force=force)
    out = {"files": rec["files"], "summary": rec["summary"]}
    s = rec["summary"]
    log.info("ingest%s: %d videos of %d subjects, %d frames", " (current)" if was_current else "",
             s.get("videos", 0), s.get("subjects", 0), s.get("frames", 0))
    return reused(out, "ingested tables") if was_current else out


# -- align and features (per batch of videos) -------------------------------------------------


def _statuses(statuses: list[Any], stage: str) -> Any:
    rows = [asdict(s) for s in statuses]
    for r in rows:
        if r["status"] == "computed":
            fps = r["frames_read"] / r["seconds"] if r["seconds"] > 0 else 0.0
            log.info("%s %s/%s: %d frames, %d windows in %.1f s (%.0f frames/s)", stage,
                     r["subject"], r["video"], r["frames_read"], r["n_windows"], r["seconds"], fps)
        elif r["status"] == "skipped":
            log.warning("%s %s/%s skipped: %s", stage, r["subject"], r["video"], r["reason"])
    if rows and all(r["status"] == "cached" for r in rows):
        return reused(rows, f"{stage} of {len(rows)} video(s)")
    return rows


@task(name="align", task_run_name="align {rows[0][subject]}/{rows[0][video]}", **TASK_DEFAULTS)
def align_task(cfg: Config, rows: list[dict[str, Any]], force: bool = False) -> Any:
    """Landmarks for a batch of manifest rows (videos whose landmarks are valid are reused)."""
    from vrme.features.align import run_align

    return _statuses(run_align(cfg, rows, workers=1, progress=False, force=force), "align")


@task(name="features", task_run_name="features {rows[0][subject]}/{rows[0][video]}",
      **TASK_DEFAULTS)
def features_task(cfg: Config, rows: list[dict[str, Any]], force: bool = False) -> Any:
    """Window features for a batch of manifest rows whose landmarks exist."""
    from vrme.features.flow import run_features

    return _statuses(run_features(cfg, rows, workers=1, progress=False, force=force,
                                  align_first=False), "features")


# -- folds ------------------------------------------------------------------------------------


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


@task(name="train-fold", task_run_name="fold {fold}", **TASK_DEFAULTS)
def train_fold_task(cfg: Config, fold: str, manifest_path: str, labels_path: str,
                    features_dir: str, run_dir: str, force: bool = False) -> Any:
    """Make one leave-one-subject-out fold (train, or reuse a trained fold with the same
    training settings and inputs, then decode); return its folder and figures."""
    from vrme.catalog import fold_dir
    from vrme.training.train import models_dir, train_fold

    inject_fault(cfg, fold, Path(run_dir))
    res = train_fold(cfg, fold, manifest_path, labels_path, features_dir,
                     fold_dir(run_dir, fold), progress=False, models_dir=models_dir(cfg),
                     reuse=not force)
    summary = {
        "fold": res.fold,
        "fold_dir": str(res.fold_dir),
        "how": res.how,
        "n_intervals": int(len(res.intervals)),
        "k_p": int(res.priors.k_p),
        "n_train_windows": int(res.n_train_windows),
        "train_s": float(res.timings.get("train_s", 0.0)),
        "seconds": float(res.timings.get("total_s", 0.0)),
        "final_loss": float(res.history[-1]["loss"]) if res.history else None,
    }
    if res.how == "cached":
        return reused(summary, f"fold {fold} (same settings and inputs)")
    return summary


# -- report -----------------------------------------------------------------------------------


@task(name="report", **TASK_DEFAULTS)
def report_task(cfg: Config, run_dir: str, manifest_path: str, labels_path: str) -> dict[str, Any]:
    """Pool the finished folds, score them, and write the run's report folder; return the
    paths, metrics.json's content, the per-fold rows and the markdown text."""
    import pandas as pd

    from vrme.report.build import build_report

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
        "plots": [str(p) for p in res.plots],
        "files": {"html": str(res.html), "metrics": str(res.metrics_path),
                  "predictions": str(res.predictions)},
    }
    return json.loads(json.dumps(out, default=str))


# -- final model, predictions, one video --------------------------------------------------------


@task(name="train-final", **TASK_DEFAULTS)
def train_final_task(cfg: Config, force: bool = False) -> Any:
    """Train the final model on every subject (unless a valid one exists); return its folder."""
    from vrme.training.final import current_final_model, train_final

    current = None if force else current_final_model(cfg)
    folder = current or train_final(cfg, progress=False, reuse=False)
    out = {"model_dir": str(folder), "files": {"model": str(Path(folder) / "model.json")}}
    return reused(out, f"final model {folder}") if current else out


@task(name="predict", **TASK_DEFAULTS)
def predict_task(models: list[str], root: str, out_csv: str, cache_dir: str,
                 fps: float | None = None, decode: dict[str, Any] | None = None,
                 config: str | None = None) -> dict[str, Any]:
    """MEGC submission CSV for every video under ``root`` with the given model(s), decoded
    with ``decode`` (a decode section; default the models'). Features are computed first by
    the align and features tasks; here they are found cached."""
    from vrme.config import DecodeConfig, load_config
    from vrme.decoding.decode import decode_params
    from vrme.inference.predict import load_models, predict_folder

    ens = load_models([Path(m) for m in models], config=load_config(config) if config else None)
    dec = DecodeConfig.model_validate(decode) if decode else ens.cfg.decode
    pred = predict_folder(ens, root, out_csv, cache_dir=cache_dir, fps=fps, decode=dec,
                          progress=False)
    p_used, k_p_used = decode_params(dec, ens.k_p)
    return {"csv": str(out_csv), "n_intervals": int(len(pred.intervals)),
            "videos": pred.videos.to_dict(orient="records"), "n_models": len(ens.models),
            "decode": {"mode": dec.mode, "p": p_used, "k_p": k_p_used}}


@task(name="spot", **TASK_DEFAULTS)
def spot_task(video: str, models: list[str], cache_dir: str, plot: str | None = None,
              fps: float | None = None, config: str | None = None) -> dict[str, Any]:
    """Spot one video; return its intervals, frame rate, skip and k_p (and write the score
    plot if asked)."""
    from vrme.config import load_config
    from vrme.inference.predict import load_models, spot_plot_png, spot_video
    from vrme.io import write_bytes_atomic

    ens = load_models([Path(m) for m in models], config=load_config(config) if config else None)
    res = spot_video(video, ens, cache_dir=cache_dir, fps=fps, progress=False)
    if plot:
        write_bytes_atomic(plot, spot_plot_png(res, title=f"{Path(video).name}: "
                                               f"{len(res.intervals)} interval(s)"))
    return {"intervals": json.loads(res.intervals.to_json(orient="records")), "plot": plot,
            "fps": res.fps, "frame_skip": res.frame_skip, "k_p": res.k_p,
            "first_frame": int((res.video or {}).get("first_frame", 0) or 0)}
