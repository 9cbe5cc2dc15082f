"""A run's own record: ``<run_dir>/run.json``, written when a run starts.

It holds everything needed later to know what made the run and to rebuild its report without
the original config file: the whole config, the dataset, where ingestion wrote its tables, the
fold config hash, the code version of every stage, vrme's version and git commit, the machine
and the versions of the libraries whose numerics the outputs depend on. Prediction reads the
config of a trained run back from here (:func:`run_config`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

import vrme
from vrme.catalog import RUN_INFO_FILE
from vrme.config import Config, config_from_mapping
from vrme.errors import DataError
from vrme.io import write_json_atomic

RUN_INFO_FORMAT = 1


def is_synthetic_dataset(root: str | os.PathLike[str] | None) -> bool:
    """True when ``root`` holds a dataset made by :mod:`vrme.synth.generate` (its
    ``synth_spec.json``)."""
    return root is not None and (Path(root) / "synth_spec.json").is_file()


def write_run_info(run_dir: str | os.PathLike[str], cfg: Config, *,
                   manifest_path: str | os.PathLike[str] | None = None,
                   labels_path: str | os.PathLike[str] | None = None,
                   features_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<run_dir>/run.json``: the config (all sections), the dataset (name, layout, root,
    fps, frame skip, whether it is synthetic), the ingest tables and feature folder the folds
    read (defaults: ``cfg.ingest_dir`` and :func:`vrme.features.flow.features_dir`), the fold config
    hash and versions. Call it when a run starts; returns the path."""
    from vrme.features.flow import feature_hash
    from vrme.features.flow import features_dir as default_features_dir
    from vrme.training.train import fold_config_hash

    run_dir = Path(run_dir)
    ingest = cfg.ingest_dir
    info = {
        "format": RUN_INFO_FORMAT,
        "created": _now(),
        "run_name": cfg.run_name,
        "config_source": cfg.source,
        "config": cfg.model_dump(mode="json"),
        "dataset": {
            "name": cfg.dataset.name,
            "layout": cfg.dataset.layout,
            "root": str(cfg.dataset.root) if cfg.dataset.root else None,
            "fps": cfg.dataset.fps,
            "frame_skip": cfg.dataset.frame_skip,
            "synthetic": is_synthetic_dataset(cfg.dataset.root),
        },
        "ingest_dir": str(Path(ingest).absolute()),
        "manifest": str(Path(manifest_path or ingest / "manifest.parquet").absolute()),
        "labels": str(Path(labels_path or ingest / "labels.parquet").absolute()),
        "features_dir": str(Path(features_dir or default_features_dir(cfg)).absolute()),
        "feature_hash": feature_hash(cfg),
        "fold_config_hash": fold_config_hash(cfg),
        "versions": {"vrme": vrme.__version__, "python": platform.python_version(),
                     "code": code_versions(), "source": source_revision()},
        "machine": machine_info(cfg),
    }
    return write_json_atomic(run_dir / RUN_INFO_FILE, info)


def code_versions() -> dict[str, int]:
    """The version number of every stage's code (bumped with any change that changes its
    output; each is part of that stage's cache hash): ingest, align, features, priors, train,
    decode."""
    from vrme.data.ingest import INGEST_VERSION
    from vrme.decoding.decode import DECODE_VERSION
    from vrme.features.align import ALIGN_VERSION
    from vrme.features.flow import FEATURES_VERSION
    from vrme.training.priors import PRIORS_VERSION
    from vrme.training.train import TRAIN_VERSION

    return {"ingest": INGEST_VERSION, "align": ALIGN_VERSION, "features": FEATURES_VERSION,
            "priors": PRIORS_VERSION, "train": TRAIN_VERSION, "decode": DECODE_VERSION}


def source_revision() -> dict[str, Any] | None:
    """The git commit of the vrme source in use and whether tracked files differ from it
    (``{"commit", "dirty"}``), or None when vrme does not run from a git checkout (an
    installed package) or git is not available."""
    import subprocess

    root = Path(vrme.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(status.strip())}


def machine_info(cfg: Config | None = None) -> dict[str, Any]:
    """What a run's numbers may depend on beyond its config and inputs: the CPU (model, cores,
    the instruction set torch's kernels use), the torch build and the thread count. The same
    config and seed give identical numbers on one machine; another CPU or torch build can
    change the last digits of training, and so the decoded intervals."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = cfg.train.threads if cfg is not None and cfg.train.threads else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "torch_cuda": torch.version.cuda,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "train_threads": threads if threads is not None else torch.get_num_threads(),
        "train_threads_from": "train.threads" if threads is not None else "torch default",
        "device": cfg.train.device if cfg is not None else None,
    }


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``run.json`` as a dict; :class:`DataError` when missing or unreadable."""
    p = Path(run_dir) / RUN_INFO_FILE
    if not p.is_file():
        raise DataError(f"{p} not found: this run folder was not started by vrme (or is from "
                        "an older version); pass --config to say how it was made")
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not readable JSON ({exc})") from exc
    if not isinstance(info, dict) or "config" not in info:
        raise DataError(f"{p}: no 'config' entry")
    return info


def run_config(run_dir: str | os.PathLike[str]) -> Config:
    """The config a run was made with, from its ``run.json``."""
    info = read_run_info(run_dir)
    raw = dict(info["config"])
    cfg = config_from_mapping(raw, str(Path(run_dir) / RUN_INFO_FILE), recorded=True)
    return cfg


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics the features depend on."""
    import cv2
    import dlib
    import pyarrow

    return {
        "vrme": vrme.__version__,
        "opencv": cv2.__version__,
        "dlib": dlib.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB.

    ``getrusage`` gives it in KiB on Linux and in bytes on macOS; on Windows (no ``resource``
    module) psutil's peak working set is used."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
