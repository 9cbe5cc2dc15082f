"""The report of a leave-one-subject-out run, rebuilt from the fold folders without training.

:func:`write_run_info` records at the start of a run everything the report needs later
(``<run_dir>/run.json``: the whole config, the dataset, where ingestion wrote its tables, the
fold config hash, the code version of every stage, vrme's version and git commit, the machine),
so ``vrme report --run DIR`` works without the original config file.

:func:`build_report` reads the finished folds under ``<run_dir>/folds/<subject>/`` (a fold
counts only when :func:`vrme.training.train.fold_is_complete` says so and, when run.json records one,
its config hash matches), pools their intervals, scores them once with both STRS variants and
writes ``<run_dir>/report/``:

- ``metrics.json``: official STRS and its parts, the reference (paper-code) variant beside it,
  per-emotion recall/precision, the folds that are missing and why (``"complete": false``,
  ``"missing_folds"``), the paper's Table 3 numbers for real datasets, the run's versions, and
  the per-video counts and missed/false intervals (``per_video``, ``missed``, ``false``: the
  rows of the three CSV files below);
- ``folds.parquet``: one row per expected fold (metrics on its own subject, k_p, training
  windows, how it was made, epochs, final and lowest loss, timings, hashes, status);
- ``predictions.csv``: pooled intervals in STRS format (subject, video, onset, offset, emotion;
  original frame numbers), in the order they were scored; ``ground_truth.csv`` the ground truth
  they were scored against (so ``vrme strs --pred predictions.csv --gt ground_truth.csv``
  reproduces ``metrics.json``); ``intervals.csv`` the same predictions with apex and score;
- ``per_video.csv`` (:data:`PER_VIDEO_COLUMNS`), ``missed.csv`` (:data:`MISSED_COLUMNS`) and
  ``false.csv`` (:data:`FALSE_COLUMNS`): the official matching (``StrsResult.pairs``) video by
  video and interval by interval;
- ``report.md`` with ``plots/*.png``, and ``report.html``, self-contained (PNGs embedded as
  base64): how the run was made (code versions, machine, the time and outcome of each stage
  from ``stages.json`` when an orchestrator wrote one, every setting, the config as YAML),
  per-fold loss curves, the per-video table with the missed and false intervals, per-video spot
  score curves (frames and seconds) with true intervals and predictions marked TP or FP (at most
  ``max_videos`` videos, picked round-robin over subjects; the report says which), the analysis
  confusion matrix, per-subject spot F1 and predicted vs true durations.

Every file is written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import vrme
from vrme.config import CLASS_NAMES, EMOTION_CLASSES, Config, config_from_mapping
from vrme.errors import DataError
from vrme.io import write_bytes_atomic, write_json_atomic, write_parquet_atomic, write_text_atomic

log = logging.getLogger(__name__)

RUN_INFO_FILE = "run.json"
RUN_INFO_FORMAT = 1
REPORT_DIR = "report"
DEFAULT_MAX_VIDEOS = 12
"""Score curves drawn by default (one PNG per video; a real dataset has over a thousand)."""

STRS_COLUMNS = ["subject", "video", "onset", "offset", "emotion"]
PAPER_LAYOUTS = ("casme3", "samm_lv")
_FAILURE_FILES = ("failed.json", "error.json")
STAGES_FILE = "stages.json"
"""What each stage of the run did and how long it took (``{"stages": {name: {"status",
"done", "total", "unit", "note", "started", "seconds"}}}``), written by the orchestrator."""
RUN_FAILURES_FILE = "failures.json"
"""Failures an orchestrator recorded for the whole run (``{"folds": {fold: {"message": ...}}}``);
used when a fold's own folder could not hold its ``failed.json``."""


# -- run.json --------------------------------------------------------------------------------


def is_synthetic_dataset(root: str | os.PathLike[str] | None) -> bool:
    """True when ``root`` holds a dataset made by :mod:`vrme.synth.generate` (its ``synth_spec.json``)."""
    return root is not None and (Path(root) / "synth_spec.json").is_file()


def write_run_info(run_dir: str | os.PathLike[str], cfg: Config, *,
                   manifest_path: str | os.PathLike[str] | None = None,
                   labels_path: str | os.PathLike[str] | None = None,
                   features_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<run_dir>/run.json``: the config (all sections), the dataset (name, layout, root,
    fps, frame skip, whether it is synthetic), the ingest tables and feature folder the folds
    read (defaults: ``cfg.ingest_dir`` and :func:`vrme.features.flow.features_dir`), the fold config
    hash and versions. Call it when a run starts; returns the path."""
    from vrme.features.flow import feature_hash
    from vrme.features.flow import features_dir as default_features_dir
    from vrme.training.train import fold_config_hash

    run_dir = Path(run_dir)
    ingest = cfg.ingest_dir
    info = {
        "format": RUN_INFO_FORMAT,
        "created": _now(),
        "run_name": cfg.run_name,
        "config_source": cfg.source,
        "config": cfg.model_dump(mode="json"),
        "dataset": {
            "name": cfg.dataset.name,
            "layout": cfg.dataset.layout,
            "root": str(cfg.dataset.root) if cfg.dataset.root else None,
            "fps": cfg.dataset.fps,
            "frame_skip": cfg.dataset.frame_skip,
            "synthetic": is_synthetic_dataset(cfg.dataset.root),
        },
        "ingest_dir": str(Path(ingest).absolute()),
        "manifest": str(Path(manifest_path or ingest / "manifest.parquet").absolute()),
        "labels": str(Path(labels_path or ingest / "labels.parquet").absolute()),
        "features_dir": str(Path(features_dir or default_features_dir(cfg)).absolute()),
        "feature_hash": feature_hash(cfg),
        "fold_config_hash": fold_config_hash(cfg),
        "versions": {"vrme": vrme.__version__, "python": platform.python_version(),
                     "code": code_versions(), "source": source_revision()},
        "machine": machine_info(cfg),
    }
    return write_json_atomic(run_dir / RUN_INFO_FILE, info)


def code_versions() -> dict[str, int]:
    """The version number of every stage's code (bumped with any change that changes its
    output; each is part of that stage's cache hash): ingest, align, features, priors, train,
    decode."""
    from vrme.features.align import ALIGN_VERSION
    from vrme.decoding.decode import DECODE_VERSION
    from vrme.features.flow import FEATURES_VERSION
    from vrme.data.ingest import INGEST_VERSION
    from vrme.training.priors import PRIORS_VERSION
    from vrme.training.train import TRAIN_VERSION

    return {"ingest": INGEST_VERSION, "align": ALIGN_VERSION, "features": FEATURES_VERSION,
            "priors": PRIORS_VERSION, "train": TRAIN_VERSION, "decode": DECODE_VERSION}


def source_revision() -> dict[str, Any] | None:
    """The git commit of the vrme source in use and whether tracked files differ from it
    (``{"commit", "dirty"}``), or None when vrme does not run from a git checkout (an
    installed package) or git is not available."""
    import subprocess

    root = Path(vrme.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(status.strip())}


def machine_info(cfg: Config | None = None) -> dict[str, Any]:
    """What a run's numbers may depend on beyond its config and inputs: the CPU (model, cores,
    the instruction set torch's kernels use), the torch build and the thread count. The same
    config and seed give identical numbers on one machine; another CPU or torch build can
    change the last digits of training, and so the decoded intervals."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = cfg.train.threads if cfg is not None and cfg.train.threads else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "torch_cuda": torch.version.cuda,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "train_threads": threads if threads is not None else torch.get_num_threads(),
        "train_threads_from": "train.threads" if threads is not None else "torch default",
        "device": cfg.train.device if cfg is not None else None,
    }


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``run.json`` as a dict; :class:`DataError` when missing or unreadable."""
    p = Path(run_dir) / RUN_INFO_FILE
    if not p.is_file():
        raise DataError(f"{p} not found: this run folder was not started by vrme (or is from "
                        "an older version); pass --config to say how it was made")
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not readable JSON ({exc})") from exc
    if not isinstance(info, dict) or "config" not in info:
        raise DataError(f"{p}: no 'config' entry")
    return info


def run_config(run_dir: str | os.PathLike[str]) -> Config:
    """The config a run was made with, from its ``run.json``."""
    info = read_run_info(run_dir)
    raw = dict(info["config"])
    cfg = config_from_mapping(raw, str(Path(run_dir) / RUN_INFO_FILE), recorded=True)
    return cfg


# -- folds -------------------------------------------------------------------------------


@dataclass
class FoldState:
    """One expected fold: whether it finished, and if not why (``reason``)."""

    fold: str
    complete: bool
    reason: str = ""
    marker: dict[str, Any] = field(default_factory=dict)


def fold_states(run_dir: str | os.PathLike[str], expected: list[str],
                config_hash: str | None = None) -> list[FoldState]:
    """The state of every expected fold under ``run_dir/folds``: complete, or why not (not
    run, no fold.json, output files missing, made with another config, or the message of a
    ``failed.json``/``error.json`` an orchestrator left there)."""
    from vrme.training.train import fold_is_complete, read_fold_marker

    run_failures: dict[str, Any] = {}
    try:
        run_failures = (json.loads((Path(run_dir) / RUN_FAILURES_FILE).read_text())
                        .get("folds") or {})
    except (OSError, ValueError, AttributeError):
        pass
    out = []
    for f in expected:
        d = Path(run_dir) / "folds" / str(f)
        marker = read_fold_marker(d) or {}
        if fold_is_complete(d):
            if config_hash and marker.get("config_hash") != config_hash:
                out.append(FoldState(f, False, "made with another config (fold hash "
                                     f"{marker.get('config_hash')} != run {config_hash})",
                                     marker))
            else:
                out.append(FoldState(f, True, "", marker))
            continue
        if not d.is_dir():
            reason = "not run"
        elif marker:
            reason = "output files missing" if marker.get("status") == "complete" else \
                f"status {marker.get('status')!r}"
        else:
            reason = "did not finish (no fold.json)"
        for name in _FAILURE_FILES:
            p = d / name
            if p.is_file():
                try:
                    data = json.loads(p.read_text())
                    msg = data.get("message") or data.get("error") if isinstance(data, dict) \
                        else str(data)
                except (OSError, ValueError):
                    msg = p.read_text(errors="replace")[:300]
                if msg:
                    reason = f"failed: {str(msg).strip()[:300]}"
                break
        else:
            rec = run_failures.get(str(f))
            msg = rec.get("message") if isinstance(rec, dict) else rec
            if msg:
                reason = f"failed: {str(msg).strip()[:300]}"
        out.append(FoldState(f, False, reason, marker))
    return out


# -- the report --------------------------------------------------------------------------


@dataclass
class ReportResult:
    """What :func:`build_report` wrote (paths) and its headline numbers (``metrics``: the
    content of metrics.json)."""

    report_dir: Path
    html: Path
    markdown: Path
    metrics_path: Path
    folds_path: Path
    predictions: Path
    ground_truth: Path
    plots: list[Path]
    metrics: dict[str, Any]
    complete: bool
    missing_folds: list[str]
    shown_videos: list[tuple[str, str]]
    per_video: Path | None = None
    missed: Path | None = None
    false: Path | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _first_file(*candidates: Any) -> Path | None:
    for c in candidates:
        if c is not None and Path(c).is_file():
            return Path(c)
    return None


def _load_tables(run_dir: Path, cfg: Config, info: dict[str, Any],
                 manifest: pd.DataFrame | str | os.PathLike[str] | None,
                 labels: pd.DataFrame | str | os.PathLike[str] | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    from vrme.schema import read_labels, read_manifest

    # The run folder sits at <out>/runs/<name>; ingestion writes <out>/ingest.
    sibling = run_dir.parent.parent / "ingest"
    tables = []
    for given, key, name, reader in ((manifest, "manifest", "manifest.parquet", read_manifest),
                                     (labels, "labels", "labels.parquet", read_labels)):
        if isinstance(given, pd.DataFrame):
            tables.append(given)
            continue
        path = _first_file(given, info.get(key), cfg.ingest_dir / name, sibling / name)
        if path is None:
            tried = [str(p) for p in (given, info.get(key), cfg.ingest_dir / name,
                                      sibling / name) if p is not None]
            raise DataError(f"{name} of run {run_dir} not found (looked at {', '.join(tried)}); "
                            "run `vrme ingest` or pass the tables")
        tables.append(reader(path))
    return tables[0], tables[1]


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _scored_rows(pred: pd.DataFrame, gt: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which rows the official STRS rules score: (predictions in a video that has ground truth,
    ground truths of a subject that has a prediction), as boolean arrays."""
    def keys(df: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([df["subject"].astype(str), df["video"].astype(str)])

    pred_scored = keys(pred).isin(keys(gt)) if len(pred) else np.zeros(0, dtype=bool)
    gt_scored = gt["subject"].astype(str).isin(set(pred["subject"].astype(str))).to_numpy()
    return np.asarray(pred_scored, dtype=bool), np.asarray(gt_scored, dtype=bool)


def _per_class(pred: pd.DataFrame, gt: pd.DataFrame, official: Any) -> dict[str, Any]:
    """Per emotion: spotting recall over its ground truths and spotting precision over the
    predictions labelled with it (both on the scored subjects/videos, official matching), and
    the official one-vs-rest analysis precision/recall/F1 on the spotted pairs."""
    pred_scored, gt_scored = _scored_rows(pred, gt)
    gt_eval = gt[gt_scored]
    pred_eval = pred[pred_scored]
    pairs = official.pairs
    claimed_gt = set(pairs["gt_row"].tolist())
    claiming_pred = set(pairs["pred_row"].tolist())
    per_emotion = official.per_emotion.set_index("emotion") if len(official.per_emotion) else None
    names = [e for e in CLASS_NAMES if e in set(gt["emotion"]) | set(pred["emotion"])]
    out: dict[str, Any] = {}
    for e in names:
        g_rows = gt_eval.index[gt_eval["emotion"] == e]
        p_rows = pred_eval.index[pred_eval["emotion"] == e]
        n_gt, n_pred = int(len(g_rows)), int(len(p_rows))
        tp_gt = int(sum(1 for r in g_rows if r in claimed_gt))
        tp_pred = int(sum(1 for r in p_rows if r in claiming_pred))
        row: dict[str, Any] = {
            "n_gt": n_gt, "n_pred": n_pred, "spotted": tp_gt,
            "spot_recall": tp_gt / n_gt if n_gt else None,
            "spot_precision": tp_pred / n_pred if n_pred else None,
        }
        if per_emotion is not None and e in per_emotion.index:
            pe = per_emotion.loc[e]
            row.update(analysis_precision=float(pe["precision"]),
                       analysis_recall=float(pe["recall"]), analysis_f1=float(pe["f1"]),
                       analysis_degenerate=bool(pe["degenerate"]))
        out[e] = row
    return _clean(out)


PER_VIDEO_COLUMNS = ["subject", "video", "frames", "seconds", "true", "predicted", "tp", "fp",
                     "fn", "pred_unscored", "gt_unscored"]
"""Columns of ``per_video.csv``: tp = true intervals matched (official STRS: the first
prediction in table order with IoU >= 0.5 claims a true interval; one prediction may claim
several), fp = scored predictions that claimed none, fn = scored true intervals nobody claimed;
``pred_unscored``/``gt_unscored``: intervals the official rules leave out (a prediction in a
video without ground truth; the ground truth of a subject without any prediction). Summed over
videos, tp/fp/fn are the official spot_tp/spot_fp/spot_fn."""
MISSED_COLUMNS = ["subject", "video", "gt_row", "onset", "offset", "onset_s", "offset_s",
                  "emotion", "best_iou", "best_pred_row", "reason"]
"""Columns of ``missed.csv`` (true intervals no prediction claimed). ``gt_row``/``pred_row``
are 0-based rows of ground_truth.csv/predictions.csv (file line = row + 2); ``*_s`` are seconds
from the video's first frame; ``best_iou``: the best IoU any prediction of the video reaches."""
FALSE_COLUMNS = ["subject", "video", "pred_row", "onset", "offset", "onset_s", "offset_s",
                 "apex", "emotion", "score", "best_iou", "best_gt_row", "reason"]
"""Columns of ``false.csv`` (scored predictions that claimed no true interval)."""
MAX_LISTED = 300
"""Rows of the missed and false lists shown in report.md/html (the CSV files have them all)."""


@dataclass
class _Matching:
    """The official STRS matching interval by interval: the status of every prediction
    ('TP' = claimed a true interval, 'FP', 'unscored') and every true interval ('found',
    'missed', 'unscored'), counts per video and the unmatched intervals with their times."""

    pred_status: np.ndarray
    gt_status: np.ndarray
    per_video: pd.DataFrame
    missed: pd.DataFrame
    false: pd.DataFrame


def _video_clock(manifest: pd.DataFrame, fps: float) -> pd.DataFrame:
    """Per (subject, video): first frame number, fps and frame count from the manifest (the
    dataset's fps where a video's own is missing), to turn frame numbers into seconds."""
    m = pd.DataFrame({
        "subject": manifest["subject"].astype(str).to_numpy(dtype=object),
        "video": manifest["video"].astype(str).to_numpy(dtype=object),
        "first_frame": pd.to_numeric(manifest["first_frame"], errors="coerce").to_numpy(),
        "fps": pd.to_numeric(manifest["fps"], errors="coerce").fillna(fps).to_numpy(),
        "n_frames": pd.to_numeric(manifest["n_frames"], errors="coerce").to_numpy(),
    })
    return m.drop_duplicates(["subject", "video"]).set_index(["subject", "video"])


def _seconds(df: pd.DataFrame, clock: pd.DataFrame, cols: tuple[str, ...]) -> dict[str, Any]:
    """Seconds from the video's first frame of the frame-number columns ``cols`` of ``df``
    (NaN for a video the manifest does not know)."""
    idx = pd.MultiIndex.from_arrays([df["subject"].astype(str), df["video"].astype(str)])
    c = clock.reindex(idx)
    first, rate = c["first_frame"].to_numpy(np.float64), c["fps"].to_numpy(np.float64)
    return {f"{col}_s": (df[col].to_numpy(np.float64) - first) / rate for col in cols}


def _best_overlap(rows: pd.DataFrame, others: pd.DataFrame
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row of ``rows``: the best IoU any row of ``others`` in the same video reaches,
    that row's position in ``others`` (-1 when none overlaps) and whether the video has any
    row in ``others``."""
    best = np.zeros(len(rows))
    best_row = np.full(len(rows), -1, dtype=np.int64)
    has_any = np.zeros(len(rows), dtype=bool)
    if not len(rows) or not len(others):
        return best, best_row, has_any
    groups = others.groupby([others["subject"].astype(str), others["video"].astype(str)],
                            sort=False).indices
    on_o = others["onset"].to_numpy(np.int64)
    off_o = others["offset"].to_numpy(np.int64)
    on_r, off_r = rows["onset"].to_numpy(np.int64), rows["offset"].to_numpy(np.int64)
    for i, key in enumerate(zip(rows["subject"].astype(str), rows["video"].astype(str))):
        pos = groups.get(key)
        if pos is None:
            continue
        has_any[i] = True
        inter = np.minimum(off_o[pos], off_r[i]) - np.maximum(on_o[pos], on_r[i]) + 1
        union = (off_o[pos] - on_o[pos] + 1) + (off_r[i] - on_r[i] + 1) - inter
        iou = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
        j = int(np.argmax(iou))
        if iou[j] > 0:
            best[i], best_row[i] = float(iou[j]), int(pos[j])
    return best, best_row, has_any


def _matching(pred: pd.DataFrame, gt: pd.DataFrame, official: Any, videos: list[tuple[str, str]],
              clock: pd.DataFrame, extra: pd.DataFrame | None = None) -> _Matching:
    """Interval-level view of the official matching (``official.pairs``) of ``pred`` against
    ``gt`` (the tables it was scored on, rows in the same order). ``videos``: the videos to
    list even without intervals (the test videos of the scored folds); ``extra``: columns of
    the predictions to carry into the false list (apex, score), row-aligned with ``pred``."""
    pairs = official.pairs
    pred_scored, gt_scored = _scored_rows(pred, gt)
    claimed = np.zeros(len(pred), dtype=bool)
    claimed[pairs["pred_row"].to_numpy(np.int64)] = True
    found = np.zeros(len(gt), dtype=bool)
    found[pairs["gt_row"].to_numpy(np.int64)] = True
    pred_status = np.where(claimed, "TP", np.where(pred_scored, "FP", "unscored")).astype(object)
    gt_status = np.where(found, "found", np.where(gt_scored, "missed", "unscored")).astype(object)
    claimer = dict(zip(pairs["gt_row"].tolist(), pairs["pred_row"].tolist()))

    # Counts per video (every listed video, then any other with intervals).
    def count(df: pd.DataFrame, mask: np.ndarray) -> pd.Series:
        d = df[mask]
        return d.groupby([d["subject"].astype(str), d["video"].astype(str)]).size()

    keys = list(dict.fromkeys(list(videos)
                              + list(zip(gt["subject"].astype(str), gt["video"].astype(str)))
                              + list(zip(pred["subject"].astype(str),
                                         pred["video"].astype(str)))))
    idx = pd.MultiIndex.from_tuples(keys, names=["subject", "video"]) if keys else \
        pd.MultiIndex.from_arrays([[], []], names=["subject", "video"])
    ones_p, ones_g = np.ones(len(pred), dtype=bool), np.ones(len(gt), dtype=bool)
    cols = {
        "true": count(gt, ones_g), "predicted": count(pred, ones_p),
        "tp": count(gt, gt_status == "found"), "fp": count(pred, pred_status == "FP"),
        "fn": count(gt, gt_status == "missed"),
        "pred_unscored": count(pred, pred_status == "unscored"),
        "gt_unscored": count(gt, gt_status == "unscored"),
    }
    c = clock.reindex(idx)
    per_video = pd.DataFrame({
        "subject": [k[0] for k in keys], "video": [k[1] for k in keys],
        "frames": pd.array(c["n_frames"].to_numpy(), dtype="Int64"),
        "seconds": c["n_frames"].to_numpy(np.float64) / c["fps"].to_numpy(np.float64),
        **{k: v.reindex(idx, fill_value=0).to_numpy(np.int64) for k, v in cols.items()},
    }, columns=PER_VIDEO_COLUMNS)

    # Missed true intervals.
    g = gt[gt_status == "missed"]
    iou, row, any_pred = _best_overlap(g, pred)
    missed = pd.DataFrame({
        "subject": g["subject"].astype(str).to_numpy(dtype=object),
        "video": g["video"].astype(str).to_numpy(dtype=object),
        "gt_row": np.flatnonzero(gt_status == "missed"),
        "onset": g["onset"].to_numpy(np.int64), "offset": g["offset"].to_numpy(np.int64),
        **_seconds(g, clock, ("onset", "offset")),
        "emotion": g["emotion"].astype(str).to_numpy(dtype=object),
        "best_iou": iou, "best_pred_row": pd.array(np.where(row >= 0, row, None), dtype="Int64"),
        "reason": ["no prediction in this video" if not a else
                   "no prediction overlaps it" if r < 0 else
                   f"best prediction (row {r}) reaches IoU {v:.3f} < 0.5"
                   for v, r, a in zip(iou, row, any_pred)],
    }, columns=MISSED_COLUMNS)

    # False predictions.
    fp_rows = np.flatnonzero(pred_status == "FP")
    p = pred.iloc[fp_rows]
    iou, row, any_gt = _best_overlap(p, gt)
    extra_cols = {}
    for name in ("apex", "score"):
        vals = extra[name].to_numpy()[fp_rows] if extra is not None and name in extra else \
            np.full(len(p), np.nan)
        extra_cols[name] = vals
    false = pd.DataFrame({
        "subject": p["subject"].astype(str).to_numpy(dtype=object),
        "video": p["video"].astype(str).to_numpy(dtype=object),
        "pred_row": fp_rows,
        "onset": p["onset"].to_numpy(np.int64), "offset": p["offset"].to_numpy(np.int64),
        **_seconds(p, clock, ("onset", "offset")),
        "apex": pd.array(pd.to_numeric(pd.Series(extra_cols["apex"]), errors="coerce")
                         .round().astype("Int64")),
        "emotion": p["emotion"].astype(str).to_numpy(dtype=object),
        "score": pd.to_numeric(pd.Series(extra_cols["score"]), errors="coerce").to_numpy(),
        "best_iou": iou, "best_gt_row": pd.array(np.where(row >= 0, row, None), dtype="Int64"),
        "reason": [_false_reason(v, r, a, claimer) for v, r, a in zip(iou, row, any_gt)],
    }, columns=FALSE_COLUMNS)
    return _Matching(pred_status=pred_status, gt_status=gt_status, per_video=per_video,
                     missed=missed, false=false)


def _false_reason(iou: float, gt_row: int, any_gt: bool, claimer: dict[int, int]) -> str:
    """Why a scored prediction claimed no true interval."""
    if not any_gt:
        return "no true interval in this video"
    if gt_row < 0:
        return "overlaps no true interval"
    if 2 * iou >= 1 and gt_row in claimer:
        return (f"its true interval (row {gt_row}, IoU {iou:.3f}) was claimed by an earlier "
                f"prediction (row {claimer[gt_row]})")
    return f"best true interval (row {gt_row}) reaches IoU {iou:.3f} < 0.5"


def _confusion(official: Any, gt: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Counts of (true, predicted) emotion over the official spotting true positives; rows =
    every emotion of the ground truth, columns = the four emotions (+ neutral when predicted)."""
    pairs = official.pairs
    gt_em = pairs["gt_emotion"].astype(str).tolist()
    pred_em = pairs["pred_emotion"].astype(str).tolist()
    rows = [e for e in CLASS_NAMES if e in set(gt_em) | set(gt["emotion"].astype(str))]
    cols = [e for e in CLASS_NAMES if e in EMOTION_CLASSES or e in set(pred_em)]
    m = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for g, p in zip(gt_em, pred_em):
        if g in rows and p in cols:
            m[rows.index(g), cols.index(p)] += 1
    return m, rows, cols


def _pick_videos(videos: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Up to ``n`` videos taken round-robin over subjects (subject order kept), so every subject
    is shown before any gets a second video."""
    by_subject: dict[str, list[tuple[str, str]]] = {}
    for sv in videos:
        by_subject.setdefault(sv[0], []).append(sv)
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < n and any(len(v) > depth for v in by_subject.values()):
        for vids in by_subject.values():
            if len(vids) > depth and len(picked) < n:
                picked.append(vids[depth])
        depth += 1
    return picked


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "_"


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "n/a" if not math.isfinite(float(v)) else f"{float(v):.{digits}f}"
    return str(v)


# -- document blocks, rendered to Markdown and HTML -------------------------------------------


@dataclass
class _Table:
    header: list[str]
    rows: list[list[Any]]
    left: set[int] = field(default_factory=set)  # text columns, left-aligned in HTML


@dataclass
class _Image:
    name: str  # file name under plots/
    data: bytes
    caption: str


def _md(blocks: list[tuple[str, Any]]) -> str:
    out: list[str] = []
    for kind, b in blocks:
        if kind == "h1":
            out.append(f"# {b}\n")
        elif kind == "h2":
            out.append(f"## {b}\n")
        elif kind == "h3":
            out.append(f"### {b}\n")
        elif kind == "code":
            lang, text = b
            out.append(f"```{lang}\n{text}\n```\n")
        elif kind == "p":
            out.append(f"{b}\n")
        elif kind == "warn":
            out.append(f"> **Warning:** {b}\n")
        elif kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join("---" for _ in b.header) + "|")
            for r in b.rows:
                out.append("| " + " | ".join(_fmt(x).replace("|", "\\|") for x in r) + " |")
            out.append("")
        elif kind == "img":
            out.append(f"![{b.caption}](plots/{b.name})\n")
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1060px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.6em 0 1.2em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:0.9em}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.warn{background:#fff3cd;border:1px solid #e0c36b;padding:0.6em 1em}
figure{margin:0.8em 0}figcaption{font-size:0.85em;color:#555}img{max-width:100%}
td.t{text-align:left}pre{background:#f6f6f6;padding:0.6em;font-size:0.85em;overflow-x:auto}
summary{cursor:pointer}
"""


def _html(title: str, blocks: list[tuple[str, Any]]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"]
    for kind, b in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{esc(str(b))}</{kind}>")
        elif kind == "code":
            lang, text = b
            out.append(f"<details><summary>{esc(lang.upper())} ({text.count(chr(10)) + 1} "
                       f"lines)</summary><pre>{esc(text)}</pre></details>")
        elif kind == "p":
            out.append(f"<p>{esc(str(b))}</p>")
        elif kind == "warn":
            out.append(f"<p class=\"warn\"><b>Warning:</b> {esc(str(b))}</p>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in b.header)
                       + "</tr></thead><tbody>")
            for r in b.rows:
                out.append("<tr>" + "".join(
                    f"<td class=\"t\">{esc(_fmt(x))}</td>" if i in b.left else
                    f"<td>{esc(_fmt(x))}</td>" for i, x in enumerate(r)) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b.data).decode("ascii")
            out.append(f"<figure><img alt=\"{esc(b.caption)}\" src=\"data:image/png;base64,"
                       f"{data}\"><figcaption>{esc(b.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- building -------------------------------------------------------------------------------


def _fold_rows(states: list[FoldState], per_fold: pd.DataFrame) -> pd.DataFrame:
    metrics = per_fold.set_index("fold") if len(per_fold) else pd.DataFrame()
    metric_cols = ["strs", "spot_tp", "spot_fp", "spot_fn", "spot_precision", "spot_recall",
                   "spot_f1", "analysis_precision", "analysis_recall", "analysis_f1",
                   "analysis_uf1", "n_pred", "n_gt"]
    rows = []
    for st in states:
        m = st.marker
        timings = m.get("timings", {}) if st.complete else {}
        history = m.get("history", []) if st.complete else []
        row: dict[str, Any] = {"fold": st.fold, "status": "complete" if st.complete else "missing",
                               "reason": st.reason}
        for c in metric_cols:
            v = metrics.loc[st.fold, c] if st.complete and st.fold in metrics.index else np.nan
            row[c] = float(v) if v is not None and not pd.isna(v) else np.nan
        row.update(
            k_p=float(m["k_p"]) if st.complete and "k_p" in m else np.nan,
            n_train_windows=float(m.get("n_train_windows", np.nan)) if st.complete else np.nan,
            n_test_videos=float(len(m.get("test_videos", []))) if st.complete else np.nan,
            train_s=float(timings.get("train_s", np.nan)),
            predict_s=float(timings.get("predict_s", np.nan)),
            total_s=float(timings.get("total_s", np.nan)),
            final_loss=_epoch_value(history, -1, "loss"),
            final_mse=_epoch_value(history, -1, "mse"),
            final_ce=_epoch_value(history, -1, "ce"),
            epochs=float(len(history)) if history else np.nan,
            min_loss=np.nan, min_loss_epoch=np.nan,
            how=str(m.get("how", "")) if st.complete else "",
            load_s=float(timings.get("load_s", np.nan)),
            wait_s=float(timings.get("wait_s", np.nan)),
            decode_s=float(timings.get("decode_s", np.nan)),
            threads=float(timings.get("threads", np.nan)),
            train_hash=str(m.get("train_hash", "")) if st.complete else "",
            decode_hash=str(m.get("decode_hash", "")) if st.complete else "",
        )
        losses = [_epoch_value(history, i, "loss") for i in range(len(history))]
        if losses and np.isfinite(losses).any():
            i = int(np.nanargmin(losses))
            row.update(min_loss=losses[i], min_loss_epoch=float(history[i].get("epoch", i + 1)))
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("spot_tp", "spot_fp", "spot_fn", "n_pred", "n_gt", "k_p", "n_train_windows",
              "n_test_videos", "epochs", "min_loss_epoch", "threads"):
        df[c] = df[c].astype("Int64") if len(df) else df[c]
    return df


def _epoch_value(history: list[dict[str, Any]], i: int, key: str) -> float:
    """``history[i][key]`` as a float (NaN when missing or not a number)."""
    try:
        return float(history[i][key])
    except (IndexError, KeyError, TypeError, ValueError):
        return np.nan


def _paper_rows(cfg: Config, synthetic: bool, official: Any, reference: Any
                ) -> list[list[Any]] | None:
    if cfg.dataset.layout not in PAPER_LAYOUTS or synthetic or not cfg.paper:
        return None
    rows: list[list[Any]] = [
        ["this run (official STRS)", official.strs, official.spot_f1, official.analysis_f1],
        ["this run (paper-code scoring)", reference.strs, reference.spot_f1,
         reference.analysis_f1],
    ]
    for name, nums in cfg.paper.items():
        rows.append([name, nums.strs, nums.spot_f1, nums.recog_f1])
    return rows


def build_report(run_dir: str | os.PathLike[str], cfg: Config | None = None, *,
                 manifest: pd.DataFrame | str | os.PathLike[str] | None = None,
                 labels: pd.DataFrame | str | os.PathLike[str] | None = None,
                 max_videos: int = DEFAULT_MAX_VIDEOS) -> ReportResult:
    """Rebuild ``<run_dir>/report/`` from the run's finished folds (no training; see the
    module docstring for the files).

    ``cfg`` defaults to the config in ``run.json``; ``manifest``/``labels`` (tables or Parquet
    paths) default to the paths run.json records, then ``cfg.ingest_dir``, then the run's
    sibling ``ingest/`` folder. Expected folds are the subjects with a labelled
    micro-expression (:func:`vrme.training.loso.loso_subjects`); the ones that did not finish are listed
    as missing and scoring covers the complete ones only (their ground truth only). At most
    ``max_videos`` score curves are drawn (the per-video table covers every video). Raises
    :class:`DataError` when no fold is complete.
    """
    import time

    from vrme.decoding.decode import OUTPUT_COLUMNS, box_smooth, peak_threshold
    from vrme.training.loso import (ground_truth_table, loso_subjects, per_fold_metrics,
                           pool_fold_intervals, score_intervals)
    from vrme.report.plots import (LOSS_PANELS_PER_PNG, confusion_png, durations_png, loss_curves_png,
                            score_curve_png, subject_f1_png)
    from vrme.training.train import read_scores

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    info: dict[str, Any] = {}
    if (run_dir / RUN_INFO_FILE).is_file():
        info = read_run_info(run_dir)
    if cfg is None:
        if not info:
            raise DataError(f"{run_dir / RUN_INFO_FILE} not found and no config given: cannot "
                            "tell how this run was made (pass --config)")
        cfg = run_config(run_dir)
    manifest_df, labels_df = _load_tables(run_dir, cfg, info, manifest, labels)
    expected = loso_subjects(manifest_df, labels_df)
    config_hash = info.get("fold_config_hash")
    states = fold_states(run_dir, expected, config_hash)
    complete = [s.fold for s in states if s.complete]
    missing = [s for s in states if not s.complete]
    if not complete:
        reasons = "; ".join(f"{s.fold}: {s.reason}" for s in missing[:5])
        raise DataError(f"no finished fold under {run_dir / 'folds'} ({reasons})")
    for s in missing:
        log.warning("fold %s is missing from the report: %s", s.fold, s.reason)
    state_of = {s.fold: s for s in states}

    intervals = pool_fold_intervals(run_dir, complete).reset_index(drop=True)
    gt = ground_truth_table(labels_df, complete)
    emotions = list(cfg.eval.emotions) if cfg.eval.emotions else None
    scores = score_intervals(intervals, gt, emotions)
    official, reference = scores["official"], scores["reference"]
    pred = intervals[STRS_COLUMNS].reset_index(drop=True)
    per_fold = per_fold_metrics(intervals, gt, complete, emotions)
    folds_df = _fold_rows(states, per_fold)
    synthetic = bool(info.get("dataset", {}).get("synthetic",
                                                  is_synthetic_dataset(cfg.dataset.root)))
    paper = _paper_rows(cfg, synthetic, official, reference)

    # Every test video of the scored folds, and the official matching interval by interval.
    all_videos: list[tuple[str, str]] = []
    fold_of: dict[tuple[str, str], str] = {}
    for f in complete:
        for v in state_of[f].marker.get("test_videos", []):
            all_videos.append((str(f), str(v)))
            fold_of[(str(f), str(v))] = f
    clock = _video_clock(manifest_df, cfg.dataset.fps)
    match = _matching(pred, gt, official, all_videos, clock, extra=intervals)
    stages, stages_note = read_stages(run_dir)

    metrics: dict[str, Any] = {
        "run": info.get("run_name", run_dir.name),
        "run_dir": str(run_dir),
        "created": _now(),
        "dataset": {"name": cfg.dataset.name, "layout": cfg.dataset.layout,
                    "synthetic": synthetic, "fps": cfg.dataset.fps,
                    "frame_skip": cfg.dataset.frame_skip},
        "complete": not missing,
        "expected_folds": expected,
        "completed_folds": complete,
        "missing_folds": [s.fold for s in missing],
        "missing_reasons": {s.fold: s.reason for s in missing},
        "emotions": list(official.emotions),
        "official": official.to_dict(),
        "reference": reference.to_dict(),
        "reference_emotions": list(reference.emotions),
        "per_class": _per_class(pred, gt, official),
        "n_predictions": int(len(pred)),
        "n_ground_truth": int(len(gt)),
        "pred_unscored": int(official.pred_unscored),
        "gt_unscored": int(official.gt_unscored),
        "fold_config_hash": config_hash,
        "versions": info.get("versions"),
    }
    if cfg.datasets:
        metrics["per_dataset"] = per_dataset_metrics(pred, gt, [d.name for d in cfg.datasets],
                                                     emotions)
    if paper is not None:
        metrics["paper"] = {name: nums.model_dump() for name, nums in cfg.paper.items()}

    out = run_dir / REPORT_DIR
    plots_dir = out / "plots"
    images: list[_Image] = []

    # Per-video score curves.
    score_images: list[_Image] = []
    shown = _pick_videos(all_videos, max(0, int(max_videos)))
    scores_cache: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    pred_marked = intervals.assign(status=match.pred_status)
    gt_marked = gt.assign(status=match.gt_status)
    for subj, vid in shown:
        f = fold_of[(subj, vid)]
        if f not in scores_cache:
            scores_cache[f] = read_scores(run_dir / "folds" / f)
        table, meta = scores_cache[f]
        grp = table[(table["subject"].astype(str) == subj) & (table["video"].astype(str) == vid)]
        grp = grp.sort_values("index")
        spot = grp["spot"].to_numpy(np.float64)
        k_p = int(state_of[f].marker.get("k_p") or 1)
        smoothed = box_smooth(spot, 2 * k_p) if len(spot) else spot
        thr = peak_threshold(smoothed, cfg.decode.p) if len(spot) else None
        g = gt_marked[(gt_marked["subject"] == subj) & (gt_marked["video"] == vid)]
        p = pred_marked[(pred_marked["subject"].astype(str) == subj)
                        & (pred_marked["video"].astype(str) == vid)]
        c = clock.loc[(subj, vid)] if (subj, vid) in clock.index else None
        counts = _counts_text(p["status"], g["status"])
        png = score_curve_png(grp["frame"].to_numpy(), spot, gt=g, pred=p, smoothed=smoothed,
                              threshold=thr,
                              clock=None if c is None else (c["first_frame"], c["fps"]),
                              title=f"subject {subj}, video {vid}: {len(g)} true, {len(p)} "
                                    f"predicted; {counts} (k_p={k_p})")
        score_images.append(_Image(f"score_{_safe_file_part(subj)}_{_safe_file_part(vid)}.png",
                                   png, f"Spot score of subject {subj}, video {vid} ({counts})"))
    m, rows, cols = _confusion(official, gt)
    images.append(_Image("confusion.png", confusion_png(
        m, rows, cols, title=f"Analysis on spotted intervals ({int(m.sum())} pairs)"),
        "Analysis confusion matrix on the spotted (true positive) intervals"))
    images.append(_Image("subject_f1.png", subject_f1_png(
        [s.fold for s in states],
        [float(per_fold.set_index("fold").loc[s.fold, "spot_f1"]) if s.complete else None
         for s in states], pooled=official.spot_f1, title="Spotting F1 per subject"),
        "Spotting F1 per subject (fold); n/a = fold missing"))
    images.append(_Image("durations.png", durations_png(
        (intervals["offset"] - intervals["onset"] + 1).to_numpy(),
        (gt["offset"] - gt["onset"] + 1).to_numpy(),
        fps=None if cfg.datasets else cfg.dataset.fps,  # several datasets: frames only
        title="Predicted vs true micro-expression durations"),
        "Durations of predicted and true intervals"))

    # Training curves, small multiples, LOSS_PANELS_PER_PNG folds a figure.
    loss_images: list[_Image] = []
    pages = [states[i:i + LOSS_PANELS_PER_PNG] for i in range(0, len(states),
                                                              LOSS_PANELS_PER_PNG)]
    for i, page in enumerate(pages, 1):
        part = f" ({i} of {len(pages)})" if len(pages) > 1 else ""
        folds_txt = f"folds {page[0].fold} to {page[-1].fold}" if len(page) > 1 else \
            f"fold {page[0].fold}"
        loss_images.append(_Image(f"loss_curves_{i}.png", loss_curves_png(
            [s.fold for s in page],
            [s.marker.get("history") if s.complete else None for s in page],
            [str(s.marker.get("how", "")) if s.complete else "missing" for s in page],
            title=f"Training loss per epoch, {folds_txt}{part}"),
            f"Training loss, MSE and cross-entropy per epoch, {folds_txt}{part} (one y axis "
            "for all, logarithmic when the values span a decade)"))

    # Tables and files.
    files: dict[str, Path] = {}
    files["predictions"] = write_text_atomic(out / "predictions.csv", pred.to_csv(index=False))
    files["ground_truth"] = write_text_atomic(out / "ground_truth.csv",
                                              gt[STRS_COLUMNS].to_csv(index=False))
    files["intervals"] = write_text_atomic(out / "intervals.csv",
                                           intervals[OUTPUT_COLUMNS].to_csv(index=False))
    files["per_video"] = write_text_atomic(out / "per_video.csv",
                                           match.per_video.to_csv(index=False))
    files["missed"] = write_text_atomic(out / "missed.csv", match.missed.to_csv(index=False))
    files["false"] = write_text_atomic(out / "false.csv", match.false.to_csv(index=False))
    import pyarrow as pa

    files["folds"] = write_parquet_atomic(out / "folds.parquet",
                                          pa.Table.from_pandas(folds_df, preserve_index=False))
    plot_paths = []
    for img in images + loss_images + score_images:
        plot_paths.append(write_bytes_atomic(plots_dir / img.name, img.data))
    keep = {p.name for p in plot_paths}
    for old in plots_dir.glob("*.png"):
        if old.name not in keep:  # curves of videos no longer shown
            old.unlink(missing_ok=True)
    metrics["per_video"] = _records(match.per_video)
    metrics["missed"] = _records(match.missed)
    metrics["false"] = _records(match.false)
    metrics["shown_videos"] = [list(sv) for sv in shown]
    metrics["n_videos"] = len(all_videos)
    metrics["plots"] = sorted(keep)
    metrics["report_seconds"] = round(time.perf_counter() - t0, 3)
    metrics = _clean(metrics)
    files["metrics"] = write_json_atomic(out / "metrics.json", metrics)

    doc = _Doc(cfg=cfg, info=info, metrics=metrics, folds_df=folds_df, paper=paper,
               images=images, loss_images=loss_images, score_images=score_images, shown=shown,
               all_videos=all_videos, max_videos=max_videos, match=match, stages=stages,
               stages_note=stages_note)
    blocks = _document(doc)
    title = f"vrme report: {metrics['run']}"
    files["markdown"] = write_text_atomic(out / "report.md", _md(blocks))
    files["html"] = write_text_atomic(out / "report.html", _html(title, blocks))
    log.info("report of %d/%d folds written to %s in %.1f s (official STRS %s)", len(complete),
             len(expected), files["html"], time.perf_counter() - t0, _fmt(official.strs))
    return ReportResult(report_dir=out, html=files["html"], markdown=files["markdown"],
                        metrics_path=files["metrics"], folds_path=files["folds"],
                        predictions=files["predictions"], ground_truth=files["ground_truth"],
                        plots=plot_paths, metrics=metrics, complete=not missing,
                        missing_folds=[s.fold for s in missing], shown_videos=shown,
                        per_video=files["per_video"], missed=files["missed"],
                        false=files["false"])


def _counts_text(pred_status: pd.Series, gt_status: pd.Series) -> str:
    """'TP a, FP b, FN c' of one video (TP = true intervals found)."""
    return (f"TP {int((gt_status == 'found').sum())}, FP {int((pred_status == 'FP').sum())}, "
            f"FN {int((gt_status == 'missed').sum())}")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts (missing values become None)."""
    obj = df.astype(object)
    return [_clean(r) for r in obj.where(obj.notna(), None).to_dict(orient="records")]


def read_stages(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str]:
    """The stages of ``<run_dir>/stages.json`` (``{name: {"status", "done", "total", "unit",
    "note", "started", "seconds"}}``) and a note; (None, why) when the file is missing or not
    readable."""
    p = Path(run_dir) / STAGES_FILE
    if not p.is_file():
        return None, (f"No {STAGES_FILE} in the run folder: the run was not made by a vrme flow "
                      "(vrme run, vrme benchmark) but by the library directly, which records "
                      "no time per stage. Each fold's own times are under Per-fold training.")
    try:
        data = json.loads(p.read_text())
        stages = data["stages"]
        if not isinstance(stages, dict) or not all(isinstance(v, dict)
                                                   for v in stages.values()):
            raise ValueError("'stages' is not an object of objects")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{p} is not readable ({exc}): no time per stage shown."
    return stages, (f"From {STAGES_FILE} as it was when this report was built (a run builds "
                    "its report before it records the report stage as finished).")


# -- the document ---------------------------------------------------------------------------


@dataclass
class _Doc:
    """Everything :func:`_document` renders."""

    cfg: Config
    info: dict[str, Any]
    metrics: dict[str, Any]
    folds_df: pd.DataFrame
    paper: list[list[Any]] | None
    images: list[_Image]
    loss_images: list[_Image]
    score_images: list[_Image]
    shown: list[tuple[str, str]]
    all_videos: list[tuple[str, str]]
    max_videos: int
    match: _Matching
    stages: dict[str, Any] | None
    stages_note: str


def _secs(v: Any, digits: int = 1) -> str | None:
    """Seconds as text with ``digits`` decimals (None when missing)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f"{f:.{digits}f}" if math.isfinite(f) else None


def _utc(ts: Any) -> str | None:
    try:
        return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).replace(
            microsecond=0).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _number(v: Any) -> float | None:
    """``v`` as a finite float, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _stage_order(stages: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Stages in the order they started (stages that never started last, by name)."""
    def key(item: tuple[str, dict[str, Any]]) -> tuple[int, float, str]:
        start = _number(item[1].get("started"))
        return (0, start, item[0]) if start is not None else (1, 0.0, item[0])

    return sorted(stages.items(), key=key)


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` of a nested mapping, leaves only."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.extend(_flat(v, key) if isinstance(v, dict) and v else [(key, v)])
    return out


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _provenance(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'How this run was made': config, code versions, machine, stages."""
    info, cfg = d.info, d.cfg
    b: list[tuple[str, Any]] = [("h2", "How this run was made")]
    if info:
        b.append(("p", f"Config {info.get('config_source') or '(given in code, no file)'}; "
                       f"run.json written {info.get('created', 'n/a')}. The whole config is in "
                       "the appendix as YAML."))
    else:
        b.append(("warn", f"No {RUN_INFO_FILE} in the run folder: the config below is the one "
                          "passed to the report, the code versions and machine of the run are "
                          "not recorded."))
    # Code versions: the run's (run.json) beside this report's code.
    ran = info.get("versions") or {}
    ran_code = ran.get("code") or {}
    now = {"vrme": vrme.__version__, "python": platform.python_version(), **code_versions()}
    b.append(("h3", "Code versions"))
    rows, differ = [], []
    for key in ("vrme", "python", *code_versions()):
        r = ran.get(key) if key in ("vrme", "python") else ran_code.get(key)
        if r is not None and str(r) != str(now[key]):
            differ.append(key)
        rows.append([key, "not recorded" if r is None else str(r), str(now[key])])
    src = ran.get("source")
    rows.append(["source (git commit)", "not a git checkout" if not src and "source" in ran
                 else "not recorded" if not src else
                 f"{src.get('commit', '')[:12]}{' (uncommitted changes)' if src.get('dirty') else ''}",
                 ""])
    for key, label in (("feature_hash", "feature hash"), ("fold_config_hash", "fold config hash")):
        rows.append([label, info.get(key) or "not recorded", ""])
    b.append(("table", _Table(["component", "run (run.json)", "this report's code"], rows)))
    if differ:
        b.append(("warn", f"The code now differs from the code that made the run in: "
                          f"{', '.join(differ)}. The folds' numbers are the run's own (read "
                          "from its files); only the scoring and this report are today's."))
    # Machine.
    mach = info.get("machine")
    b.append(("h3", "Machine"))
    if isinstance(mach, dict) and mach:
        b.append(("table", _Table(["key", "value"], [[k, _value_text(v)] for k, v in mach.items()],
                                  left={1})))
    else:
        b.append(("p", "run.json records no machine."))
    # Stages.
    b.append(("h3", "Time and outcome of each stage"))
    b.append(("p", d.stages_note))
    if d.stages is not None:
        srows, total, spans = [], 0.0, []
        for name, st in _stage_order(d.stages):
            sec, start = _number(st.get("seconds")), _number(st.get("started"))
            if sec is not None:
                total += sec
                if start is not None:
                    spans.append((start, start + sec))
            done, tot = st.get("done"), st.get("total")
            count = f"{done}/{tot} {st.get('unit') or ''}".strip() if tot else ""
            note = str(st.get("note") or "")
            if name == "report" and st.get("status") in ("pending", "running"):
                note = (note + "; " if note else "") + "recorded before this report was built"
            srows.append([name, st.get("status"), count, _utc(start), _secs(sec), note])
        span = (f"; {max(e for _, e in spans) - min(b for b, _ in spans):.1f} s from the first "
                "stage's start to the last one's end") if spans else ""
        srows.append(["all stages", "", "", "", _secs(total),
                      f"sum of the stages' seconds{span}"])
        b.append(("table", _Table(["stage", "status", "done", "started (UTC)", "seconds",
                                   "note"], srows, left={5})))
    # The settings that decide the numbers.
    conf = cfg.model_dump(mode="json")
    b.append(("h3", "Settings"))
    b.append(("p", "Every key of the config, section by section (nested keys dotted)."))
    crow = [[sec, "; ".join(f"{k}={_value_text(v)}" for k, v in _flat(val))]
            for sec, val in conf.items() if isinstance(val, dict) and val]
    crow += [[sec, _value_text(val)] for sec, val in conf.items()
             if not isinstance(val, dict) and val is not None]
    b.append(("table", _Table(["section", "settings"], crow, left={1})))
    return b


def _training(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'Per-fold training': loss curves and a table of each fold's training."""
    b: list[tuple[str, Any]] = [("h2", "Per-fold training")]
    b.append(("p", "How: trained = trained when the fold was written; decoded = a trained "
                   "model with the same training hash reused (models/<train hash>) and its "
                   "scores decoded again. Load, train and predict seconds are those of the "
                   "training that made the model; decode and total those of the run that wrote "
                   "the fold. Lowest loss = the smallest epoch loss (its epoch)."))
    rows = []
    for r in d.folds_df.itertuples(index=False):
        low = None if pd.isna(r.min_loss) else f"{r.min_loss:.4f} ({int(r.min_loss_epoch)})"
        rows.append([r.fold, r.how or r.status, None if pd.isna(r.epochs) else int(r.epochs),
                     r.final_loss, r.final_mse, r.final_ce, low,
                     None if pd.isna(r.n_train_windows) else int(r.n_train_windows),
                     None if pd.isna(r.threads) else int(r.threads), _secs(r.load_s),
                     _secs(r.train_s), _secs(r.predict_s), _secs(r.decode_s, 2),
                     _secs(r.total_s), r.train_hash or None, r.decode_hash or None])
    b.append(("table", _Table(["fold", "how", "epochs", "final loss", "final MSE", "final CE",
                               "lowest loss (epoch)", "train windows", "threads", "load s",
                               "train s", "predict s", "decode s", "total s", "train hash",
                               "decode hash"], rows)))
    for img in d.loss_images:
        b.append(("img", img))
    return b


def _per_video(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'Per video': counts per video, the missed and the false intervals."""
    mt, off = d.match, d.metrics["official"]
    pv = mt.per_video
    b: list[tuple[str, Any]] = [("h2", "Per video")]
    b.append(("p", "Official STRS matching: in each video every true interval goes to the first "
                   "prediction (table order) with IoU >= 0.5; one prediction may claim several. "
                   "TP = true intervals claimed, FP = predictions that claimed none, FN = true "
                   f"intervals nobody claimed. Summed over videos: TP {int(pv['tp'].sum())}, "
                   f"FP {int(pv['fp'].sum())}, FN {int(pv['fn'].sum())} (official spot TP "
                   f"{off['spot_tp']}, FP {off['spot_fp']}, FN {off['spot_fn']}). Not scored "
                   "(the official rules leave them out): predictions in a video without ground "
                   "truth, ground truth of a subject without any prediction. Also in "
                   "per_video.csv."))
    rows = [[r.subject, r.video, None if pd.isna(r.frames) else int(r.frames),
             _secs(r.seconds), r.true, r.predicted, r.tp, r.fp, r.fn, r.pred_unscored,
             r.gt_unscored] for r in pv.itertuples(index=False)]
    b.append(("table", _Table(["subject", "video", "frames", "seconds", "true", "predicted",
                               "TP", "FP", "FN", "predicted, not scored",
                               "true, not scored"], rows)))

    def capped(df: pd.DataFrame, what: str, file: str) -> pd.DataFrame:
        if len(df) > MAX_LISTED:
            b.append(("p", f"The first {MAX_LISTED} of {len(df)} {what} are listed; {file} and "
                           "metrics.json have them all."))
        return df.head(MAX_LISTED)

    b.append(("h3", f"Missed true intervals (FN, {len(mt.missed)})"))
    b.append(("p", "Frames are original numbers, seconds count from the video's first frame; "
                   "row = 0-based row of ground_truth.csv / predictions.csv (file line = row + "
                   "2). Best IoU: the closest prediction of the same video."))
    if len(mt.missed):
        rows = [[r.subject, r.video, r.gt_row, r.onset, r.offset, _secs(r.onset_s, 2),
                 _secs(r.offset_s, 2), r.emotion, r.best_iou, r.reason]
                for r in capped(mt.missed, "missed intervals", "missed.csv").itertuples(
                    index=False)]
        b.append(("table", _Table(["subject", "video", "gt row", "onset", "offset", "onset s",
                                   "offset s", "emotion", "best IoU", "why"], rows, left={9})))
    else:
        b.append(("p", "None: every scored true interval was found."))
    b.append(("h3", f"False predicted intervals (FP, {len(mt.false)})"))
    if len(mt.false):
        rows = [[r.subject, r.video, r.pred_row, r.onset, r.offset, _secs(r.onset_s, 2),
                 _secs(r.offset_s, 2), None if pd.isna(r.apex) else int(r.apex), r.emotion,
                 r.score, r.best_iou, r.reason]
                for r in capped(mt.false, "false intervals", "false.csv").itertuples(
                    index=False)]
        b.append(("table", _Table(["subject", "video", "pred row", "onset", "offset", "onset s",
                                   "offset s", "apex", "emotion", "score", "best IoU", "why"],
                                  rows, left={11})))
    else:
        b.append(("p", "None: every scored prediction claimed a true interval."))
    return b


def _config_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          default_flow_style=False).rstrip()


def per_dataset_metrics(pred: pd.DataFrame, gt: pd.DataFrame, datasets: list[str],
                        emotions: list[str] | None) -> dict[str, Any]:
    """Official STRS of every dataset of a union on its own (its subjects are
    ``<dataset>.<subject>``, :mod:`vrme.data.union`): the predictions and ground truth of its
    subjects scored alone. The pooled numbers are the run's headline."""
    from vrme.metrics.strs import evaluate_strs
    from vrme.data.union import dataset_of

    out: dict[str, Any] = {}
    p_ds = pred["subject"].astype(str).map(lambda x: dataset_of(x, datasets))
    g_ds = gt["subject"].astype(str).map(lambda x: dataset_of(x, datasets))
    for name in datasets:
        p, g = pred[p_ds == name].reset_index(drop=True), gt[g_ds == name].reset_index(drop=True)
        if len(g) == 0:
            out[name] = None
            continue
        r = evaluate_strs(p[STRS_COLUMNS], g[STRS_COLUMNS], emotions=emotions,
                          variant="official")
        out[name] = {**_clean(r.to_dict()), "n_pred": int(len(p)), "n_gt": int(len(g))}
    return out


def _document(d: _Doc) -> list[tuple[str, Any]]:
    metrics, folds_df = d.metrics, d.folds_df
    ds = metrics["dataset"]
    b: list[tuple[str, Any]] = [("h1", f"vrme report: {metrics['run']}")]
    kind = "synthetic" if ds["synthetic"] else "real"
    b.append(("p", f"Dataset {ds['name']} ({ds['layout']} layout, {kind}), {ds['fps']:g} fps, "
                   f"frame skip {ds['frame_skip']}. Leave-one-subject-out: "
                   f"{len(metrics['completed_folds'])} of {len(metrics['expected_folds'])} folds "
                   f"complete; {metrics['n_predictions']} predicted and "
                   f"{metrics['n_ground_truth']} true micro-expressions. Frame numbers are "
                   f"original numbers. Built {metrics['created']}."))
    if not metrics["complete"]:
        miss = ", ".join(f"{f} ({metrics['missing_reasons'][f]})"
                         for f in metrics["missing_folds"])
        b.append(("warn", f"Incomplete run: missing folds {miss}. The numbers below cover the "
                          "complete folds only."))
    b.append(("h2", "Headline numbers"))
    b.append(("p", "Official = the MEGC STRS evaluator (the number to report); paper-code "
                   "scoring = the reference implementation's own evaluator (soft matching, "
                   "negative/positive/surprise only), shown to compare with published numbers."))
    rows = []
    for key, label in (("strs", "STRS"), ("spot_tp", "spot TP"), ("spot_fp", "spot FP"),
                       ("spot_fn", "spot FN"), ("spot_precision", "spot precision"),
                       ("spot_recall", "spot recall"), ("spot_f1", "spot F1"),
                       ("analysis_precision", "analysis precision"),
                       ("analysis_recall", "analysis recall"), ("analysis_f1", "analysis F1"),
                       ("analysis_uf1", "analysis UF1")):
        rows.append([label, metrics["official"][key], metrics["reference"][key]])
    b.append(("table", _Table(["metric", "official", "paper-code scoring"], rows)))
    if metrics.get("per_dataset"):
        b.append(("h2", "Per dataset"))
        b.append(("p", "One benchmark over several datasets (the MEGC protocol): the official "
                       "STRS of each dataset's subjects scored alone, then of all of them pooled "
                       "(the headline above)."))
        drows = []
        for name, m in metrics["per_dataset"].items():
            m = m or {}
            drows.append([name, m.get("strs"), m.get("spot_f1"), m.get("analysis_f1"),
                          m.get("spot_tp"), m.get("spot_fp"), m.get("spot_fn"), m.get("n_gt")])
        o = metrics["official"]
        drows.append(["pooled", o["strs"], o["spot_f1"], o["analysis_f1"], o["spot_tp"],
                      o["spot_fp"], o["spot_fn"], metrics["n_ground_truth"]])
        b.append(("table", _Table(["dataset", "STRS", "spot F1", "analysis F1", "TP", "FP",
                                   "FN", "true"], drows)))
    if d.paper is not None:
        b.append(("h2", "Beside the paper (Table 3)"))
        b.append(("p", "Published numbers come from the config's paper section. The paper's "
                       "own numbers were computed with the paper-code scoring and with k_p "
                       "estimated over all subjects; this run estimates priors per fold."))
        b.append(("table", _Table(["method", "STRS", "spot F1", "recog F1"], d.paper)))
    b.extend(_provenance(d))
    b.append(("h2", "Per emotion"))
    b.append(("p", "Spot recall: share of the emotion's true intervals that were spotted. "
                   "Spot precision: share of intervals predicted with that emotion that match a "
                   "true interval. Analysis: official one-vs-rest on the spotted pairs."))
    prow = []
    for e, r in metrics["per_class"].items():
        prow.append([e, r["n_gt"], r["n_pred"], r["spotted"], r["spot_recall"],
                     r["spot_precision"], r.get("analysis_precision"),
                     r.get("analysis_recall"), r.get("analysis_f1")])
    b.append(("table", _Table(["emotion", "true", "predicted", "spotted", "spot recall",
                               "spot precision", "analysis precision", "analysis recall",
                               "analysis F1"], prow)))
    for img in d.images:
        b.append(("img", img))
    b.append(("h2", "Per fold"))
    frows = [[r.fold, r.status, r.strs, r.spot_f1, r.analysis_f1, r.n_pred, r.n_gt,
              None if pd.isna(r.k_p) else int(r.k_p), _secs(r.train_s), r.final_loss]
             for r in folds_df.itertuples(index=False)]
    b.append(("table", _Table(["fold", "status", "STRS", "spot F1", "analysis F1", "predicted",
                               "true", "k_p", "train s", "final loss"], frows)))
    b.extend(_training(d))
    b.extend(_per_video(d))
    b.append(("h2", "Score curves"))
    names = ", ".join(f"{s}/{v}" for s, v in d.shown)
    b.append(("p", f"Per-frame spot score of {len(d.shown)} of {len(d.all_videos)} videos "
                   f"(round-robin over subjects, at most {d.max_videos}; every video is in the "
                   f"per-video table): {names}. Bottom axis: original frame numbers; top axis: "
                   "seconds from the video's first frame. Shaded bands = true "
                   "micro-expressions (dashed outline = missed), bars under the curve = "
                   "predicted intervals (tick = apex; solid = TP, hatched = FP, outline = not "
                   "scored), coloured by emotion; dashed = smoothed score, dotted = peak "
                   "threshold."))
    for img in d.score_images:
        b.append(("img", img))
    b.append(("h2", "Appendix: the config (YAML)"))
    b.append(("p", "The run's whole config (from run.json), as `vrme run --config` reads it."))
    b.append(("code", ("yaml", _config_yaml(d.cfg))))
    return b
