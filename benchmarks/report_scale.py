"""Time ``build_report`` on a run of real-dataset size: by default 100 subjects x 10 videos
(CAS(ME)^3 has about a thousand videos) of 3,000 frames.

Usage::

    python benchmarks/report_scale.py                       # 100 x 10 videos, 12 curves
    python benchmarks/report_scale.py --subjects 30 --videos 5 --repeat 5

The run folder is made up (no training: the report only reads fold outputs): a manifest and
labels table with ``--mes`` micro-expressions per video, and one fold per subject whose
``intervals.csv`` holds ``--preds`` predictions per video (about half of them near a true
interval, so the matching has TPs, FPs and FNs), a per-frame ``scores.parquet`` and a
``fold.json`` with a 40-epoch history. The report is then built ``--repeat`` times with
``--max-videos`` score curves and once with none; the medians, the file sizes and the per-video
counts are printed. ``--dir`` keeps the run folder (``<dir>/work/runs/scale``), e.g. to time
``vrme report --run`` on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vrme.config import Config  # noqa: E402
from vrme.io import write_parquet_atomic, write_text_atomic  # noqa: E402
from vrme.record import write_run_info  # noqa: E402
from vrme.report.build import build_report  # noqa: E402
from vrme.schema import LABELS_SCHEMA, MANIFEST_SCHEMA, write_table  # noqa: E402
from vrme.training.train import fold_config_hash  # noqa: E402

EMOTIONS = ["negative", "positive", "surprise", "others"]


def make_run(base: Path, subjects: int, videos: int, frames: int, mes: int, preds: int,
             seed: int = 0) -> Config:
    """A finished leave-one-subject-out run folder under ``base`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cfg = Config.model_validate({
        "dataset": {"name": "scale", "layout": "casme3", "root": str(base / "data"), "fps": 30,
                    "frame_skip": 1},
        "features": {"k": 16},
        "run": {"out": str(base / "work"), "name": "scale"},
    })
    subj = [str(s + 1) for s in range(subjects)]
    vids = [f"v{v}" for v in range(videos)]
    manifest = pd.DataFrame([{
        "dataset": "scale", "subject": s, "subject_dir": f"spNO.{s}", "video": v,
        "source": "frames", "path": f"spNO.{s}/{v}/color", "name_prefix": "",
        "name_suffix": ".jpg", "pad_width": 0, "frame_files": [], "first_frame": 0,
        "last_frame": frames - 1, "n_frames": frames, "n_files": frames, "missing_frames": [],
        "frame_numbering": "contiguous", "fps": 30.0, "width": 640, "height": 480,
        "labelled": True} for s in subj for v in vids])
    rows, row = [], 2
    for s in subj:
        for v in vids:
            for e in range(mes):
                on = int(rng.integers(0, frames - 20))
                rows.append({"dataset": "scale", "subject": s, "video": v, "event": e,
                             "onset": on, "apex": on + 4, "offset": on + int(rng.integers(6, 16)),
                             "type": "micro", "emotion_raw": "x",
                             "emotion": EMOTIONS[int(rng.integers(4))],
                             "source_file": "labels.xlsx", "source_row": row})
                row += 1
    labels = pd.DataFrame(rows)
    write_table(manifest, cfg.ingest_dir / "manifest.parquet", MANIFEST_SCHEMA)
    write_table(labels, cfg.ingest_dir / "labels.parquet", LABELS_SCHEMA)
    write_run_info(cfg.run_dir, cfg)
    history = [{"epoch": e, "loss": 1.0 / e, "mse": 0.5 / e, "ce": 3.0 / e, "lr": 1e-3}
               for e in range(1, 41)]
    for s in subj:
        d = cfg.run_dir / "folds" / s
        ivs = []
        for v in vids:
            true = labels[(labels["subject"] == s) & (labels["video"] == v)]
            for i in range(preds):
                if i < len(true) and rng.random() < 0.6:  # near a true interval
                    t = true.iloc[i]
                    on, off = int(t["onset"]) + int(rng.integers(-2, 3)), int(t["offset"])
                else:
                    on = int(rng.integers(0, frames - 20))
                    off = on + int(rng.integers(6, 16))
                on = max(on, 0)
                ivs.append((s, v, on, on + 3, max(off, on), EMOTIONS[int(rng.integers(4))],
                            float(rng.random())))
        iv = pd.DataFrame(ivs, columns=["subject", "video", "onset", "apex", "offset", "emotion",
                                        "score"])
        write_text_atomic(d / "intervals.csv", iv.to_csv(index=False))
        n = videos * frames
        scores = pd.DataFrame({
            "subject": s, "video": np.repeat(vids, frames),
            "index": np.tile(np.arange(frames, dtype=np.int32), videos),
            "frame": np.tile(np.arange(frames, dtype=np.int64), videos),
            "spot": rng.random(n).astype(np.float32)})
        write_parquet_atomic(d / "scores.parquet", pa.Table.from_pandas(scores,
                                                                         preserve_index=False))
        (d / "model.pt").write_bytes(b"not a model: the report never loads it")
        (d / "priors.json").write_text(json.dumps({"k_p": 6}))
        (d / "fold.json").write_text(json.dumps({
            "status": "complete", "fold": s, "how": "trained",
            "config_hash": fold_config_hash(cfg), "test_videos": vids, "k_p": 6,
            "n_train_windows": 1000, "history": history,
            "timings": {"load_s": 1.0, "train_s": 100.0, "predict_s": 5.0, "decode_s": 0.1,
                        "total_s": 106.1, "threads": 2}}))
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=100)
    ap.add_argument("--videos", type=int, default=10, help="videos per subject")
    ap.add_argument("--frames", type=int, default=3000, help="frames per video")
    ap.add_argument("--mes", type=int, default=1, help="micro-expressions per video")
    ap.add_argument("--preds", type=int, default=3, help="predictions per video")
    ap.add_argument("--max-videos", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None,
                    help="make the run folder here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    logging.getLogger("vrme").setLevel(logging.ERROR)  # NaN-STRS warnings of random folds
    with tempfile.TemporaryDirectory() as tmp:
        base = args.dir or Path(tmp)
        t = time.perf_counter()
        cfg = make_run(base, args.subjects, args.videos, args.frames, args.mes, args.preds)
        print(f"run folder {cfg.run_dir}: {args.subjects} folds, {args.subjects * args.videos} "
              f"videos, made in {time.perf_counter() - t:.1f} s")
        for max_videos, repeat in ((args.max_videos, args.repeat), (0, 1)):
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                res = build_report(cfg.run_dir, max_videos=max_videos)
                times.append(time.perf_counter() - t)
            print(f"build_report, {max_videos} score curves: "
                  f"median {statistics.median(times):.2f} s"
                  f" over {repeat} ({', '.join(f'{x:.2f}' for x in times)})")
        m = res.metrics
        print(f"per-video rows {len(m['per_video'])}, missed {len(m['missed'])}, false "
              f"{len(m['false'])}; official TP/FP/FN {m['official']['spot_tp']}/"
              f"{m['official']['spot_fp']}/{m['official']['spot_fn']}")
        for p in (res.html, res.markdown, res.metrics_path):
            print(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
