"""Scoring for the report: the official matching of predicted and true intervals video by
video (per-video TP/FP/FN, the missed and false intervals and why), per-emotion and
per-dataset metrics, the analysis confusion matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vrme.config import CLASS_NAMES, EMOTION_CLASSES

STRS_COLUMNS = ["subject", "video", "onset", "offset", "emotion"]


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


def _counts_text(pred_status: pd.Series, gt_status: pd.Series) -> str:
    """'TP a, FP b, FN c' of one video (TP = true intervals found)."""
    return (f"TP {int((gt_status == 'found').sum())}, FP {int((pred_status == 'FP').sum())}, "
            f"FN {int((gt_status == 'missed').sum())}")


def per_dataset_metrics(pred: pd.DataFrame, gt: pd.DataFrame, datasets: list[str],
                        emotions: list[str] | None) -> dict[str, Any]:
    """Official STRS of every dataset of a union on its own (its subjects are
    ``<dataset>.<subject>``, :mod:`vrme.data.union`): the predictions and ground truth of its
    subjects scored alone. The pooled numbers are the run's headline."""
    from vrme.data.union import dataset_of
    from vrme.metrics.strs import evaluate_strs

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
