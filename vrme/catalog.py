"""The catalog: where every artifact of a benchmark lives, in one place.

Everything vrme writes is under one work folder (``run.out``, default ``data/work/<dataset>``)::

    <out>/ingest/                         manifest.parquet, labels.parquet, skipped.csv
                                          (multi-dataset configs: ingest/<dataset>/)
    <out>/landmarks/<dataset>/<align-hash>/<subject>/<video>.parquet
    <out>/features/<dataset>/<feature-hash>/<subject>/<video>.parquet
    <out>/models/<dataset>/<train-hash>/<fold>/   train.json, model.pt, scores.parquet
    <out>/runs/<run>/                     run.json, stages.json, failures.json, report/
    <out>/runs/<run>/folds/<fold>/        fold.json, priors.json, intervals.csv, model.pt,
                                          scores.parquet (links into models/), failed.json
    <out>/final/<run>/                    model.json, model.pt, priors.json (vrme train-final)
    data/work/predict/                    features of videos given to vrme predict / vrme spot

Stage code asks this module for a location and never joins path parts itself; the content
hashes in the folder names come from each stage's own parameters (``align_hash``,
``feature_hash``, ``train_hash``). This module imports nothing else of vrme at run time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vrme.config import Config

WORK_ROOT = Path("data/work")
"""Default parent of the work folders (``data/work/<dataset>``), relative to the current
directory."""
PREDICT_CACHE = WORK_ROOT / "predict"
"""Default feature cache of ``vrme predict`` and ``vrme spot``."""

WORK_FOLDERS = ("ingest", "landmarks", "features", "models", "runs", "final")
"""The top-level folders of a work folder."""

# -- ingest ------------------------------------------------------------------------------------
MANIFEST_FILE = "manifest.parquet"
LABELS_FILE = "labels.parquet"
SKIPPED_FILE = "skipped.csv"

# -- a run -------------------------------------------------------------------------------------
RUN_INFO_FILE = "run.json"
STAGES_FILE = "stages.json"
RUN_FAILURES_FILE = "failures.json"
"""Failures an orchestrator recorded for the whole run (``{"folds": {fold: {"message": ...}}}``);
read by the report so a fold that failed before it could write its own marker is listed."""
REPORT_DIR = "report"

# -- a fold (decoded, under the run) and its training record (under models/) -------------------
FOLD_FILE = "fold.json"
TRAIN_FILE = "train.json"
MODEL_FILE = "model.pt"
PRIORS_FILE = "priors.json"
SCORES_FILE = "scores.parquet"
INTERVALS_FILE = "intervals.csv"
FOLD_FAILED_FILE = "failed.json"
FOLD_FAILURE_FILES = (FOLD_FAILED_FILE, "error.json")

# -- a final model -----------------------------------------------------------------------------
MODEL_INFO_FILE = "model.json"


def out_dir(cfg: Config) -> Path:
    """The work folder: ``run.out``, else ``data/work/<dataset>``."""
    return Path(cfg.run.out) if cfg.run.out else WORK_ROOT / cfg.dataset.name


def ingest_dir(cfg: Config) -> Path:
    """``<out>/ingest`` (a dataset of a multi-dataset config: ``<out>/ingest/<dataset>``)."""
    if cfg.part_of is not None:
        return out_dir(cfg) / "ingest" / cfg.dataset.name
    return out_dir(cfg) / "ingest"


def run_dir(cfg: Config) -> Path:
    """``<out>/runs/<run>`` (a dataset of a multi-dataset config: ``<out>/runs/<run>/<dataset>``,
    for its status tables)."""
    if cfg.part_of is not None:
        return out_dir(cfg) / "runs" / cfg.run_name / cfg.dataset.name
    return out_dir(cfg) / "runs" / cfg.run_name


def stage_dir(cfg: Config, stage: str, params_hash: str) -> Path:
    """Cache folder of a per-video stage: ``<out>/<stage>/<dataset>/<params-hash>``."""
    return out_dir(cfg) / stage / cfg.dataset.name / params_hash


def video_file(folder: str | os.PathLike[str], subject: str, video: str) -> Path:
    """A video's Parquet file in a stage folder: ``<folder>/<subject>/<video>.parquet``."""
    return Path(folder) / str(subject) / f"{video}.parquet"


def folds_dir(run: str | os.PathLike[str]) -> Path:
    """``<run_dir>/folds``."""
    return Path(run) / "folds"


def fold_dir(run: str | os.PathLike[str], subject: str) -> Path:
    """``<run_dir>/folds/<subject>``."""
    return folds_dir(run) / str(subject)


def models_dir(cfg: Config, train_hash: str) -> Path:
    """Training records of one training config: ``<out>/models/<dataset>/<train-hash>``."""
    return out_dir(cfg) / "models" / cfg.dataset.name / train_hash


def final_dir(cfg: Config) -> Path:
    """Default folder of a config's final model: ``<out>/final/<run name>``."""
    return out_dir(cfg) / "final" / cfg.run_name


def manifest_path(cfg: Config) -> Path:
    """``<ingest>/manifest.parquet``."""
    return ingest_dir(cfg) / MANIFEST_FILE


def labels_path(cfg: Config) -> Path:
    """``<ingest>/labels.parquet``."""
    return ingest_dir(cfg) / LABELS_FILE


def run_manifest_path(cfg: Config) -> Path:
    """``<run>/manifest.parquet``: the videos whose features exist (what the folds use)."""
    return run_dir(cfg) / MANIFEST_FILE
