"""Landmark stage: real dlib on generated face frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import facegen, videos_config
from vrme.config import AlignConfig
from vrme.errors import NoFaceError
from vrme.features.align import (
    LANDMARKS_SCHEMA,
    FrameAlignment,
    align_frame,
    align_video,
    crop_box_from_landmarks,
    fill_missing,
    landmarks_path,
    load_models,
    predictor_file,
    read_landmarks,
    run_align,
)


def test_crop_box_integer_arithmetic():
    lm = np.zeros((68, 2), dtype=np.int64)
    lm[39] = (100, 50)
    lm[42] = (121, 53)
    # g = int(21 / 2) = 10; centre = (int(110.5), int(51.5)) = (110, 51)
    assert crop_box_from_landmarks(lm) == (51 - 35, 51 + 55, 110 - 45, 110 + 45)
    lm[39] = (10, 20)
    lm[42] = (31, 22)
    top, bottom, left, right = crop_box_from_landmarks(lm)
    assert (top, left) == (0, 0)  # clipped at the frame's top-left only
    assert (bottom, right) == (21 + 55, 20 + 45)


def test_align_frame_on_a_face():
    canvas, lm_ref = facegen.base_face()
    det, pred = load_models(str(predictor_file(AlignConfig())))
    fa = align_frame(canvas, det, pred, 320)
    assert fa is not None
    assert fa.landmarks.shape == (68, 2) and fa.crop_landmarks.shape == (68, 2)
    assert np.array_equal(fa.landmarks, lm_ref.astype(np.int64))
    assert tuple(fa.crop_box) == crop_box_from_landmarks(fa.landmarks)
    assert fa.crop_landmarks_from == "detected"
    inner = fa.crop_landmarks[17:]  # brows, eyes, nose, mouth (the jaw may leave the crop)
    assert inner.min() >= 0 and inner.max() < 320
    # Landmarks found again on the crop sit where the frame landmarks map to (within a few px).
    top, bottom, left, right = fa.crop_box
    mapped = (fa.landmarks - [left, top]) * [320 / (right - left), 320 / (bottom - top)]
    assert np.median(np.abs(mapped - fa.crop_landmarks)) < 6
    assert align_frame(np.full_like(canvas, 128), det, pred, 320) is None


def _fa(tag: int) -> FrameAlignment:
    return FrameAlignment(np.full(4, tag), np.full((68, 2), tag), np.full(4, tag),
                          np.full((68, 2), tag), "detected")


def test_fill_missing_takes_nearest_window_earlier_on_ties():
    found = [None, _fa(1), None, None, _fa(4), None, None, _fa(7)]
    vl = fill_missing(found, np.arange(8) * 10, np.arange(8) * 10, "s", "v", {})
    assert vl.source_window.tolist() == [1, 1, 1, 4, 4, 4, 7, 7]
    assert vl.status.tolist() == ["reused", "detected", "reused", "reused", "detected",
                                  "reused", "reused", "detected"]
    assert vl.crop_box[2].tolist() == [1, 1, 1, 1] and vl.crop_box[3].tolist() == [4, 4, 4, 4]
    vl = fill_missing([None, None], np.arange(2), np.arange(2), "s", "v", {})
    assert vl.status.tolist() == ["none", "none"] and vl.source_window.tolist() == [-1, -1]


def test_align_video_schema_cache_and_reuse(tmp_path):
    root, out = tmp_path / "data", tmp_path / "work"
    # k = 20: windows start at 0, 10, 20, 30, 40; frame 20 (window 2) shows no face.
    frames, _ = facegen.render(60, blank={20})
    row = facegen.write_video(root, "s1", "v1", frames, first=5)
    cfg = videos_config(root, out)
    st = align_video(cfg, row)
    assert st.status == "computed" and st.n_windows == 5
    assert st.counts == {"detected": 4, "reused": 1, "none": 0}
    path = landmarks_path(cfg, "s1", "v1")
    assert Path(st.path) == path and path.is_file()
    assert pq.read_schema(path).remove_metadata() == LANDMARKS_SCHEMA
    vl = read_landmarks(path)
    assert vl.start_frame.tolist() == [5, 15, 25, 35, 45]
    assert vl.status.tolist() == ["detected", "detected", "reused", "detected", "detected"]
    assert vl.source_window[2] == 1  # windows 1 and 3 are equally near: the earlier wins
    assert np.array_equal(vl.crop_landmarks[2], vl.crop_landmarks[1])
    assert vl.meta["fingerprint"] and vl.meta["params_hash"] and vl.meta["versions"]["dlib"]

    mtime = path.stat().st_mtime_ns
    assert align_video(cfg, row).status == "cached"
    assert path.stat().st_mtime_ns == mtime
    # A changed frame changes the fingerprint: recomputed.
    f = root / "s1" / "v1" / "10.jpg"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert align_video(cfg, row).status == "computed"
    # A changed alignment parameter goes to another folder.
    cfg2 = videos_config(root, out)
    cfg2.align.crop_size = 256
    assert landmarks_path(cfg2, "s1", "v1") != path
    assert align_video(cfg2, row).status == "computed"


def test_video_without_face_is_skipped_and_run_goes_on(tmp_path):
    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(40)
    good = facegen.write_video(root, "s1", "face", frames)
    blank = facegen.write_video(root, "s1", "blank", [np.full_like(frames[0], 90)] * 40)
    cfg = videos_config(root, out)
    with pytest.raises(NoFaceError, match="s1/blank"):
        align_video(cfg, blank)
    statuses = run_align(cfg, [blank, good], workers=1, progress=False)
    assert [s.status for s in statuses] == ["skipped", "computed"]
    assert "no face" in statuses[0].reason
    # The finding is cached: the second run does not detect again.
    statuses = run_align(cfg, [blank, good], workers=1, progress=False)
    assert [s.status for s in statuses] == ["skipped", "cached"]


def test_landmark_model_loads_once_per_process_and_is_shared_by_threads():
    import threading

    from vrme.features.align import MODEL_LOAD_SECONDS

    path = str(predictor_file(AlignConfig()))
    first = load_models(path)
    assert MODEL_LOAD_SECONDS[path] > 0
    got = []
    threads = [threading.Thread(target=lambda: got.append(load_models(path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g[0] is first[0] and g[1] is first[1] for g in got) and len(got) == 3
    # The shared models still work from several threads at once.
    canvas, lm_ref = facegen.base_face()
    found = []
    threads = [threading.Thread(target=lambda: found.append(align_frame(canvas, *first, 320)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [np.array_equal(f.landmarks, lm_ref.astype(np.int64)) for f in found] == [True] * 3
