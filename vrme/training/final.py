"""A final model: one network trained on every subject, for videos nobody labelled.

Leave-one-subject-out measures how well the method generalises; to run it on new data one
trains once more on all subjects. Priors come from all labels (there is no held-out subject to
leak), so k_p is the duration prior of the whole dataset.

The model folder (default ``<out>/final/<run name>/``) holds:

- ``model.pt``: the same blob as a fold's (``state_dict``, ``model_config``, ``k``, ``priors``,
  ``fold`` = ``"all"``, ``config_hash``), so :func:`vrme.training.train.load_fold_model` loads it;
- ``priors.json``: k_p (indices after skipping) and the class weights;
- ``model.json``, written last (the done-marker): the whole training config (dataset fps and
  frame skip, align, features, decode sections: everything prediction needs to compute the
  same features and decode the same way), the feature-parameter hash, the training subjects,
  window counts, loss history and timings.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.catalog import (
    MODEL_FILE,
    MODEL_INFO_FILE,
    PRIORS_FILE,
    final_dir,
    labels_path,
    manifest_path,
)
from vrme.config import Config
from vrme.io import write_json_atomic

log = logging.getLogger(__name__)

FINAL_FORMAT = 1
def plan_final(cfg: Config, manifest: pd.DataFrame | str | os.PathLike[str],
               labels: pd.DataFrame | str | os.PathLike[str],
               features_dir: str | os.PathLike[str]):  # noqa: ANN201 - vrme.training.train.FoldPlan
    """The training plan of a final model: every subject's videos (those with a
    micro-expression, or all under ``train.train_videos: all``), windows selected as for a
    fold, priors from every label. Returns a :class:`vrme.training.train.FoldPlan` with fold
    ``"all"`` and no test video. Raises :class:`DataError` when a needed feature file is missing or
    no video has a micro-expression."""
    from vrme.training.train import plan_fold

    return plan_fold(cfg, None, manifest, labels, features_dir)


def read_model_info(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A model folder's ``model.json`` as a dict, or None when absent or unreadable."""
    try:
        info = json.loads((Path(model_dir) / MODEL_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def final_is_complete(model_dir: str | os.PathLike[str], config_hash: str | None = None,
                      input_fingerprint: str | None = None) -> bool:
    """True when ``model_dir`` holds a finished final model (model.json, model.pt,
    priors.json), made with the given config hash and inputs when those are given."""
    info = read_model_info(model_dir)
    if not info or info.get("kind") != "final":
        return False
    if config_hash is not None and info.get("config_hash") != config_hash:
        return False
    if input_fingerprint is not None and info.get("input_fingerprint") != input_fingerprint:
        return False
    return all((Path(model_dir) / f).is_file() for f in (MODEL_FILE, PRIORS_FILE))


def current_final_model(cfg: Config) -> Path | None:
    """The config's final model folder (:func:`vrme.catalog.final_dir`) when it holds a finished
    model made with this config and these inputs (ingested tables and features under the config's
    work folder); else None."""
    from vrme.features.flow import features_dir
    from vrme.training.train import fold_config_hash

    out = final_dir(cfg)
    if not final_is_complete(out, fold_config_hash(cfg)):
        return None
    plan = plan_final(cfg, manifest_path(cfg), labels_path(cfg),
                      features_dir(cfg))
    return out if final_is_complete(out, fold_config_hash(cfg), plan.input_fingerprint) else None


def train_final(cfg: Config, manifest: pd.DataFrame | str | os.PathLike[str] | None = None,
                labels: pd.DataFrame | str | os.PathLike[str] | None = None,
                features_dir: str | os.PathLike[str] | None = None,
                out_dir: str | os.PathLike[str] | None = None, *, progress: bool = True,
                reuse: bool = True, model_factory: Any = None) -> Path:
    """Train one model on every subject and write its folder (see the module docstring);
    returns the folder.

    Defaults: ``manifest``/``labels`` = ``cfg.ingest_dir/{manifest,labels}.parquet``,
    ``features_dir`` = :func:`vrme.features.flow.features_dir`, ``out_dir`` =
    :func:`vrme.catalog.final_dir`. A folder that already holds a final model made with the same
    config hash and inputs is reused when ``reuse`` is true. Training is exactly a fold's
    (:func:`vrme.training.train.fit`, same seed handling), so it is deterministic on the CPU.
    """
    import torch

    from vrme.features.flow import feature_hash, feature_params
    from vrme.features.flow import features_dir as default_features_dir
    from vrme.training.train import fit_plan, fold_config_hash

    manifest = manifest if manifest is not None else manifest_path(cfg)
    labels = labels if labels is not None else labels_path(cfg)
    feats_dir = Path(features_dir) if features_dir is not None else default_features_dir(cfg)
    out = Path(out_dir) if out_dir is not None else final_dir(cfg)
    t0 = time.perf_counter()
    plan = plan_final(cfg, manifest, labels, feats_dir)
    config_hash = fold_config_hash(cfg)
    if reuse and final_is_complete(out, config_hash, plan.input_fingerprint):
        log.info("final model: reusing %s (same config and inputs)", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_INFO_FILE).unlink(missing_ok=True)
    priors = plan.priors
    _, history, device, timings = fit_plan(cfg, plan, out, progress=progress,
                                           model_factory=model_factory)
    timings["total_s"] = time.perf_counter() - t0
    info = {
        "format": FINAL_FORMAT,
        "kind": "final",
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "config": cfg.model_dump(mode="json"),
        "config_hash": config_hash,
        "input_fingerprint": plan.input_fingerprint,
        "dataset": {"name": cfg.dataset.name, "layout": cfg.dataset.layout,
                    "fps": cfg.dataset.fps, "frame_skip": cfg.dataset.frame_skip},
        "k": cfg.features.k,
        "k_p": priors.k_p,
        "feature_hash": feature_hash(cfg),
        "feature_params": feature_params(cfg),
        "train_subjects": plan.train_subjects,
        "n_train_videos": len(plan.train_videos),
        "n_train_windows": int(plan.selection.n_me + plan.selection.n_free),
        "n_me_windows": plan.selection.n_me,
        "n_free_windows": plan.selection.n_free,
        "device": str(device),
        "torch": torch.__version__,
        "timings": timings,
        "history": history,
    }
    write_json_atomic(out / MODEL_INFO_FILE, info)
    log.info("final model written to %s in %.1f s", out, timings["total_s"])
    return out
