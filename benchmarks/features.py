"""Benchmark of the alignment + feature stages on a generated 640 x 480 face video.

    python benchmarks/features.py [--seconds 60] [--k 50] [--data DIR] [--repeat 3]
                                  [--workers N]

Generates (once, into ``--data``) a synthetic CAS(ME)^3-layout video with ``vrme.synth.generate``,
aligns it once, then measures in this process, interleaved round by round (``--repeat`` rounds;
medians and the per-round ratios are printed, so that a machine whose speed drifts still compares
like
with like):

- ``fast``: the feature stage with ``features.flow_impl: fast`` (the default: vrme's compiled
  Farneback, each window's first frame expanded once; its C kernels where a compiler builds
  them);
- ``numba``: the same with the numba kernels (``VRME_FLOW_KERNEL=numba``, what runs where
  there is no C compiler);
- ``opencv``: the same with ``flow_impl: opencv`` (``cv2.calcOpticalFlowFarneback`` on every
  frame pair, the reference-exact path);
- ``floor``: the bare OpenCV Farneback calls on the same ROIs (7 regions per window and frame, the
  crops made beforehand and held in memory; no decode, no re-alignment, nothing else).

CPU seconds per frame are process CPU time divided by the video's frames (decode included in the
two stages). The fidelity figure is the smallest correlation, over the 36 feature channels, of the
fast path's features with the opencv path's. Then the one-time costs of a process (landmark
models, compiled kernels), the alignment stage's cost per frame, and the scaling over cores:
``--workers`` copies of the video featurized at once by a ``ProcessPoolExecutor``, against one
copy alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def _row(data: Path) -> dict[str, Any]:
    """Manifest row of the generated video (no ingest step needed)."""
    from vrme.data.frames import list_frames

    folder = data / "data" / "spNO.1" / "a" / "color"
    lst = list_frames(folder)
    prefix, suffix, pad = lst.pattern or ("", ".jpg", 0)
    return {
        "dataset": "bench", "subject": "1", "subject_dir": "spNO.1", "video": "a",
        "source": "frames", "path": str(folder.relative_to(data)), "name_prefix": prefix,
        "name_suffix": suffix, "pad_width": pad, "frame_files": None,
        "first_frame": lst.first, "last_frame": lst.last,
        "n_frames": lst.last - lst.first + 1, "n_files": len(lst.files), "missing_frames": [],
        "frame_numbering": "contiguous", "fps": 30.0, "width": 640, "height": 480,
        "labelled": False,
    }


def _config(data: Path, out: Path, k: int, flow_impl: str = "fast"):  # noqa: ANN202
    from vrme.config import config_from_mapping

    return config_from_mapping({
        "dataset": {"name": "bench", "layout": "casme3", "fps": 30, "frame_skip": 1,
                    "root": str(data)},
        "features": {"k": k, "flow_impl": flow_impl},
        "run": {"out": str(out)},
    }, "benchmark")


def generate(data: Path, seconds: float) -> None:
    """Render the benchmark video into ``data`` unless it is there already."""
    if (data / "synth_spec.json").is_file():
        return
    try:
        from vrme.synth.generate import generate_dataset
        from vrme.synth.spec import SynthSpec
    except ImportError as exc:  # pragma: no cover - depends on the checkout
        raise SystemExit(f"vrme.synth.generate is needed to generate the benchmark video: {exc}")
    spec = SynthSpec(layout="casme3", subjects=1, videos=1, seconds=seconds, width=640,
                     height=480, mes_per_video=max(1, int(seconds // 15)),
                     macros_per_video=1, seed=0, workers=1)
    t = time.perf_counter()
    generate_dataset(spec, data, progress=False)
    print(f"generated {spec.frames_per_video} frames in {time.perf_counter() - t:.0f} s "
          f"into {data}", file=sys.stderr)


def align(data: Path, out: Path, k: int) -> dict[str, Any]:
    """Align the video (once; both feature paths share the landmarks)."""
    from vrme.features.align import MODEL_LOAD_SECONDS, load_models, predictor_file, run_align

    cfg = _config(data, out, k)
    path = str(predictor_file(cfg.align))
    load_models(path)
    c = time.process_time()
    (st,) = run_align(cfg, [_row(data)], workers=1, progress=False, force=True)
    assert st.status == "computed", st
    return {"model_load_s": MODEL_LOAD_SECONDS[path], "align_cpu_s": time.process_time() - c,
            "detect_s": st.timings.get("detect", 0.0), "counts": st.counts}


def features(data: Path, out: Path, k: int, impl: str, kernel: str = "") -> dict[str, Any]:
    """The feature stage of the video in this process (recomputed), CPU-timed; ``kernel``:
    the fast path's compiled kernels (``$VRME_FLOW_KERNEL``; empty: the default)."""
    import numpy as np

    from vrme.features.farneback import KERNEL_ENV
    from vrme.features.flow import feature_chunk, plan_features

    cfg = _config(data, out, k, impl)
    previous = os.environ.pop(KERNEL_ENV, None)
    if kernel:
        os.environ[KERNEL_ENV] = kernel
    c = time.process_time()
    job = plan_features(cfg, _row(data), data, workers=1, force=True)
    try:
        chunks = [feature_chunk(*args) for args in job.chunks]
    finally:
        os.environ.pop(KERNEL_ENV, None)
        if previous is not None:
            os.environ[KERNEL_ENV] = previous
    assert job.finish is not None
    st = job.finish(chunks)
    return {"cpu_s": time.process_time() - c, "frames": st.n_indices, "windows": st.n_windows,
            "flow_s": st.timings.get("flow", 0.0), "decode_s": st.timings.get("decode", 0.0),
            "calls": st.timings.get("farneback_calls", 0.0), "kernel": chunks[0].flow_kernel,
            "values": np.concatenate([ch.values for ch in chunks])}


def floor(data: Path, out: Path, k: int) -> dict[str, Any]:
    """Bare OpenCV Farneback cost on the ROIs of every window and frame (from memory)."""
    import cv2
    import numpy as np

    from vrme.data.frames import FrameSource
    from vrme.features.align import landmarks_path, read_landmarks
    from vrme.features.flow import FlowParams
    from vrme.features.rois import roi_layout

    cfg = _config(data, out, k)
    row = _row(data)
    p = FlowParams.from_sections(cfg.align, cfg.features)
    vl = read_landmarks(landmarks_path(cfg, row["subject"], row["video"]))
    src = FrameSource(row, data)
    half = k // 2
    seconds, calls = 0.0, 0
    for w in range(vl.n_windows):
        if vl.status[w] == "none":
            continue
        lay = roi_layout(vl.crop_landmarks[w], **p.fractions)
        t, b, left, r = (int(v) for v in vl.crop_box[w])
        crops = [cv2.resize(src.read(w * half + i)[t:b, left:r], (p.crop_size, p.crop_size))
                 for i in range(k)]
        pairs = []
        for i in range(1, k):
            for rs, cs in lay.regions:
                a = np.ascontiguousarray(crops[0][rs, cs])
                if a.size:
                    pairs.append((a, np.ascontiguousarray(crops[i][rs, cs])))
        t0 = time.process_time()
        for a, c in pairs:
            cv2.calcOpticalFlowFarneback(a, c, None, *p.farneback, 0)
        seconds += time.process_time() - t0
        calls += len(pairs)
    return {"cpu_s": seconds, "calls": calls}


def _one_copy(args: tuple[str, str, int]) -> float:
    """Worker of the scaling figure: align + features of the video into its own folder."""
    import cv2

    cv2.setNumThreads(1)
    data, out, k = Path(args[0]), Path(args[1]), args[2]
    from vrme.features.align import run_align
    from vrme.features.flow import run_features

    cfg = _config(data, out, k)
    run_align(cfg, [_row(data)], workers=1, progress=False)
    (st,) = run_features(cfg, [_row(data)], workers=1, progress=False, align_first=False)
    return st.seconds


def scaling(data: Path, tmp: Path, k: int, workers: int) -> tuple[float, float]:
    """Wall seconds of 1 copy of the video, then of ``workers`` copies at once."""
    times = []
    for n in (1, workers):
        jobs = [(str(data), str(tmp / f"scale-{n}-{i}"), k) for i in range(n)]
        t = time.perf_counter()
        with cf.ProcessPoolExecutor(max_workers=n) as pool:
            list(pool.map(_one_copy, jobs))
        times.append(time.perf_counter() - t)
    return times[0], times[1]


def min_channel_corr(a: Any, b: Any) -> float:
    """Smallest correlation over the 36 channels of two (windows, 36, k) feature arrays."""
    import numpy as np

    x = a.transpose(1, 0, 2).reshape(a.shape[1], -1).astype(np.float64)
    y = b.transpose(1, 0, 2).reshape(b.shape[1], -1).astype(np.float64)
    return min(float(np.corrcoef(x[i], y[i])[0, 1]) for i in range(x.shape[0]))


def main() -> None:
    import cv2
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--k", type=int, default=50, help="window length (CAS(ME)^3: 50)")
    ap.add_argument("--data", type=Path, default=None,
                    help="where the generated video lives (default: a temp folder)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes of the scaling figure (1 = skip it)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.data is None:
        args.data = Path(tempfile.gettempdir()) / f"vrme-bench-{int(args.seconds)}s"
    generate(args.data, args.seconds)
    with tempfile.TemporaryDirectory(prefix="vrme-bench-out-") as tmp_s:
        tmp = Path(tmp_s)
        al = align(args.data, tmp, args.k)
        c = time.process_time()
        warm = features(args.data, tmp, args.k, "fast")  # loads (or compiles) the kernels
        first_fast_s = time.process_time() - c
        features(args.data, tmp, args.k, "fast", "numba")  # the numba kernels, loaded
        rounds: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            rounds.append({"opencv": features(args.data, tmp, args.k, "opencv"),
                           "fast": features(args.data, tmp, args.k, "fast"),
                           "numba": features(args.data, tmp, args.k, "fast", "numba"),
                           "floor": floor(args.data, tmp, args.k)})
        fidelity = min_channel_corr(rounds[0]["fast"]["values"], rounds[0]["opencv"]["values"])
        max_diff = float(np.abs(rounds[0]["fast"]["values"]
                                - rounds[0]["opencv"]["values"]).max())
        scale = (scaling(args.data, tmp, args.k, args.workers) if args.workers > 1 else None)
    report(args, al, warm, first_fast_s, rounds, fidelity, max_diff, scale)


def report(args: argparse.Namespace, al: dict[str, Any], warm: dict[str, Any],
           first_fast_s: float, rounds: list[dict[str, Any]], fidelity: float,
           max_diff: float, scale: tuple[float, float] | None) -> None:
    """Print the benchmark table."""
    med = statistics.median
    n = warm["frames"]
    ms = {key: med(r[key]["cpu_s"] for r in rounds) / n * 1e3
          for key in ("fast", "numba", "opencv", "floor")}
    flow_ms = {key: med(r[key]["flow_s"] for r in rounds) / n * 1e3
               for key in ("fast", "numba", "opencv")}
    per = {
        "fast / opencv": [r["fast"]["cpu_s"] / r["opencv"]["cpu_s"] for r in rounds],
        "fast, numba kernels / opencv": [r["numba"]["cpu_s"] / r["opencv"]["cpu_s"]
                                         for r in rounds],
        "fast / fast with numba kernels": [r["fast"]["cpu_s"] / r["numba"]["cpu_s"]
                                           for r in rounds],
        "opencv / floor": [r["opencv"]["cpu_s"] / r["floor"]["cpu_s"] for r in rounds],
        "fast / floor": [r["fast"]["cpu_s"] / r["floor"]["cpu_s"] for r in rounds],
        "fast flow / opencv flow": [r["fast"]["flow_s"] / r["opencv"]["flow_s"]
                                    for r in rounds],
    }
    align_ms = al["align_cpu_s"] / n * 1e3
    load = os.getloadavg()
    print(f"video: {n} frames 640x480 (generated, {args.seconds:.0f} s at 30 fps), k={args.k}, "
          f"{warm['windows']} windows, alignment {al['counts']}")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} "
          f"(1 / 5 min) at the end; {args.repeat} interleaved rounds, medians")
    print("feature stage, CPU ms per frame (decode, flow, ROI means, Parquet):")
    print(f"  {'fast (flow_impl: fast, default)':40}{ms['fast']:8.2f}   "
          f"(flow {flow_ms['fast']:.2f}; kernels: {rounds[0]['fast']['kernel']})")
    print(f"  {'fast, numba kernels (no C compiler)':40}{ms['numba']:8.2f}   "
          f"(flow {flow_ms['numba']:.2f}; VRME_FLOW_KERNEL=numba)")
    print(f"  {'opencv (flow_impl: opencv, exact)':40}{ms['opencv']:8.2f}   "
          f"(flow {flow_ms['opencv']:.2f}, {int(rounds[0]['opencv']['calls'])} calls)")
    print(f"  {'floor: bare OpenCV Farneback':40}{ms['floor']:8.2f}   "
          f"({rounds[0]['floor']['calls']} calls, no re-alignment)")
    print("ratios, round by round (median):")
    for key, values in per.items():
        print(f"  {key:40}{med(values):8.2f}   ({', '.join(f'{x:.2f}' for x in values)})")
    print(f"fidelity: min correlation over the 36 channels, fast vs opencv = {fidelity:.10f} "
          f"(1 - {1 - fidelity:.1e}; goal >= 0.9999), max |difference| {max_diff:.2g} px")
    print("alignment stage and one-time costs:")
    print(f"  {'alignment, CPU ms per frame':40}{align_ms:8.2f}   "
          f"(detection {al['detect_s'] / n * 1e3:.2f})")
    print(f"  {'whole pipeline, CPU ms per frame':40}{align_ms + ms['fast']:8.2f}   "
          f"(opencv path: {align_ms + ms['opencv']:.2f})")
    print(f"  {'landmark models, once per process':40}{al['model_load_s']:8.2f} s")
    extra = first_fast_s - med(r["fast"]["cpu_s"] for r in rounds)
    print(f"  {'compiled kernels, once per process':40}{extra:8.2f} s   (the first fast video's "
          "extra CPU)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {'peak RSS of this process':40}{own:8.0f} MB")
    if scale is not None:
        one, many = scale
        print(f"scaling (wall): {args.workers} copies at once in {many:.1f} s, one alone in "
              f"{one:.1f} s: {args.workers * one / many:.2f}x the throughput "
              f"= {one / many:.2f} x workers x one")


if __name__ == "__main__":
    main()
