"""Leave-one-subject-out: every fold, pooled predictions, one STRS score (METHOD.md section 9).

``run_loso`` trains (or reuses) one fold per subject under ``<run_dir>/folds/<subject>/``,
pools the folds' ``intervals.csv`` and scores them once with STRS, both the official variant and
the paper code's ("reference"). It writes ``<run_dir>/predictions.csv`` (pooled intervals,
original frame numbers) and ``<run_dir>/loso.json`` (metrics, pooled and per fold).

Folds run one after another here; an orchestrator can instead call
:func:`vrme.training.train.train_fold` per subject in parallel and then :func:`pool_fold_intervals`
and :func:`score_intervals`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.catalog import INTERVALS_FILE, PRIORS_FILE, fold_dir, folds_dir
from vrme.config import Config, DecodeConfig
from vrme.decoding.decode import OUTPUT_COLUMNS, empty_intervals
from vrme.errors import DataError
from vrme.features.windows import micro_events
from vrme.io import write_json_atomic, write_text_atomic
from vrme.training.priors import Priors
from vrme.training.train import (
    FoldResult,
    ModelFactory,
    as_table,
    decode_scores_table,
    fold_config_hash,
    fold_is_complete,
    read_intervals,
    read_scores,
    subject_sort_key,
    train_fold,
)

log = logging.getLogger(__name__)

GT_COLUMNS = ["subject", "video", "onset", "offset", "emotion"]


def loso_subjects(manifest: pd.DataFrame | str | os.PathLike[str],
                  labels: pd.DataFrame | str | os.PathLike[str]) -> list[str]:
    """Subjects that get a fold: those with a video in the manifest and at least one labelled
    micro-expression (as the reference), sorted numerically where possible."""
    manifest = as_table(manifest, "manifest")
    ev = micro_events(as_table(labels, "labels"))
    have_video = set(manifest["subject"].astype(str))
    subjects = {str(s) for s in ev["subject"].astype(str)} & have_video
    return sorted(subjects, key=subject_sort_key)


def ground_truth_table(labels: pd.DataFrame | str | os.PathLike[str],
                       subjects: list[str] | None = None) -> pd.DataFrame:
    """STRS ground truth: the micro-expressions (original frame numbers) of ``subjects``
    (default all), columns subject, video, onset, offset, emotion, in table order."""
    ev = micro_events(as_table(labels, "labels"))
    gt = pd.DataFrame({
        "subject": ev["subject"].astype(str).to_numpy(dtype=object),
        "video": ev["video"].astype(str).to_numpy(dtype=object),
        "onset": ev["onset"].astype("int64").to_numpy(),
        "offset": ev["offset"].astype("int64").to_numpy(),
        "emotion": ev["emotion"].astype(str).to_numpy(dtype=object),
    })
    if subjects is not None:
        gt = gt[gt["subject"].isin([str(s) for s in subjects])]
    return gt.reset_index(drop=True)


def finished_folds(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the complete folds under ``run_dir/folds``, in subject order."""
    root = folds_dir(run_dir)
    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted((n for n in names if fold_is_complete(root / n)), key=subject_sort_key)


def pool_fold_intervals(run_dir: str | os.PathLike[str],
                        folds: list[str] | None = None) -> pd.DataFrame:
    """Concatenate the ``intervals.csv`` of the finished folds under ``run_dir/folds`` (all, or
    the named ones; a named fold that did not finish is a DataError), in fold order."""
    root = folds_dir(run_dir)
    folds = finished_folds(run_dir) if folds is None else folds
    parts = []
    for f in folds:
        d = root / str(f)
        if not fold_is_complete(d):
            raise DataError(f"fold {f} has not finished: {d} has no complete fold.json")
        parts.append(read_intervals(d / INTERVALS_FILE))
    parts = [p for p in parts if len(p)]
    return (pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS] if parts else empty_intervals())


def redecode_run(run_dir: str | os.PathLike[str], decode: DecodeConfig,
                 folds: list[str] | None = None, k_p: int | None = None) -> pd.DataFrame:
    """Decode every finished fold's stored ``scores.parquet`` again with another decode config
    (each fold's own k_p, or ``k_p`` for all when given); no training. Used for decode-only
    ablations (interval strategy, synergy strategies 1 and 2, p, a global k_p: training does
    not depend on k_p); ``vrme sweep`` gets the same by reusing trained folds. Returns pooled
    intervals."""
    root = folds_dir(run_dir)
    folds = finished_folds(run_dir) if folds is None else folds
    parts = []
    for f in folds:
        scores, _ = read_scores(root / str(f))
        fold_k_p = Priors.load(root / str(f) / PRIORS_FILE).k_p
        parts.append(decode_scores_table(scores, int(k_p or fold_k_p), decode))
    parts = [p for p in parts if len(p)]
    return (pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS] if parts else empty_intervals())


def score_intervals(pred: pd.DataFrame, gt: pd.DataFrame,
                    emotions: list[str] | None = None) -> dict[str, Any]:
    """STRS of pooled predictions against ground truth: ``{"official": StrsResult,
    "reference": StrsResult}``. Predictions labelled neutral (``decode.neutral_intervals: keep``)
    count as spotted intervals with a wrong emotion."""
    from vrme.metrics.strs import evaluate_strs

    pred = pred[GT_COLUMNS].reset_index(drop=True)
    return {v: evaluate_strs(pred, gt, emotions=emotions, variant=v)
            for v in ("official", "reference")}


@dataclass
class LosoResult:
    """A leave-one-subject-out run: pooled predictions and ground truth (original frame
    numbers), both STRS variants, per-fold metrics and the fold records."""

    predictions: pd.DataFrame
    ground_truth: pd.DataFrame
    official: Any
    reference: Any
    per_fold: pd.DataFrame
    folds: list[FoldResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics: both variants pooled, and the official one per fold."""
        return {
            "official": _clean(self.official.to_dict()),
            "reference": _clean(self.reference.to_dict()),
            "n_predictions": int(len(self.predictions)),
            "n_ground_truth": int(len(self.ground_truth)),
            "per_fold": [_clean(r) for r in self.per_fold.to_dict(orient="records")],
        }


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if hasattr(v, "item"):
            v = v.item()
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def per_fold_metrics(pred: pd.DataFrame, gt: pd.DataFrame, folds: list[str],
                     emotions: list[str] | None = None) -> pd.DataFrame:
    """Official STRS numbers of every fold on its own subject (one row per fold). A fold with
    no prediction scores 0 with all its ground truths as false negatives (the official
    evaluator would skip the subject entirely)."""
    from vrme.metrics.strs import evaluate_strs

    rows = []
    for f in folds:
        p = pred[pred["subject"].astype(str) == str(f)][GT_COLUMNS].reset_index(drop=True)
        g = gt[gt["subject"].astype(str) == str(f)].reset_index(drop=True)
        if len(p) == 0:
            rows.append({"fold": f, "strs": 0.0, "spot_tp": 0, "spot_fp": 0, "spot_fn": len(g),
                         "spot_precision": 0.0, "spot_recall": 0.0, "spot_f1": 0.0,
                         "analysis_precision": 0.0, "analysis_recall": 0.0, "analysis_f1": 0.0,
                         "analysis_uf1": 0.0, "n_pred": 0, "n_gt": len(g)})
            continue
        r = evaluate_strs(p, g, emotions=emotions, variant="official").to_dict()
        rows.append({"fold": f, **r, "n_pred": len(p), "n_gt": len(g)})
    return pd.DataFrame(rows)


def run_loso(cfg: Config, manifest_path: str | os.PathLike[str] | pd.DataFrame,
             labels_path: str | os.PathLike[str] | pd.DataFrame,
             features_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str],
             folds: list[str] | None = None, *, progress: bool = True, reuse: bool = True,
             model_factory: ModelFactory | None = None,
             models_dir: str | os.PathLike[str] | None = None) -> LosoResult:
    """Run every fold (or the named ones), pool their intervals and score them.

    With ``reuse`` what is still valid is reused (:func:`vrme.training.train.train_fold`): a
    finished fold with the same settings and inputs as it is, a trained fold with the same training
    settings and inputs decoded again. ``models_dir`` keeps trained folds per training hash
    (see :func:`vrme.training.train.models_dir`). Scoring uses the real labels of the scored
    subjects (also under ``train.shuffle_labels``, which only moves the training labels).
    Writes ``predictions.csv`` and ``loso.json`` in ``run_dir``.
    """
    manifest = as_table(manifest_path, "manifest")
    labels = as_table(labels_path, "labels")
    all_folds = loso_subjects(manifest, labels)
    if folds is None:
        folds = all_folds
    else:
        folds = [str(f) for f in folds]
        unknown = [f for f in folds if f not in all_folds]
        if unknown:
            raise DataError(f"unknown fold(s) {unknown}: subjects with micro-expressions are "
                            f"{all_folds}")
    run_dir = Path(run_dir)
    chash = fold_config_hash(cfg)
    results: list[FoldResult] = []
    for i, f in enumerate(folds, 1):
        log.info("fold %s (%d/%d)", f, i, len(folds))
        results.append(train_fold(cfg, f, manifest, labels, features_dir,
                                  fold_dir(run_dir, f), progress=progress,
                                  model_factory=model_factory, reuse=reuse,
                                  models_dir=models_dir))
    parts = [r.intervals for r in results if len(r.intervals)]
    pred = pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS] if parts else empty_intervals()
    gt = ground_truth_table(labels, folds)
    emotions = list(cfg.eval.emotions) if cfg.eval.emotions else None
    scores = score_intervals(pred, gt, emotions)
    result = LosoResult(predictions=pred, ground_truth=gt, official=scores["official"],
                        reference=scores["reference"],
                        per_fold=per_fold_metrics(pred, gt, folds, emotions), folds=results)
    write_text_atomic(run_dir / "predictions.csv", pred.to_csv(index=False))
    summary = result.summary()
    summary["config_hash"] = chash
    summary["folds"] = folds
    write_json_atomic(run_dir / "loso.json", summary)
    o = result.official
    log.info("LOSO %d folds: STRS %.4f, spot P %.4f R %.4f F1 %.4f, analysis F1 %.4f "
             "(official); STRS %.4f (reference)", len(folds), o.strs, o.spot_precision,
             o.spot_recall, o.spot_f1, o.analysis_f1, result.reference.strs)
    return result
