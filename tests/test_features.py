"""Flow stage: real dlib, OpenCV Farneback and Parquet on generated face frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import facegen, videos_config
from vrme.errors import FrameError, UserError
from vrme.features.align import align_video, landmarks_path, read_landmarks
from vrme.features.flow import (
    FlowParams,
    extract_video_features,
    feature_path,
    run_features,
    window_features,
)
from vrme.features.rois import N_ROWS, ROI_NAMES, roi_layout, top_fraction_mean
from vrme.schema import features_schema, read_video_features


def _params(cfg):
    """The flow parameters of a config's align and features sections."""
    return FlowParams.from_sections(cfg.align, cfg.features)


K = 20
ME = (40, 52)  # eyebrow raise, frames (indices) 40..52, apex at 46
ROW = {name: i for i, name in enumerate(ROI_NAMES)}


def y_row(name: str) -> int:
    return 2 * ROW[name] + 1


@pytest.fixture(scope="module")
def me_video(tmp_path_factory):
    """A 120-frame video with one eyebrow raise, aligned and featurized once."""
    base = tmp_path_factory.mktemp("me")
    root, out = base / "data", base / "work"
    frames, info = facegen.render(120, me=ME, amplitude=2.5)
    row = facegen.write_video(root, "s1", "v1", frames, first=1)
    cfg = videos_config(root, out, k=K)
    statuses = run_features(cfg, [row], workers=1, progress=False)
    return cfg, row, statuses, info


def test_top_fraction_mean_matches_full_sort():
    rng = np.random.default_rng(0)
    for shape, frac in [((20, 20), 0.2), ((37, 51), 0.3), ((9, 13), 0.7), ((1, 1), 0.3)]:
        flow = rng.normal(size=(*shape, 2)).astype(np.float32)
        mag = np.hypot(flow[..., 0], flow[..., 1])
        n = mag.size
        skip = int(n * (1 - frac))
        order = np.argsort(mag.ravel())[skip:]
        expect = flow.reshape(-1, 2)[order].mean(axis=0)
        assert np.allclose(top_fraction_mean(flow, mag, frac), expect, atol=1e-6)
    assert top_fraction_mean(np.zeros((0, 5, 2), np.float32), np.zeros((0, 5)), 0.3) == (0, 0)
    # Ties at the threshold: exactly the count kept, small boxes and large.
    for shape in [(10, 10), (60, 60)]:
        flow = rng.normal(size=(*shape, 2)).astype(np.float32)
        mag = np.ones(shape, np.float32)
        keep = mag.size - int(mag.size * 0.7)
        got = top_fraction_mean(flow, mag, 0.3)
        idx = mag.ravel().argpartition(int(mag.size * 0.7))[int(mag.size * 0.7):]
        assert len(idx) == keep
        assert np.allclose(got, flow.reshape(-1, 2)[idx].mean(axis=0), atol=1e-6)


def test_roi_layout_boxes_follow_the_landmarks():
    _, lm = facegen.base_face()
    lay = roi_layout(np.round(lm * 3).astype(np.int64) - 200)
    assert len(lay.boxes) == len(ROI_NAMES) == N_ROWS // 2
    # Small eyebrow boxes are 20 x 20 and centred on their landmark within the region.
    rs, cs = lay.regions[1]
    b = lay.boxes[ROW["brow_left_19"]]
    assert b.rows.stop - b.rows.start == 20 and b.cols.stop - b.cols.start == 20
    assert [b.top_fraction for b in lay.boxes[4:8]] == [0.3] * 4
    assert lay.boxes[ROW["mouth_48"]].top_fraction == 0.2


def test_shapes_schema_and_metadata(me_video):
    cfg, row, statuses, _ = me_video
    (st,) = statuses
    assert st.status == "computed" and st.n_windows == 120 // (K // 2) - 1
    path = feature_path(cfg, "s1", "v1")
    assert Path(st.path) == path
    assert pq.read_schema(path).remove_metadata() == features_schema(N_ROWS * K)
    vf = read_video_features(path)
    assert vf.values.shape == (11, 36, K) and vf.values.dtype == np.float32
    assert vf.start_index.tolist() == list(range(0, 110, 10))
    assert vf.start_frame.tolist() == list(range(1, 111, 10))  # frames are numbered from 1
    assert (vf.align == "detected").all()
    assert np.all(vf.values[:, :, 0] == 0)
    assert np.isfinite(vf.values).all()
    meta = vf.meta
    assert meta["params"]["features"]["k"] == K and "workers" not in meta["params"]["features"]
    assert meta["fingerprint"] and meta["versions"]["opencv"] and meta["versions"]["dlib"]
    assert meta["counts"] == {"detected": 11, "reused": 0, "none": 0}
    assert meta["roi_names"] == list(ROI_NAMES)
    assert meta["n_bad_frames"] == 0


def test_me_moves_eyebrow_rois_only(me_video):
    cfg, _, _, info = me_video
    vf = read_video_features(feature_path(cfg, "s1", "v1"))
    v = vf.values
    apex = ME[0] + (ME[1] - ME[0]) // 2
    # Window 3 starts at 30 (< onset) and ends at 49; window 4 starts at onset 40.
    w = 3
    col = apex - vf.start_index[w]
    assert 0 < col < K
    brows = [y_row(n) for n in ROI_NAMES if n.startswith("brow")]
    others = [r for n in ROI_NAMES if n.startswith(("mouth", "nose")) for r in (2 * ROW[n],
                                                                            2 * ROW[n] + 1)]
    # Eyebrows move up (negative y on the crop, about 2.5 px x the crop's upscaling).
    assert (v[w, brows, col] < -2.0).all(), v[w, brows, col]
    assert np.abs(v[w, others, col]).max() < 0.6
    # The rise follows the ME's profile: larger at the apex than near the onset.
    on_col = ME[0] + 2 - vf.start_index[w]
    assert (v[w, brows, col] < v[w, brows, on_col]).all()
    # Windows that see no ME frame stay near zero.
    neutral = [i for i in range(v.shape[0])
               if vf.start_index[i] + K <= ME[0] or vf.start_index[i] > ME[1]]
    assert len(neutral) >= 6
    assert np.abs(v[neutral]).mean() < 0.25  # sensor noise of 1.5 grey levels
    assert np.abs(v[neutral]).max() < 1.5
    assert np.abs(v[w, brows, col]).min() > 10 * np.abs(v[neutral][:, brows]).mean()


def test_cache_hit_then_recompute_after_flow_parameter_change(me_video):
    cfg, row, _, _ = me_video
    path = feature_path(cfg, "s1", "v1")
    lm_path = landmarks_path(cfg, "s1", "v1")
    mtimes = path.stat().st_mtime_ns, lm_path.stat().st_mtime_ns
    (st,) = run_features(cfg, [row], workers=1, progress=False)
    assert st.status == "cached"
    assert (path.stat().st_mtime_ns, lm_path.stat().st_mtime_ns) == mtimes
    cfg2 = cfg.model_copy(deep=True)
    cfg2.features.farneback.winsize = 9
    (st2,) = run_features(cfg2, [row], workers=1, progress=False)
    assert st2.status == "computed" and Path(st2.path) != path
    # The landmarks were reused: detection did not run again.
    assert lm_path.stat().st_mtime_ns == mtimes[1]
    assert landmarks_path(cfg2, "s1", "v1") == lm_path
    a = read_video_features(path).values
    b = read_video_features(st2.path).values
    assert not np.allclose(a, b)
    # How many videos run side by side is not a parameter of the cache.
    cfg3 = cfg.model_copy(deep=True)
    cfg3.orchestration.max_workers = 2
    assert feature_path(cfg3, "s1", "v1") == path


def test_window_without_face_reuses_nearest_landmarks(tmp_path):
    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(60, blank={20})
    row = facegen.write_video(root, "s1", "v1", frames)
    cfg = videos_config(root, out, k=K)
    align_video(cfg, row)
    st = extract_video_features(cfg, row)
    assert st.counts == {"detected": 4, "reused": 1, "none": 0}
    vf = read_video_features(st.path)
    assert vf.align.tolist() == ["detected", "detected", "reused", "detected", "detected"]
    assert vf.meta["counts"]["reused"] == 1
    # The blank first frame gives large flow against the face, but finite numbers.
    assert np.isfinite(vf.values).all() and np.abs(vf.values[2]).max() > 0
    # zeros: the window is all zeros, flagged none.
    cfg0 = videos_config(root, out, k=K, missing_face="zeros")
    st0 = extract_video_features(cfg0, row)
    vf0 = read_video_features(st0.path)
    assert vf0.align.tolist()[2] == "none" and np.all(vf0.values[2] == 0)
    assert np.array_equal(vf0.values[[0, 1, 3, 4]], vf.values[[0, 1, 3, 4]])


def test_truncated_jpeg_fails_naming_the_file(tmp_path):
    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(40)
    row = facegen.write_video(root, "s1", "v1", frames)
    bad = root / "s1" / "v1" / "13.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    cfg = videos_config(root, out, k=K, bad_frame="fail")
    align_video(cfg, row)  # window starts 0, 10, 20 are readable
    with pytest.raises(FrameError, match=str(bad)):
        extract_video_features(cfg, row)
    # repeat_previous: the frame is replaced by frame 12 and reported.
    cfg2 = videos_config(root, out, k=K, bad_frame="repeat_previous")
    with pytest.raises(UserError, match="vrme align"):
        extract_video_features(cfg2, row)  # other landmarks parameters: align first
    (st,) = run_features(cfg2, [row], workers=1, progress=False)
    assert st.status == "computed" and st.bad_frames == [13]
    assert read_video_features(st.path).meta["bad_frames"] == [13]


def test_global_head_shift_is_realigned_and_subtracted():
    import cv2

    from vrme.config import AlignConfig
    from vrme.features.align import align_frame, load_models, predictor_file

    frames, _ = facegen.render(K, noise=0.5)
    shifted, _ = facegen.render(K, noise=0.5, shift=(3.0, -2.0), seed=1)
    # Upscaled 2x, the crop (about 224 px) is close to its 320 px size, as with real videos;
    # the box shift is applied in frame pixels but measured on the crop, like the reference.
    seq = [cv2.resize(f, None, fx=2, fy=2) for f in [frames[0]] + shifted[1:]]
    det, pred = load_models(str(predictor_file(AlignConfig())))
    fa = align_frame(seq[0], det, pred, 320)
    cfg = videos_config(Path("."), Path("."), k=K)
    v = window_features(seq, fa.crop_box, fa.crop_landmarks, _params(cfg))
    assert v.shape == (36, K)
    # The whole face moved 6 x 4 px: the box follows it and the ROIs stay still.
    assert np.abs(v[:, 1:]).mean() < 0.2
    cfg.features.realign = False
    v2 = window_features(seq, fa.crop_box, fa.crop_landmarks, _params(cfg))
    assert np.abs(v2[:, 1:]).mean() > 5 * np.abs(v[:, 1:]).mean()


@pytest.mark.slow
def test_parallel_chunks_match_one_process(me_video, tmp_path):
    cfg, row, _, _ = me_video
    serial = read_video_features(feature_path(cfg, "s1", "v1")).values
    cfg2 = cfg.model_copy(deep=True)
    cfg2.run.out = tmp_path / "work"
    (st,) = run_features(cfg2, [row], workers=2, progress=False)
    assert st.status == "computed"
    assert np.array_equal(read_video_features(st.path).values, serial)
    vl = read_landmarks(landmarks_path(cfg2, "s1", "v1"))
    assert vl.n_windows == serial.shape[0]


def test_video_file_source(tmp_path):
    import cv2

    root, out = tmp_path / "data", tmp_path / "work"
    frames, _ = facegen.render(40, me=(20, 30), amplitude=2.5)
    path = root / "s1" / "clip.avi"
    path.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0,
                             (facegen.WIDTH, facegen.HEIGHT), isColor=False)
    for f in frames:
        writer.write(f)
    writer.release()
    row = facegen.manifest_row("s1", "clip", "s1/clip.avi", 0, 40)
    row.update(source="video", name_suffix="", frame_numbering="video")
    cfg = videos_config(root, out, k=K)
    (st,) = run_features(cfg, [row], workers=2, progress=False)
    assert st.status == "computed" and st.n_windows == 3 and st.frames_read == 40
    v = read_video_features(st.path).values
    # Window 1 (frames 10..29) sees the eyebrow raise.
    assert v[1, [y_row("brow_left"), y_row("brow_right")]].min() < -2.0


# -- the fast Farneback path against OpenCV's ---------------------------------------------------


def _min_channel_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest correlation over the 36 channels of two (windows, 36, k) feature arrays."""
    x = a.transpose(1, 0, 2).reshape(N_ROWS, -1).astype(np.float64)
    y = b.transpose(1, 0, 2).reshape(N_ROWS, -1).astype(np.float64)
    return min(float(np.corrcoef(x[i], y[i])[0, 1]) for i in range(N_ROWS))


@pytest.mark.parametrize("kernel", ["c", "numba"])
def test_fast_farneback_equals_opencv_on_face_regions(kernel):
    import cv2

    from vrme import native
    from vrme.config import AlignConfig
    from vrme.features.align import align_frame, crop_face, load_models, predictor_file
    from vrme.features.farneback import Farneback

    if kernel == "c" and native.compiler() is None:
        pytest.skip("no C compiler on this machine")
    frames, _ = facegen.render(6, me=(1, 5), amplitude=2.5, shift=(0.0, 0.0))
    shifted, _ = facegen.render(3, noise=1.5, shift=(2.5, -1.5), seed=2)
    det, pred = load_models(str(predictor_file(AlignConfig())))
    fa = align_frame(frames[0], det, pred, 320)
    lay = roi_layout(fa.crop_landmarks)
    crops = [crop_face(f, fa.crop_box, 320) for f in frames + shifted]
    big = (slice(60, 250), slice(40, 290))  # a large area: 3 extra pyramid levels
    for params in [(0.5, 3, 15, 5, 7, 1.5), (0.5, 3, 14, 3, 5, 1.1), (0.6, 2, 9, 4, 7, 0.0)]:
        fb = Farneback(*params, kernel=kernel)
        assert fb.kernel == kernel
        for rs, cs in list(lay.regions) + [big]:
            a = np.ascontiguousarray(crops[0][rs, cs])
            prep = fb.prepare(a)
            for c in crops[1:]:
                b = np.ascontiguousarray(c[rs, cs])
                ref = cv2.calcOpticalFlowFarneback(a, b, None, *params, 0)
                got = fb.flow(prep, b).transpose(1, 2, 0)
                assert got.shape == ref.shape
                assert np.abs(got - ref).max() < 1e-3, (params, a.shape)
                assert np.abs(got - ref).mean() < 1e-4, (params, a.shape)
    with pytest.raises(ValueError, match="differs"):
        fb.flow(fb.prepare(crops[0][:20, :30]), crops[1][:21, :30])


def test_flow_kernels_fall_back_to_numba_without_a_compiler(monkeypatch):
    from vrme import native
    from vrme.features import _native
    from vrme.features.farneback import KERNEL_ENV, Farneback

    params = (0.5, 3, 15, 5, 7, 1.5)
    monkeypatch.setenv(KERNEL_ENV, "numba")
    assert Farneback(*params).kernel == "numba"
    monkeypatch.delenv(KERNEL_ENV)
    monkeypatch.setattr(native, "compiler", lambda: None)
    _native._library.cache_clear()
    try:
        assert Farneback(*params).kernel == "numba"
        with pytest.raises(RuntimeError, match="no C compiler"):
            Farneback(*params, kernel="c")
    finally:
        _native._library.cache_clear()
    monkeypatch.setenv(KERNEL_ENV, "gpu")
    with pytest.raises(ValueError, match="VRME_FLOW_KERNEL"):
        Farneback(*params)


def test_fast_and_opencv_paths_agree_on_a_generated_video(tmp_path):
    """The default flow (fast) against the reference-exact one (opencv): every channel
    correlates at 0.9999 or better, and the two are cached apart."""
    from vrme.synth.spec import SynthSpec
    from vrme.synth.video import render_video_file

    root, out = tmp_path / "data", tmp_path / "work"
    spec = SynthSpec(layout="casme3", subjects=1, videos=1, seconds=5, width=320, height=240,
                     mes_per_video=1, macros_per_video=1, seed=3, workers=1)
    render_video_file(spec, root / "s1" / "v1.avi")
    row = facegen.manifest_row("s1", "v1", "s1/v1.avi", 0, 150)
    row.update(source="video", name_suffix="", frame_numbering="video")
    fast = videos_config(root, out, k=K)
    exact = videos_config(root, out, k=K, flow_impl="opencv")
    assert fast.features.flow_impl == "fast"
    assert feature_path(fast, "s1", "v1") != feature_path(exact, "s1", "v1")
    align_video(fast, row)
    assert align_video(exact, row).status == "cached"  # the landmarks are shared
    a = read_video_features(extract_video_features(fast, row).path)
    b = read_video_features(extract_video_features(exact, row).path)
    assert a.meta["params"]["features"]["flow_impl"] == "fast"
    assert a.meta["flow_kernel"] in ("c", "numba") and b.meta["flow_kernel"] == "opencv"
    assert b.meta["params"]["features"]["flow_impl"] == "opencv"
    assert a.values.shape == b.values.shape == (14, N_ROWS, K)
    assert np.abs(b.values).max() > 1.0  # the video moves
    assert _min_channel_corr(a.values, b.values) >= 0.9999
    assert np.abs(a.values - b.values).mean() < 1e-4


def test_features_made_by_other_flow_kernels_are_computed_again(tmp_path, monkeypatch):
    """The fast path's C and numba kernels agree only to float rounding, so a feature file is
    reused only by a process running the kernels that made it (its ``flow_kernel``)."""
    from vrme.features.farneback import KERNEL_ENV, kernel_name

    if kernel_name() != "c":
        pytest.skip("the C kernels do not build here")
    frames, _ = facegen.render(60, me=(20, 32), amplitude=2.5)
    root, out = tmp_path / "data", tmp_path / "work"
    row = facegen.write_video(root, "s1", "v1", frames)
    cfg = videos_config(root, out, k=K)
    align_video(cfg, row)
    monkeypatch.setenv(KERNEL_ENV, "numba")
    first = extract_video_features(cfg, row)
    assert first.status == "computed"
    assert read_video_features(first.path).meta["flow_kernel"] == "numba"
    assert extract_video_features(cfg, row).status == "cached"  # the same kernels: reused
    monkeypatch.delenv(KERNEL_ENV)
    again = extract_video_features(cfg, row)
    assert again.status == "computed" and again.path == first.path
    assert read_video_features(again.path).meta["flow_kernel"] == "c"
    assert extract_video_features(cfg, row).status == "cached"


def test_missing_face_reference_starts_the_window_at_its_first_face(tmp_path):
    """missing_face: reference, on frames without a face at chosen places (real dlib): a
    window whose first frames show no face is compared with its first frame that has one; the
    columns up to that frame are zero; a window with no face at all is zeros."""
    from vrme.config import AlignConfig
    from vrme.data.frames import read_gray
    from vrme.features.align import align_frame, load_models, predictor_file

    root, out = tmp_path / "data", tmp_path / "work"
    # k = 20: windows start at 0, 10, 20, 30, 40, 50. Window 0 finds its face on frame 2,
    # window 2 on frame 23; frames 40..59 (all of window 4 and 5's frames up to 59) have none.
    blank = {0, 1, 20, 21, 22} | set(range(40, 70))
    frames, _ = facegen.render(70, me=(24, 36), amplitude=2.5, blank=blank)
    row = facegen.write_video(root, "s1", "v1", frames)
    cfg = videos_config(root, out, k=K, missing_face="reference")
    st_a = align_video(cfg, row)
    assert st_a.counts == {"detected": 2, "reused": 0, "none": 2, "late": 2}
    vl = read_landmarks(landmarks_path(cfg, "s1", "v1"))
    assert vl.status.tolist() == ["late", "detected", "late", "detected", "none", "none"]
    assert vl.face_offset.tolist() == [2, 0, 3, 0, 0, 0]
    # The landmarks of the other rules are elsewhere (they search the first frame only).
    reuse = videos_config(root, out, k=K)
    assert landmarks_path(reuse, "s1", "v1") != landmarks_path(cfg, "s1", "v1")
    st = extract_video_features(cfg, row)
    assert st.counts == st_a.counts
    vf = read_video_features(st.path)
    frames = [read_gray(root / "s1" / "v1" / f"{i}.jpg") for i in range(70)]  # as decoded
    det, pred = load_models(str(predictor_file(AlignConfig())))
    assert vf.align.tolist() == vl.status.tolist()
    v = vf.values
    assert np.all(v[4:] == 0)
    for w, off in ((0, 2), (2, 3)):
        start = 10 * w
        assert np.all(v[w][:, :off + 1] == 0)
        # Against the window computed from its face frame on: the same columns.
        expect = window_features(frames[start + off:start + K], vl.crop_box[w],
                                 vl.crop_landmarks[w], _params(cfg))
        np.testing.assert_array_equal(v[w][:, off + 1:], expect[:, 1:])
        assert np.abs(v[w][:, off + 1:]).max() > 0
        # The alignment is the face frame's own (detected there, not reused from elsewhere).
        fa = align_frame(frames[start + off], det, pred, 320)
        assert np.array_equal(vl.crop_box[w], fa.crop_box)
        assert np.array_equal(vl.crop_landmarks[w], fa.crop_landmarks)
    # window_features takes the offset itself.
    np.testing.assert_array_equal(
        window_features(frames[20:40], vl.crop_box[2], vl.crop_landmarks[2], _params(cfg),
                        offset=3),
        v[2])
    # The eyebrow raise (frames 24..36) shows in window 2 after its late start.
    apex = 30 - 20
    assert v[2][[y_row("brow_left"), y_row("brow_right")], apex].max() < -2.0
    # zeros: the windows whose first frame has no face are all zero, nothing is searched.
    cfg0 = videos_config(root, out, k=K, missing_face="zeros")
    align_video(cfg0, row)
    v0 = read_video_features(extract_video_features(cfg0, row).path).values
    assert np.all(v0[[0, 2, 4, 5]] == 0)
    np.testing.assert_array_equal(v0[[1, 3]], v[[1, 3]])
