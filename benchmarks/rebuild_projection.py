"""Projected wall time of a full SAMM-LV and CAS(ME)^3 rebuild (features + every
leave-one-subject-out fold) on this machine, on N workers, and on a GPU when there is one.

    .venv/bin/python benchmarks/rebuild_projection.py [--workers 8] [--steps 3]

Measured here, when the script runs:

* per-frame feature cost: a short video is generated (``vrme.synth.generate``) in each dataset's
layout,
  resolution and frame rate, ingested, aligned and featurised with one worker; the CPU time
  per processed frame (after ``dataset.frame_skip``) is the figure, the one-time landmark-model
  load per worker process apart;
* per-step training cost: ``benchmarks/train_step.py``'s step (forward, loss, backward, Adam) at
  each paper setting (``configs/samm_lv.yaml``, ``configs/casme3.yaml``), with ``--threads``
  torch threads (default 1: one fold per core), and its peak memory in a fresh process;
* per-window inference cost: the network in eval mode on ``train.predict_batch_size`` windows.

Taken from the dataset papers (sources in ``DATASETS``) or assumed (marked so there and in the
output): the number of videos, frames, subjects (= folds) and micro-expressions, and the
length of a micro-expression, from which the training windows of a fold are counted as
``select_training_windows`` does: every window holding an ME frame plus ``train.ratio`` times as
many ME-free ones.

The projection then assumes: feature work spreads evenly over workers (videos are
independent); a fold's cost is its steps times the measured step (folds are independent
tasks, ``ceil(folds / N)`` rounds of them on N workers); each worker is one core as fast as
this machine's under the load it has now. Not counted: ingest, priors, decoding and scoring
(seconds per fold), the final model, process start-up, disk and the Prefect server.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_step import load_setting, make_variant, peak_memory, time_setting  # noqa: E402

from vrme.config import load_config  # noqa: E402


@dataclass(frozen=True)
class DatasetSize:
    """What a rebuild has to process, with where each number comes from."""

    key: str            # setting name in train_step.py
    name: str
    config: str
    videos: int
    frames: int
    subjects: int       # = leave-one-subject-out folds
    micro_expressions: int
    me_frames: float    # a micro-expression's length (offset - onset), in original frames
    width: int
    height: int
    fps: float
    sources: tuple[str, ...]
    assumed: tuple[str, ...]


DATASETS = (
    DatasetSize(
        key="samm", name="SAMM-LV", config="samm_lv.yaml",
        videos=147, frames=round(147 * 35.5 * 200), subjects=30, micro_expressions=159,
        me_frames=60, width=2040, height=1088, fps=200,
        sources=(
            "Yap, Kendrick, Yap, 'SAMM Long Videos: A Spontaneous Facial Micro- and "
            "Macro-Expressions Dataset', FG 2020: 147 long videos, 159 micro- and 343 "
            "macro-expressions, 200 fps, 2040 x 1088 (the SAMM camera)",
            "docs/DATASETS.md: about 30 subjects, videos of 35.5 s on average, so "
            "147 x 35.5 s x 200 fps = 1,043,700 frames",
        ),
        assumed=(
            "30 folds (DATASETS.md's 'about 30 subjects')",
            "a micro-expression lasts 60 frames (0.3 s; under 0.5 s by definition)",
        ),
    ),
    DatasetSize(
        key="casme3", name="CAS(ME)^3 part A", config="casme3.yaml",
        videos=1300, frames=3_550_000, subjects=100, micro_expressions=943,
        me_frames=10, width=1280, height=720, fps=30,
        sources=(
            "Li et al., 'CAS(ME)^3: A Third Generation Facial Spontaneous Micro-Expression "
            "Database with Depth Information and High Ecological Validity', IEEE TPAMI 2022 "
            "(doi 10.1109/TPAMI.2022.3174895): part A 100 subjects x 13 videos, labelled; "
            "the whole corpus about 80 h, over 8,000,000 frames, 1,109 MEs; part B 1,508 "
            "unlabelled videos with over 4,000,000 frames; part C 31 subjects x one 8-min "
            "video with 166 MEs; 30 fps, 1280 x 720 colour",
            "part A frames = 8,000,000 - 4,000,000 (part B) - 31 x 8 min x 60 x 30 fps "
            "(part C, 446,400) = about 3,550,000; part A MEs = 1,109 - 166 = 943",
        ),
        assumed=(
            "part A frames derived as above from lower bounds ('over 8 million', 'over 4 "
            "million'): the real figure may be somewhat higher",
            "a micro-expression lasts 10 frames (DATASETS.md: typically 5-15)",
        ),
    ),
)


def windows_per_me(me_frames: float, frame_skip: int, k: int) -> float:
    """Expected windows (length k, stride k/2, after skipping) holding at least one of an ME's
    positive frames (onset+1 .. offset-1): (m + k - 1) / (k/2) for m positive indices,
    averaged over where the ME falls; MEs sharing windows would make it fewer."""
    m = max(me_frames / frame_skip - 1, 1.0)
    return (m + k - 1) / (k // 2)


@dataclass
class Measured:
    cpu_ms_per_frame: float
    wall_ms_per_frame: float
    frames: int
    model_load_s: float
    step_ms: float
    step_rounds: int
    peak_rss_mib: float | None
    infer_ms_per_window: float


def measure_features(ds: DatasetSize, seconds: float, work: Path) -> dict[str, float]:
    """Align + features of a generated video in ``ds``'s layout, resolution and frame rate."""
    from vrme.data.ingest import ingest
    from vrme.features.align import load_models, predictor_file, run_align
    from vrme.features.flow import run_features
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec

    layout = "samm-lv" if ds.key == "samm" else "casme3"
    root, out = work / f"{ds.key}-data", work / f"{ds.key}-out"
    spec = SynthSpec(layout=layout, subjects=1, videos=1, seconds=seconds, fps=ds.fps,
                     width=ds.width, height=ds.height, mes_per_video=1, macros_per_video=0,
                     seed=0, workers=1)
    t = time.perf_counter()
    generate_dataset(spec, root, progress=False)
    print(f"  generated {spec.frames_per_video} frames {ds.width}x{ds.height} in "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
    cfg = load_config(ROOT / "configs" / ds.config, root=root, out=out)
    manifest = ingest(cfg).manifest
    c = time.process_time()
    load_models(str(predictor_file(cfg.align)))  # once per process: timed apart
    model_s = time.process_time() - c
    c0, t0 = time.process_time(), time.perf_counter()
    (sa,) = run_align(cfg, manifest, workers=1, progress=False)
    (sf,) = run_features(cfg, manifest, workers=1, progress=False, align_first=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    if sf.status != "computed":
        raise SystemExit(f"features of the generated {ds.name} video: {sf.status} ({sf})")
    n = int(sf.n_indices)
    return {"cpu_ms": cpu / n * 1e3, "wall_ms": wall / n * 1e3, "frames": n,
            "model_load_s": model_s}  # model_s is ~0 after the first dataset (loaded already)


def measure_inference(key: str, batch: int, rounds: int) -> float:
    """ms per window of the network in eval mode, ``batch`` windows per pass."""
    setting = load_setting(key)
    torch.manual_seed(0)
    model = make_variant("mamba", setting.model, setting.k).eval()
    x = torch.randn(batch, setting.model.in_channels, setting.k)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(rounds):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times) / batch * 1e3


def hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 4 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=8, help="N for the 'N workers' line")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per fold (per worker)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per setting")
    ap.add_argument("--samm-seconds", type=float, default=5.0, help="generated SAMM-LV clip")
    ap.add_argument("--casme3-seconds", type=float, default=20.0, help="generated CAS(ME)^3 clip")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="project with train.micro_batch (default: the configs' setting)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cores = os.cpu_count() or 1
    gpu = torch.cuda.is_available()
    import psutil

    print(f"# rebuild projection  {cores} CPU cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB memory, torch threads per fold "
          f"{args.threads}, load average {os.getloadavg()[0]:.1f} at the start")
    measured: dict[str, Measured] = {}
    load_s = 0.0
    with tempfile.TemporaryDirectory(prefix="vrme-projection-") as tmp:
        for ds in DATASETS:
            print(f"measuring {ds.name} ...", file=sys.stderr)
            cfg = load_config(ROOT / "configs" / ds.config)
            f = measure_features(ds, args.samm_seconds if ds.key == "samm" else
                                 args.casme3_seconds, Path(tmp))
            variant = f"mamba-mb{args.micro_batch}" if args.micro_batch else (
                f"mamba-mb{cfg.train.micro_batch}" if cfg.train.micro_batch else "mamba")
            step = time_setting(load_setting(ds.key), [variant], warmup=1, steps=args.steps)
            mem = peak_memory(ds.key, variant, args.threads)
            load_s = max(load_s, f["model_load_s"])
            measured[ds.key] = Measured(
                cpu_ms_per_frame=f["cpu_ms"], wall_ms_per_frame=f["wall_ms"],
                frames=int(f["frames"]), model_load_s=load_s,
                step_ms=step[variant]["ms_median"], step_rounds=args.steps,
                peak_rss_mib=mem["peak_rss_mib"] if isinstance(mem, dict) else None,
                infer_ms_per_window=measure_inference(ds.key, cfg.train.predict_batch_size, 3),
            )
    steps_per_fold: dict[str, int] = {}
    for ds in DATASETS:
        m, cfg = measured[ds.key], load_config(ROOT / "configs" / ds.config)
        skip, k, tc = cfg.dataset.frame_skip, cfg.features.k, cfg.train
        processed = ds.frames / skip
        feat_cpu = processed * m.cpu_ms_per_frame / 1e3
        per_me = windows_per_me(ds.me_frames, skip, k)
        me_train = ds.micro_expressions * (ds.subjects - 1) / ds.subjects
        fold_windows = me_train * per_me * (1 + tc.ratio)
        steps_fold = tc.epochs * math.ceil(fold_windows / tc.batch_size)
        fold_train = steps_fold * m.step_ms / 1e3
        video_windows = ds.frames / skip / (k // 2)   # windows over the dataset, ~n/(k/2)
        infer_all = video_windows * m.infer_ms_per_window / 1e3
        train_all = ds.subjects * fold_train
        steps_per_fold[ds.key] = steps_fold
        print(f"\n## {ds.name} ({ds.config}: frame_skip {skip}, k {k}, batch {tc.batch_size}, "
              f"ratio {tc.ratio:g}, {tc.epochs} epochs)")
        print("Dataset (from the papers):")
        for s in ds.sources:
            print(f"  - {s}")
        print("Assumed:")
        for s in ds.assumed:
            print(f"  - {s}")
        every = "every frame" if skip == 1 else f"every {skip}th frame"
        print(f"  => {ds.videos:,} videos, {ds.frames:,} frames, {processed:,.0f} processed "
              f"({every}), {ds.subjects} folds; per fold {me_train:.0f} training MEs x "
              f"{per_me:.2f} windows each x (1 + {tc.ratio:g}) = {fold_windows:,.0f} training "
              f"windows, {math.ceil(fold_windows / tc.batch_size)} steps per epoch, "
              f"{steps_fold:,} steps")
        print("Measured on this machine now:")
        print(f"  - features: {m.cpu_ms_per_frame:.1f} CPU ms per processed frame "
              f"({m.wall_ms_per_frame:.1f} ms wall) on a generated {ds.width}x{ds.height} "
              f"clip of {m.frames} processed frames, 1 worker; landmark model load "
              f"{m.model_load_s:.1f} s per worker process")
        mem = f", peak RSS {m.peak_rss_mib:,.0f} MiB per fold process" if m.peak_rss_mib else ""
        print(f"  - training: {m.step_ms / 1e3:.2f} s per step (median of {m.step_rounds}, "
              f"{args.threads} thread(s)){mem}")
        print(f"  - inference: {m.infer_ms_per_window:.2f} ms per window "
              f"(batch {tc.predict_batch_size})")
        print("Projection:")
        print(f"  {'':34}{'features':>12}{'training':>12}{'inference':>12}{'total':>12}"
              f"{'memory':>14}")

        def line(label: str, n: int) -> None:
            f_w = feat_cpu / n + m.model_load_s
            t_w = math.ceil(ds.subjects / n) * fold_train
            i_w = infer_all / min(n, ds.subjects)
            ram = (f"{min(n, ds.subjects) * m.peak_rss_mib / 1024:.1f} GiB"
                   if m.peak_rss_mib else "-")
            print(f"  {label:34}{hours(f_w):>12}{hours(t_w):>12}{hours(i_w):>12}"
                  f"{hours(f_w + t_w + i_w):>12}{ram:>14}")

        line("1 core of this machine", 1)
        line(f"this machine ({cores} cores)", cores)
        line(f"{args.workers} workers like these cores", args.workers)
        print("  (memory: folds training at once x the peak RSS of one fold process)")
        if not gpu:
            print("  GPU: no CUDA device on this machine, so no GPU line")
        print(f"  (CPU-hours: features {feat_cpu / 3600:.1f}, training {train_all / 3600:.1f}, "
              f"inference {infer_all / 3600:.2f}; one fold trains in {hours(fold_train)})")
    if gpu:
        name = torch.cuda.get_device_name(0)
        print(f"\n## On this machine's GPU ({name}); features on its {cores} CPU cores")
        for ds in DATASETS:
            m, cfg = measured[ds.key], load_config(ROOT / "configs" / ds.config)
            step = time_setting(load_setting(ds.key), ["mamba"], warmup=2, steps=args.steps,
                                device="cuda")["mamba"]["ms_median"]
            fold_train = steps_per_fold[ds.key] * step / 1e3
            feat_w = ds.frames / cfg.dataset.frame_skip * m.cpu_ms_per_frame / 1e3 / cores
            print(f"  {ds.name}: {step:.0f} ms per step (measured) -> training "
                  f"{hours(ds.subjects * fold_train)} for {ds.subjects} folds one after another, "
                  f"features {hours(feat_w)}, total {hours(ds.subjects * fold_train + feat_w)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
