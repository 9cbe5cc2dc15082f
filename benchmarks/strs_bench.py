"""Time STRS scoring at benchmark scale and check it against a row-by-row port.

Usage::

    python benchmarks/strs_bench.py                     # 100,000 x 100,000 over 1,000 videos
    python benchmarks/strs_bench.py --videos 200 --per-video 50 --small-videos 10

Synthetic data: ``--videos`` videos (spread over 50 subjects), ``--per-video`` ground-truth
intervals and as many predictions per video; about 60 % of the predictions are jittered copies
of a ground truth (so spotting and recognition are non-trivial), the rest random. The tables
go through CSV files like a user's would, and the time of reading and of scoring is printed for
both variants. The row-by-row port (the rules written as loops over rows, as the official
script iterates them) is then timed on ``--small-videos`` videos and its numbers compared with
the vectorised ones (they must be identical).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.strs_oracle import evaluate_loop  # noqa: E402  (the test oracle)
from vrme.metrics.strs import JSON_KEYS, evaluate_strs, read_strs_csv  # noqa: E402

EMOTIONS = np.array(["negative", "positive", "surprise", "others"])


def synthetic(n_videos: int, per_video: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ground truth and predictions, ``per_video`` of each in each of ``n_videos`` videos."""
    rng = np.random.default_rng(seed)
    n = n_videos * per_video
    video = np.repeat(np.arange(n_videos), per_video)
    subject = video % 50
    length = 30 * per_video  # frames per video: intervals overlap now and then
    g_on = rng.integers(0, length, n)
    g_off = g_on + rng.integers(5, 60, n)
    g_em = EMOTIONS[rng.integers(0, 4, n)]
    copy = rng.random(n) < 0.6
    p_on = np.where(copy, g_on + rng.integers(-8, 9, n), rng.integers(0, length, n))
    p_off = np.where(copy, g_off + rng.integers(-8, 9, n), p_on + rng.integers(5, 60, n))
    p_off = np.maximum(p_off, p_on)
    p_em = np.where(rng.random(n) < 0.6, g_em, EMOTIONS[rng.integers(0, 4, n)])
    shuffle = rng.permutation(n)  # predictions in no particular order, as files come
    subj = np.char.add("s", subject.astype(str))
    vid = np.char.add("video_", video.astype(str))
    gt = pd.DataFrame({"subject": subj, "video": vid, "onset": g_on, "offset": g_off,
                       "emotion": g_em})
    pred = pd.DataFrame({"subject": subj[shuffle], "video": vid[shuffle], "onset": p_on[shuffle],
                         "offset": p_off[shuffle], "emotion": p_em[shuffle]})
    return pred, gt


def _same(a: float, b: float) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                      and math.isnan(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--per-video", type=int, default=100)
    ap.add_argument("--small-videos", type=int, default=20,
                    help="videos for the comparison with the row-by-row port (0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    pred, gt = synthetic(args.videos, args.per_video, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        pp, gp = Path(tmp) / "pred.csv", Path(tmp) / "gt.csv"
        pred.to_csv(pp, index=False)
        gt.to_csv(gp, index=False)
        t0 = time.perf_counter()
        pred_r, gt_r = read_strs_csv(pp), read_strs_csv(gp)
        t_read = time.perf_counter() - t0
    print(f"{len(pred_r):,} predictions x {len(gt_r):,} ground truths in {args.videos:,} videos")
    print(f"  read + validate both CSVs : {t_read:6.2f} s")
    for variant in ("official", "reference"):
        t0 = time.perf_counter()
        res = evaluate_strs(pred_r, gt_r, ["negative", "positive", "surprise"], variant=variant)
        dt = time.perf_counter() - t0
        print(f"  evaluate_strs ({variant:9s}): {dt:6.2f} s   STRS {res.strs:.4f}  "
              f"TP {res.spot_tp:,} FP {res.spot_fp:,} FN {res.spot_fn:,}")

    if args.small_videos > 0:
        small_p, small_g = synthetic(args.small_videos, args.per_video, args.seed + 1)
        print(f"row-by-row port vs vectorised, {len(small_p):,} x {len(small_g):,} in "
              f"{args.small_videos} videos:")
        ok = True
        for variant in ("official", "reference"):
            t0 = time.perf_counter()
            slow = evaluate_loop(small_p, small_g, None, variant=variant)
            t_slow = time.perf_counter() - t0
            t0 = time.perf_counter()
            fast = evaluate_strs(small_p, small_g, None, variant=variant).to_dict()
            t_fast = time.perf_counter() - t0
            same = all(_same(slow[k], math.nan if fast[k] is None else fast[k])
                       for k in JSON_KEYS)
            ok &= same
            print(f"  {variant:9s}: loop {t_slow:6.2f} s, vectorised {t_fast:6.3f} s "
                  f"({t_slow / max(t_fast, 1e-9):,.0f}x), identical numbers: {same}")
        if not ok:
            print("MISMATCH between the row-by-row port and the vectorised engine")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
