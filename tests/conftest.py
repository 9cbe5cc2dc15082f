"""Shared fixtures: paths, tiny datasets written with real JPEG frames."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = Path(__file__).resolve().parents[1]

# Keep torch and OpenCV from oversubscribing the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
