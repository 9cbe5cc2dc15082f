"""A tiny end-to-end benchmark on rendered synthetic videos, built once per test session and
shared by test_report.py and test_predict.py (loaded as a pytest plugin by both).

3 subjects x 1 video x 8 s at 30 fps, 320 x 240 frames, k = 16, a Mamba network with 16
channels and d_state 4 trained for 20 epochs: real dlib alignment, real optical-flow features,
real training, leave-one-subject-out, then a final model on all subjects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vrme.config import Config

SPEC_KW = dict(layout="casme3", subjects=3, videos=1, seconds=8, fps=30, width=320, height=240,
               mes_per_video=3, macros_per_video=1, seed=7)


def bench_config(root: Path, out: Path, **paper) -> Config:
    """The tiny benchmark's config (dataset at ``root``, work folder ``out``)."""
    return Config.model_validate({
        "dataset": {"name": "tiny", "layout": "casme3", "root": str(root), "fps": 30,
                    "frame_skip": 1},
        "features": {"k": 16},
        "model": {"backbone": "mamba", "fast_channels": 16, "slow_channels": 16, "stages": 2,
                  "blocks_per_stage": 1, "d_state": 4, "drop_path": 0.1},
        "train": {"epochs": 20, "batch_size": 16, "lr": 3e-3, "ratio": 1.0, "seed": 100,
                  "device": "cpu"},
        "run": {"out": str(out), "name": "tiny"},
        "paper": paper,
    })


@dataclass
class TinyBench:
    cfg: Config
    root: Path
    run_dir: Path
    report: object
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> TinyBench:
    from vrme.features.flow import features_dir, run_features
    from vrme.data.ingest import ingest
    from vrme.training.loso import run_loso
    from vrme.report.build import build_report, write_run_info
    from vrme.synth.generate import SynthSpec, generate_dataset

    base = tmp_path_factory.mktemp("tiny_bench")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    generate_dataset(SynthSpec(**SPEC_KW), base / "data", progress=False)
    seconds["synth"] = time.perf_counter() - t
    cfg = bench_config(base / "data", base / "work")
    t = time.perf_counter()
    manifest = ingest(cfg).manifest
    statuses = run_features(cfg, manifest, progress=False)
    assert all(s.status == "computed" for s in statuses), [(s.video, s.reason) for s in statuses]
    seconds["features"] = time.perf_counter() - t
    write_run_info(cfg.run_dir, cfg)
    t = time.perf_counter()
    run_loso(cfg, cfg.ingest_dir / "manifest.parquet", cfg.ingest_dir / "labels.parquet",
             features_dir(cfg), cfg.run_dir, progress=False)
    seconds["loso"] = time.perf_counter() - t
    t = time.perf_counter()
    rep = build_report(cfg.run_dir)
    seconds["report"] = time.perf_counter() - t
    return TinyBench(cfg=cfg, root=base / "data", run_dir=cfg.run_dir, report=rep,
                     seconds=seconds)


@pytest.fixture(scope="session")
def spec_kw() -> dict:
    """The SynthSpec arguments of the tiny benchmark's dataset."""
    return dict(SPEC_KW)


@pytest.fixture(scope="session")
def final_model(tiny_bench) -> Path:
    from vrme.training.final import train_final

    return train_final(tiny_bench.cfg, progress=False)
