"""Shared fixtures: the tiny synthetic dataset, the tiny benchmark built on it, tiny label-layout
roots, the Prefect test harness. Shared code (paths, the tiny-config factory) is in
``tests/helpers``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Prefect state of the test session lives in a temporary folder, never in the user's home;
# set before anything imports Prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="vrme-tests-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "vrme"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.pop("PREFECT_API_URL", None)

import time
from dataclasses import dataclass, field

import pytest

from tests.helpers import FIXTURES, TINY_SYNTH, tiny_config, write_frames
from vrme.config import Config

# Keep torch and OpenCV from oversubscribing the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_synth_root(tmp_path_factory) -> Path:
    """The one tiny dataset, generated once per session: :data:`TINY_SYNTH` (3 subjects x 1
    video x 6 s at 30 fps, 320 x 240, CAS(ME)^3 layout)."""
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec

    root = tmp_path_factory.mktemp("tiny-synth") / "data"
    generate_dataset(SynthSpec(layout="casme3", **TINY_SYNTH), root, progress=False)
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield PREFECT_API_URL.value()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def tiny_casme3(tmp_path: Path) -> Path:
    """A CAS(ME)^3-layout root with the mock spreadsheet and frames for a few of its videos.

    The mock spreadsheet labels every event onset 1, apex 5, offset 15 for subjects dzw, gcf,
    smy, wy. Frames 0..29 exist for dzw/a1, dzw/d1, gcf/a1, gcf/d1; the other videos are absent.
    """
    root = tmp_path / "casme3"
    for subject, video in [("dzw", "a1"), ("dzw", "d1"), ("gcf", "a1"), ("gcf", "d1")]:
        write_frames(root / "data" / subject / video / "color", range(30))
    shutil.copy(FIXTURES / "labels" / "casme3_label.xlsx", root / "casme3_label.xlsx")
    return root


@pytest.fixture
def tiny_samm(tmp_path: Path) -> Path:
    """A SAMM-LV-layout root with the mock spreadsheets and frames 1..120 for two videos."""
    root = tmp_path / "samm"
    for video in ["001_2", "002_1"]:
        write_frames(root / "SAMM_longvideos" / video, range(1, 121),
                     name=lambda n, v=video: f"{v}_{n:04d}.jpg")
    for f in ["SAMM_LongVideos_V3_Release.xlsx", "SAMM_Micro_FACS_Codes_v2.xlsx"]:
        shutil.copy(FIXTURES / "labels" / f, root / f)
    return root


# -- the tiny benchmark: the tiny dataset run end to end, once per session -----------------------
# Real dlib alignment, real optical-flow features, real training (a Mamba network with 16
# channels and d_state 4, 20 epochs), leave-one-subject-out, then a final model on all subjects.
# Shared by test_report.py and test_predict.py.


def bench_config(root: Path, out: Path, **paper):
    """The tiny benchmark's config (dataset at ``root``, work folder ``out``)."""
    return tiny_config("casme3", root=root, out=out, name="tiny", k=16,
                       model={"backbone": "mamba", "fast_channels": 16, "slow_channels": 16,
                              "stages": 2, "blocks_per_stage": 1, "d_state": 4,
                              "drop_path": 0.1},
                       train={"epochs": 20, "batch_size": 16, "lr": 3e-3, "ratio": 1.0,
                              "seed": 100, "device": "cpu"},
                       run={"name": "tiny"}, paper=paper)


@dataclass
class TinyBench:
    cfg: Config
    root: Path
    run_dir: Path
    report: object
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory, tiny_synth_root) -> TinyBench:
    from vrme.catalog import labels_path, manifest_path
    from vrme.data.ingest import ingest
    from vrme.features.flow import features_dir, run_features
    from vrme.record import write_run_info
    from vrme.report.build import build_report
    from vrme.training.loso import run_loso

    base = tmp_path_factory.mktemp("tiny_bench")
    seconds: dict[str, float] = {}
    cfg = bench_config(tiny_synth_root, base / "work")
    t = time.perf_counter()
    manifest = ingest(cfg).manifest
    statuses = run_features(cfg, manifest, progress=False)
    assert all(s.status == "computed" for s in statuses), [(s.video, s.reason) for s in statuses]
    seconds["features"] = time.perf_counter() - t
    write_run_info(cfg.run_dir, cfg)
    t = time.perf_counter()
    run_loso(cfg, manifest_path(cfg), labels_path(cfg),
             features_dir(cfg), cfg.run_dir, progress=False)
    seconds["loso"] = time.perf_counter() - t
    t = time.perf_counter()
    rep = build_report(cfg.run_dir)
    seconds["report"] = time.perf_counter() - t
    return TinyBench(cfg=cfg, root=tiny_synth_root, run_dir=cfg.run_dir, report=rep,
                     seconds=seconds)


@pytest.fixture(scope="session")
def spec_kw() -> dict:
    """The SynthSpec arguments of the tiny dataset (the tiny benchmark's)."""
    return {"layout": "casme3", **TINY_SYNTH}


@pytest.fixture(scope="session")
def final_model(tiny_bench) -> Path:
    from vrme.training.final import train_final

    return train_final(tiny_bench.cfg, progress=False)
