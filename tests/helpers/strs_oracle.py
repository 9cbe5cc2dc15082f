"""The STRS test oracle: the official evaluator's rules written as plain loops over rows.

Slow (quadratic per video) and independent of :func:`vrme.metrics.strs.evaluate_strs`'s
vectorised code: ``tests/test_strs.py`` cross-checks the two, and ``benchmarks/strs_bench.py``
times them. It lives with the tests because nothing in the pipeline runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vrme.metrics.strs import COLUMNS, REFERENCE_EMOTIONS, Variant, _safe_ratio


def evaluate_loop(
    pred: pd.DataFrame,
    gt: pd.DataFrame,
    emotions: Sequence[str] | None = None,
    variant: Variant = "official",
) -> dict[str, int | float]:
    """The same rules written as plain loops over rows, as the official script iterates them.

    Slow (quadratic per video). Tables must already be valid. Returns the :data:`JSON_KEYS`
    values (NaN kept as NaN).
    """
    P = list(pred[list(COLUMNS)].itertuples(index=False, name=None))
    G = list(gt[list(COLUMNS)].itertuples(index=False, name=None))
    if emotions is None:
        emotions = (
            list(dict.fromkeys(row[4] for row in G))
            if variant == "official"
            else list(REFERENCE_EMOTIONS)
        )

    def iou(a: tuple[Any, ...], b: tuple[Any, ...]) -> float:
        inter = max(0, min(a[3], b[3]) - max(a[2], b[2]) + 1)
        union = (a[3] - a[2] + 1) + (b[3] - b[2] + 1) - inter
        return inter / union

    subjects = list(dict.fromkeys(row[0] for row in P))
    tp = fp = fn = 0
    pairs: list[tuple[Any, Any]] = []  # (pred emotion, gt emotion)
    for subject in subjects:
        g_rows = [i for i, row in enumerate(G) if row[0] == subject]
        videos = list(dict.fromkeys(G[i][1] for i in g_rows))
        for video in videos:
            vp = [P[i] for i, row in enumerate(P) if row[0] == subject and row[1] == video]
            vg = [G[i] for i in g_rows if G[i][1] == video]
            if variant == "official":
                taken: set[int] = set()
                for p in vp:
                    hit = False
                    for j, g in enumerate(vg):
                        if j not in taken and iou(p, g) >= 0.5:
                            taken.add(j)
                            pairs.append((p[4], g[4]))
                            hit = True
                    fp += not hit
                tp += len(taken)
                fn += len(vg) - len(taken)
            else:
                taken_list: list[int] = []
                for p in vp:
                    scores = [iou(p, g) for g in vg]
                    hits = sum(s >= 0.5 for s in scores)
                    tp += hits
                    fp += hits == 0
                    if scores:
                        best = max(range(len(vg)), key=lambda j: (scores[j], j))
                        if scores[best] >= 0.5 and best not in taken_list:
                            taken_list.append(best)
                            pairs.append((p[4], vg[best][4]))
                fn += len(vg)
    if variant == "reference":
        fn -= tp

    kept = [(pe, ge) for pe, ge in pairs if ge in emotions]
    precisions, recalls, f1s = [], [], []
    for e in emotions:
        t = sum(1 for pe, ge in kept if pe == e and ge == e)
        f = sum(1 for pe, ge in kept if pe == e and ge != e)
        n = sum(1 for pe, ge in kept if pe != e and ge == e)
        neg = len(kept) - t - f - n
        degenerate = not kept or t == len(kept) or neg == len(kept)
        if variant == "official":
            if degenerate:
                t = f = n = 0
            pr = t / (t + f) if t + f else 0
            rc = t / (t + n) if t + n else 0
            f1 = 2 * pr * rc / (pr + rc) if pr + rc else 0
        else:
            if degenerate:
                continue
            pr = t / (t + f) if t + f else 0
            rc = t / (t + n) if t + n else 0
            f1 = (2 * t) / (2 * t + f + n)
        precisions.append(pr)
        recalls.append(rc)
        f1s.append(f1)
    p_all = float(np.mean(precisions)) if precisions else math.nan
    r_all = float(np.mean(recalls)) if recalls else math.nan
    a_f1 = _safe_ratio(2 * p_all * r_all, p_all + r_all)
    uf1 = float(np.mean(f1s)) if f1s else math.nan
    s_p = tp / (tp + fp) if tp + fp else 0
    s_r = tp / (tp + fn) if tp + fn else 0
    s_f1 = 2 * s_p * s_r / (s_p + s_r) if s_p + s_r else 0
    return {
        "strs": float(s_f1 * a_f1),
        "spot_tp": tp,
        "spot_fp": fp,
        "spot_fn": fn,
        "spot_precision": float(s_p),
        "spot_recall": float(s_r),
        "spot_f1": float(s_f1),
        "analysis_precision": p_all,
        "analysis_recall": r_all,
        "analysis_f1": a_f1,
        "analysis_uf1": uf1,
    }
