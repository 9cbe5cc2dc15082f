"""Shared fixtures: paths, tiny datasets written with real JPEG frames."""

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

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = Path(__file__).resolve().parents[1]

# Keep torch and OpenCV from oversubscribing the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_SYNTH = dict(subjects=3, videos=1, seconds=6, fps=30, width=320, height=240,
                  mes_per_video=3, macros_per_video=0, seed=3)
"""A synthetic CAS(ME)^3-layout dataset small enough to run the whole benchmark in seconds."""


def tiny_config_text(root: Path, out: Path, extra: str = "", layout: str = "casme3",
                     synth: dict | None = None) -> str:
    """YAML of a tiny benchmark config on ``root`` writing to ``out`` (``extra`` is appended
    inside the top level, e.g. an ``orchestration:`` block) in ``layout`` (a 30 fps one),
    its ``synth:`` section ``synth`` (default :data:`TINY_SYNTH`)."""
    synth_text = ", ".join(f"{k}: {v}" for k, v in (synth or TINY_SYNTH).items())
    return (
        f"dataset: {{name: tiny, layout: {layout}, root: {root}, fps: 30, frame_skip: 1}}\n"
        f"synth: {{{synth_text}}}\n"
        "features: {k: 16}\n"
        "model: {backbone: gru, fast_channels: 8, slow_channels: 16, stages: 1, "
        "blocks_per_stage: 1, d_state: 4}\n"
        "train: {epochs: 2, batch_size: 8, lr: 0.003, ratio: 1, device: cpu, threads: 1}\n"
        f"run: {{out: {out}}}\n" + extra
    )


@pytest.fixture(scope="session")
def tiny_synth_root(tmp_path_factory) -> Path:
    """Generated once per session: 3 subjects x 1 video x 6 s at 30 fps, 320 x 240."""
    from vrme.synth.generate import SynthSpec, generate_dataset

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


def write_frames(folder: Path, numbers, name=lambda n: f"{n}.jpg", size=(48, 64), seed=0) -> None:
    """Write small grey JPEG frames numbered ``numbers`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=size, dtype=np.uint8)
    for n in numbers:
        cv2.imwrite(str(folder / name(n)), base)


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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_prefect_server(home: Path, ui: bool = False):
    """A real ``prefect server start`` (its own SQLite database in ``home``) on a free loopback
    port, as a researcher starts it: a context manager yielding (api_url, environment for
    clients). ``ui``: serve the UI too (its API address set to this port)."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    @contextlib.contextmanager
    def run():
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_LOGGING_EXTRA_LOGGERS="vrme")
        env.update(PREFECT_UI_API_URL=url) if ui else env.update(PREFECT_UI_ENABLED="false")
        log = open(home / "server.log", "w")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start",
                                 "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"prefect server did not start: "
                                   f"{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        try:
            yield url, {**env, "PREFECT_API_URL": url}
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()

    return run()
