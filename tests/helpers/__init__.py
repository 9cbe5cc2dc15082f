"""Shared test code: paths, tiny configs, tiny datasets on disk, a real Prefect server.

Test modules import from here (or get fixtures from ``conftest.py``), never from each other.
Nothing here imports Prefect at import time: ``conftest.py`` sets the Prefect environment first.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROJECT = Path(__file__).resolve().parents[2]

TINY_SYNTH = dict(subjects=3, videos=1, seconds=6, fps=30, width=320, height=240,
                  mes_per_video=3, macros_per_video=0, seed=3)
"""A synthetic CAS(ME)^3-layout dataset small enough to run the whole benchmark in seconds."""

TINY_MAMBA = {"backbone": "mamba", "fast_channels": 8, "slow_channels": 16, "stages": 2,
              "blocks_per_stage": 1, "d_state": 4, "drop_path": 0.1}
"""The smallest Mamba network the model tests train."""


# -- the one tiny-config factory ---------------------------------------------------------------

def _rates(layout: str) -> dict[str, Any]:
    return {"fps": 200, "frame_skip": 7} if layout == "samm_lv" else {"fps": 30, "frame_skip": 1}


def tiny_mapping(layout: str = "casme3", *, root: Path | str | None = None,
                 out: Path | str | None = None, name: str = "t", k: int = 10,
                 **sections: dict[str, Any]) -> dict[str, Any]:
    """The raw mapping of a tiny config: dataset ``name`` in ``layout`` at the layout's rate
    (SAMM-LV 200 fps, frame skip 7; others 30 fps, every frame), features k = ``k``, work
    folder ``out``; each keyword section (``dataset=``, ``features=``, ``model=``, ``train=``,
    ...) is merged into its section."""
    raw: dict[str, Any] = {"dataset": {"name": name, "layout": layout, **_rates(layout)},
                           "features": {"k": k}}
    if root is not None:
        raw["dataset"]["root"] = str(root)
    if out is not None:
        raw["run"] = {"out": str(out)}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **copy.deepcopy(values)}
    return raw


def tiny_config(layout: str = "casme3", *, where: str = "<config>", **kw: Any):
    """:func:`tiny_mapping` validated into a Config (``where`` names it in errors)."""
    from vrme.config import config_from_mapping

    return config_from_mapping(tiny_mapping(layout, **kw), where)


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


def write_tiny_config(folder: Path, root: Path, work: Path | None = None, extra: str = "",
                      **kw: Any) -> Path:
    """Write :func:`tiny_config_text` to ``folder/tiny.yaml`` (work folder ``folder/work``
    unless given) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "tiny.yaml"
    p.write_text(tiny_config_text(root, work if work is not None else folder / "work", extra,
                                  **kw))
    return p


# -- files -------------------------------------------------------------------------------------

def write_frames(folder: Path, numbers, name=lambda n: f"{n}.jpg", size=(48, 64), seed=0) -> None:
    """Write small grey JPEG frames numbered ``numbers`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=size, dtype=np.uint8)
    for n in numbers:
        cv2.imwrite(str(folder / name(n)), base)


NOT_CLEAN_YAML = [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a UTF-8 text file (byte 0x89 at offset 0"),
    ("dataset: {name: t}\n".encode("utf-16"), "not a UTF-8 text file"),
    (b"dataset: 1\x00\x00\n", "not a text file (it holds NUL bytes)"),
    (b"dataset: [1\nfeatures: 2\n", "not valid YAML: line 2, column"),
    (b"\tdataset: x\n", "not valid YAML: line 1"),
    (b"- a\n- b\n", "top level must be a mapping"),
    (b"", "missing required key 'dataset'; missing required key 'features'"),
    (b"dataset: {name: t}\ndataset: {name: u}\n", "key 'dataset' appears twice (lines 1 and 2)"),
]
"""Config files that are not clean UTF-8 YAML, and the one-line message each gets."""


# -- a real Prefect server ---------------------------------------------------------------------

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


# -- presets of the factory --------------------------------------------------------------------

def videos_config(root: Path, out: Path, k: int = 20, **features: Any):
    """A tiny config on plain video folders (layout ``videos``) for alignment and feature
    tests; ``features`` keys go into the features section."""
    return tiny_config("videos", root=root, out=out, name="test", k=k,
                       features=features, where="test")


def layout_config(layout: str, root: Path, out: Path, **dataset: Any):
    """A tiny config reading a dataset root in ``layout`` for ingest and label tests;
    ``dataset`` keys go into the dataset section."""
    return tiny_config(layout, root=root, out=out, dataset=dataset)


def model_config(layout: str = "casme3", k: int = 30, frame_skip: int | None = None,
                 **train: Any):
    """A tiny config with :data:`TINY_MAMBA` and a short CPU training (8 epochs, batch 16,
    lr 3e-3, seed 100) for training tests; ``train`` keys override the train section."""
    return tiny_config(layout, k=k,
                       dataset={} if frame_skip is None else {"frame_skip": frame_skip},
                       model=TINY_MAMBA,
                       train={"epochs": 8, "batch_size": 16, "lr": 3e-3, "ratio": 1.0,
                              "seed": 100, "device": "cpu", **train})
