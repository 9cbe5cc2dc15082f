"""Ablation table: interval strategy x synergy strategy (and optionally more), LOSO, STRS.

    python benchmarks/ablation.py --config configs/demo.yaml --synthetic [--out DIR]
    python benchmarks/ablation.py --config configs/demo.yaml \\
        --manifest M.parquet --labels L.parquet --features FEATURES_DIR [--out DIR]

Trains leave-one-subject-out twice: with the configured training (class weights with
neutral x6; the models serve synergy strategies 1 and 2, which differ only at decoding) and
with synergy strategy 0 (neutral class weight 0). Every decoding variant is then read from the
folds' stored scores (no retraining): interval strategy 1/0 x synergy 1/2 on the first run,
interval strategy 1/0 with synergy 0 on the second, and the reference's leaky global k_p
(estimated over every subject, the held-out one included) with the default decoding. Options
add a shuffled-label control (``--control``) and other backbones (``--backbones gru,transformer``,
retrained, default decoding).

``--synthetic`` writes a feature-level synthetic dataset (``vrme.synthetic_features``) sized
from the config's ``synth`` section (subjects, videos, seconds x fps frames, expressions per
video, seed) and ``features.k``. Otherwise pass the pipeline's manifest, labels and feature
folder. Prints a Markdown table and writes ``ablation.md`` and ``ablation.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", "-c", required=True, type=Path)
    ap.add_argument("--set", "-s", action="append", default=[], dest="overrides",
                    help="config override key.path=value (repeatable)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default <run.out>/ablation/<config stem>)")
    ap.add_argument("--synthetic", action="store_true", help="generate feature-level data")
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--features", type=Path, help="folder <subject>/<video>.parquet")
    ap.add_argument("--folds", nargs="*", default=None, help="only these subjects")
    ap.add_argument("--backbones", default="", help="comma-separated extra backbones to train")
    ap.add_argument("--control", action="store_true", help="add a shuffled-label control row")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1; more threads oversubscribe small CPUs)")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, handlers=[RichHandler(show_path=False)],
                        format="%(message)s")
    logging.getLogger("vrme.strs").setLevel(logging.ERROR)  # NaN STRS is reported in the table

    from vrme.config import DecodeConfig, load_config
    from vrme.loso import ground_truth_table, redecode_run, run_loso, score_intervals
    from vrme.train import plan_fold

    cfg = load_config(args.config, args.overrides)
    out = args.out or (cfg.out_dir / "ablation" / Path(args.config).stem)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    if args.synthetic:
        from vrme.synthetic_features import make_feature_dataset

        syn = cfg.synth
        n_frames = int(round((syn.seconds if syn else 20.0) * (syn.fps if syn else 30.0)))
        ds = make_feature_dataset(
            out / "data", subjects=syn.subjects if syn else 4,
            videos_per_subject=syn.videos if syn else 2,
            n_frames=n_frames // cfg.dataset.frame_skip, k=cfg.features.k,
            mes_per_video=syn.mes_per_video if syn else 4,
            macros_per_video=syn.macros_per_video if syn else 1,
            frame_skip=cfg.dataset.frame_skip, seed=syn.seed if syn else 0)
        manifest, labels, features = ds.manifest_path, ds.labels_path, ds.features_dir
    else:
        if not (args.manifest and args.labels and args.features):
            print("give --synthetic or all of --manifest, --labels, --features", file=sys.stderr)
            return 2
        manifest, labels, features = args.manifest, args.labels, args.features

    rows: list[dict[str, Any]] = []
    gt_all = ground_truth_table(labels)
    emotions = list(cfg.eval.emotions) if cfg.eval.emotions else None

    def add(name: str, training: str, decode: DecodeConfig, pred, seconds: float,
            k_p: str = "fold") -> None:
        subjects = sorted(set(pred["subject"])) if len(pred) else []
        gt = gt_all[gt_all["subject"].isin(folds_used)]
        sc = score_intervals(pred, gt, emotions)
        o, r = sc["official"], sc["reference"]
        rows.append({
            "variant": name, "training": training, "interval": decode.interval_strategy,
            "synergy": decode.synergy_strategy, "k_p": k_p, "strs": o.strs,
            "spot_p": o.spot_precision, "spot_r": o.spot_recall, "spot_f1": o.spot_f1,
            "analysis_f1": o.analysis_f1, "uf1": o.analysis_uf1, "tp": o.spot_tp,
            "fp": o.spot_fp, "fn": o.spot_fn, "strs_reference": r.strs,
            "n_pred": len(pred), "subjects_with_pred": len(subjects), "train_s": seconds,
        })
        logging.getLogger("ablation").info("%s: STRS %s spot F1 %s", name, fmt(o.strs),
                                           fmt(o.spot_f1))

    def train(name: str, overrides: list[str]) -> tuple[Path, float, Any]:
        c = load_config(args.config, args.overrides + overrides)
        run_dir = out / "runs" / name
        t0 = time.perf_counter()
        res = run_loso(c, manifest, labels, features, run_dir, folds=args.folds,
                       progress=progress)
        return run_dir, time.perf_counter() - t0, res

    base = cfg.decode.model_copy()
    # 1. The configured training (neutral x6): synergy 1 and 2, interval 1 and 0.
    run1, t1, res1 = train("train_synergy12", ["decode.synergy_strategy=1"])
    folds_used = [f.fold for f in res1.folds]
    for interval in (1, 0):
        for synergy in (1, 2):
            d = base.model_copy(update={"interval_strategy": interval, "synergy_strategy": synergy})
            add(f"interval {interval}, synergy {synergy}", "neutral x6", d,
                redecode_run(run1, d, folds_used), t1)
    # 2. Synergy 0: neutral weight 0 at training, plain argmax at decoding.
    run0, t0_, _ = train("train_synergy0", ["decode.synergy_strategy=0"])
    for interval in (1, 0):
        d = base.model_copy(update={"interval_strategy": interval, "synergy_strategy": 0})
        add(f"interval {interval}, synergy 0", "neutral weight 0", d,
            redecode_run(run0, d, folds_used), t0_)
    # 3. The reference's leaky k_p (all subjects, the held-out one included).
    gcfg = load_config(args.config, args.overrides + ["priors.scope=global"])
    k_global = plan_fold(gcfg, folds_used[0], manifest, labels, features).priors.k_p
    d = base.model_copy(update={"interval_strategy": 1, "synergy_strategy": 1})
    add("global k_p (leaky)", "neutral x6", d, redecode_run(run1, d, folds_used, k_p=k_global),
        t1, k_p=f"global {k_global}")
    # 4. Options: other backbones, shuffled-label control.
    for bb in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        run_b, tb, _ = train(f"backbone_{bb}", [f"model.backbone={bb}",
                                               "decode.synergy_strategy=1"])
        add(f"backbone {bb}", "neutral x6", d, redecode_run(run_b, d, folds_used), tb)
    if args.control:
        run_c, tc, _ = train("control_shuffled", ["train.shuffle_labels=true",
                                                  "decode.synergy_strategy=1"])
        add("control: shuffled labels", "shuffled", d, redecode_run(run_c, d, folds_used), tc)

    head = ["variant", "training", "k_p", "strs", "spot_p", "spot_r", "spot_f1", "analysis_f1",
            "uf1", "tp", "fp", "fn", "strs_reference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r[h]) for h in head) + " |")
    cmd = "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    k_folds = sorted({json.loads((run1 / "folds" / f / "fold.json").read_text())["k_p"]
                      for f in folds_used})
    text = (f"Ablation on {'synthetic feature-level data' if args.synthetic else manifest}, "
            f"config {args.config}, {len(folds_used)} LOSO folds, per-fold k_p {k_folds}; "
            f"STRS etc. official variant, strs_reference = the paper code's variant.\n\n"
            + "\n".join(lines) + f"\n\nTraining time: {t1:.0f} s (neutral x6), {t0_:.0f} s "
            f"(synergy 0). Command: `{cmd}`\n")
    print(text)
    (out / "ablation.md").write_text(text)
    (out / "ablation.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
