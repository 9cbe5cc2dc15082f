"""The synthetic dataset generator: layouts, spreadsheets, determinism, faces and motion."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import dlib
import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from vrme.config import DEFAULT_EMOTION_MAPS, ConfigError, config_from_mapping, load_config
from vrme.data.layouts.casme3 import HEADER as CASME3_HEADER
from vrme.data.layouts.samm_lv import SAMM_FACS_HEADER, SAMM_RELEASE_HEADER
from vrme.schema import read_labels, read_manifest
from vrme.synth.face import AU_LANDMARKS, ME_ACTIONS, astronaut_face, build_subject, predictor_path
from vrme.synth.generate import generate_dataset
from vrme.synth.render import _render_frames
from vrme.synth.schedule import _Event, _profile, _schedule, _Timeline, _timeline
from vrme.synth.spec import SynthError, SynthSpec, spec_from_config
from vrme.synth.video import render_video_file

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE_LABELS = Path(__file__).parent / "fixtures" / "labels"
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=5, poly_n=7, poly_sigma=1.5,
                 flags=0)

CASME3_SPEC = SynthSpec(layout="casme3", subjects=2, videos=1, seconds=4, fps=30, width=400,
                        height=300, mes_per_video=1, macros_per_video=1, seed=11, workers=1)
SAMM_SPEC = SynthSpec(layout="samm-lv", subjects=2, videos=1, seconds=3, fps=50, width=320,
                      height=240, mes_per_video=1, macros_per_video=1, seed=5, workers=1)
TINY = dict(width=160, height=120, seconds=2, fps=30, mes_per_video=1, macros_per_video=0,
            workers=1)


@pytest.fixture(scope="module")
def source():
    return astronaut_face()


@pytest.fixture(scope="module")
def dlib_models():
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


@pytest.fixture(scope="module")
def casme3(tmp_path_factory, source):
    return generate_dataset(CASME3_SPEC, tmp_path_factory.mktemp("casme3"), progress=False,
                            source=source)


@pytest.fixture(scope="module")
def samm(tmp_path_factory, source):
    return generate_dataset(SAMM_SPEC, tmp_path_factory.mktemp("samm"), progress=False,
                            source=source)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def sheet_cells(path: Path, last_row: int) -> tuple[list[str], dict[str, object], list[str]]:
    """(sheet names, {cell: value} of rows 1..last_row, merged ranges)."""
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    cells = {c.coordinate: c.value for row in ws.iter_rows(min_row=1, max_row=last_row)
             for c in row if c.value is not None}
    return wb.sheetnames, cells, sorted(str(r) for r in ws.merged_cells.ranges)


# -- layout and names -------------------------------------------------------------------------

def test_casme3_layout(casme3):
    root = casme3.out_dir
    n = CASME3_SPEC.frames_per_video
    assert n == 120
    assert sorted(p.name for p in (root / "data").iterdir()) == ["spNO.1", "spNO.2"]
    for subject in ("spNO.1", "spNO.2"):
        assert [p.name for p in (root / "data" / subject).iterdir()] == ["a"]
        names = {p.name for p in (root / "data" / subject / "a" / "color").iterdir()}
        assert names == {f"{i}.jpg" for i in range(n)}  # from 0, not zero-padded
    img = cv2.imread(str(root / "data/spNO.1/a/color/0.jpg"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (300, 400) and img.dtype == np.uint8  # 8-bit grayscale
    top = {p.name for p in root.iterdir()}
    assert {"data", "casme3_label.xlsx", "ground_truth.csv", "synth_spec.json",
            "synth_events.csv"} <= top
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert list(casme3.videos["path"]) == ["data/spNO.1/a", "data/spNO.2/a"]


def test_samm_layout(samm):
    root = samm.out_dir
    n = SAMM_SPEC.frames_per_video
    videos = sorted(p.name for p in (root / "SAMM_longvideos").iterdir())
    assert videos == ["001_1", "002_1"]
    for v in videos:
        names = {p.name for p in (root / "SAMM_longvideos" / v).iterdir()}
        assert names == {f"{v}_{i:04d}.jpg" for i in range(1, n + 1)}  # from 1, 4 digits
    assert {"SAMM_LongVideos_V3_Release.xlsx", "SAMM_Micro_FACS_Codes_v2.xlsx",
            "ground_truth.csv"} <= {p.name for p in root.iterdir()}


def test_casme3_video_names_continue_with_digits(tmp_path, source):
    spec = SynthSpec(layout="casme3", subjects=1, videos=28, **{**TINY, "seconds": 0.2,
                                                                "mes_per_video": 0})
    res = generate_dataset(spec, tmp_path, progress=False, source=source)
    assert list(res.videos["video"])[:3] == ["a", "b", "c"]
    assert list(res.videos["video"])[25:] == ["z", "a1", "b1"]


# -- spreadsheets -----------------------------------------------------------------------------

def test_casme3_spreadsheet(casme3):
    path = casme3.out_dir / "casme3_label.xlsx"
    names, cells, _ = sheet_cells(path, 1)
    assert names == ["label"]
    assert [cells[f"{c}1"] for c in "ABCDEFGH"] == CASME3_HEADER
    df = pd.read_excel(path, sheet_name="label", dtype={"AU": str})
    assert list(df.columns) == CASME3_HEADER
    micro = casme3.events[casme3.events["type"] == "micro"]
    assert len(df) == len(micro) == 2  # every row an ME; macro-expressions are not labelled
    assert (casme3.events["type"] == "macro").sum() == 2
    assert set(df["Subject"]) == {"spNO.1", "spNO.2"}
    assert set(df["Filename"]) == {"a"}
    assert set(df["emotion"]) <= set(DEFAULT_EMOTION_MAPS["casme3"])
    assert all(re.fullmatch(r"I|II|III|IV|V|VI|VII", c) for c in df["Objective class"])
    assert (df["Onset"] < df["Apex"]).all() and (df["Apex"] < df["Offset"]).all()
    assert df[["Onset", "Apex", "Offset"]].to_numpy().tolist() == \
        micro[["onset", "apex", "offset"]].to_numpy().tolist()
    # the frames named by the labels exist
    for r in df.itertuples():
        for f in (r.Onset, r.Offset):
            assert (casme3.out_dir / f"data/{r.Subject}/{r.Filename}/color/{f}.jpg").is_file()


@pytest.mark.parametrize("name,header_row,sheet", [
    ("SAMM_LongVideos_V3_Release.xlsx", 10, "Sheet1"),
    ("SAMM_Micro_FACS_Codes_v2.xlsx", 14, "MICRO_ONLY"),
])
def test_samm_preamble_and_header_match_the_release(samm, name, header_row, sheet):
    got_names, got, got_merged = sheet_cells(samm.out_dir / name, header_row)
    want_names, want, want_merged = sheet_cells(FIXTURE_LABELS / name, header_row)
    assert got_names == want_names == [sheet]
    assert got == want  # preamble text and header, cell by cell
    assert got_merged == want_merged
    ws_got = openpyxl.load_workbook(samm.out_dir / name).worksheets[0]
    ws_want = openpyxl.load_workbook(FIXTURE_LABELS / name).worksheets[0]
    for c in (c for c in ws_want[header_row] if c.value is not None):
        assert ws_got[c.coordinate].number_format == c.number_format


def test_samm_spreadsheet_values(samm):
    release = pd.read_excel(samm.out_dir / "SAMM_LongVideos_V3_Release.xlsx", header=9,
                            dtype={"Subject": str, "Action Units": str})
    facs = pd.read_excel(samm.out_dir / "SAMM_Micro_FACS_Codes_v2.xlsx", header=13,
                         sheet_name="MICRO_ONLY", dtype={"Subject": str, "Action Units": str})
    assert list(release.columns) == SAMM_RELEASE_HEADER
    assert list(facs.columns) == SAMM_FACS_HEADER
    assert sorted(release["Type"]) == ["Macro", "Macro", "Micro - 1/2", "Micro - 1/2"]
    assert set(release["Subject"]) == {"001", "002"}
    assert all(re.fullmatch(r"00[12]_1_[12]", f) for f in release["Filename"])
    assert (release["Duration"] == release["Offset"] - release["Onset"]).all()
    # apex annotated by default (no -1), strictly inside the event
    assert (release["Apex"] > release["Onset"]).all()
    assert (release["Apex"] < release["Offset"]).all()
    assert (release["Onset"] >= 1).all() and (release["Offset"] <= SAMM_SPEC.frames_per_video).all()
    # the FACS file lists the MEs only, with the same numbers and an emotion
    micro = release[release["Type"] == "Micro - 1/2"]
    assert list(facs["Filename"]) == list(micro["Filename"])
    assert list(facs["Onset Frame"]) == list(micro["Onset"])
    assert set(facs["Micro"]) == {"Micro - 1/2"}
    assert {e.lower() for e in facs["Estimated Emotion"]} <= set(DEFAULT_EMOTION_MAPS["samm_lv"])
    # subject codes are text cells, as in the release
    ws = openpyxl.load_workbook(samm.out_dir / "SAMM_LongVideos_V3_Release.xlsx").active
    assert ws["A11"].value in ("001", "002") and ws["A11"].data_type == "s"
    assert ws["A11"].number_format == "@"


def test_samm_unannotated_apex_is_optional(tmp_path, source):
    spec = SynthSpec(layout="samm-lv", subjects=1, videos=1, samm_unannotated_apex=True, **TINY)
    res = generate_dataset(spec, tmp_path, progress=False, source=source)
    release = pd.read_excel(tmp_path / "SAMM_LongVideos_V3_Release.xlsx", header=9)
    facs = pd.read_excel(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", header=13)
    assert list(release["Apex"]) == [-1] and list(facs["Apex Frame"]) == [-1]
    assert (res.events["apex"] > 0).all()  # the true apex is still recorded
    assert len(pd.read_csv(res.ground_truth)) == 1


def _gt_from_casme3(path: Path) -> pd.DataFrame:
    df = pd.read_excel(path, sheet_name="label", dtype={"Subject": str, "Filename": str})
    emap = DEFAULT_EMOTION_MAPS["casme3"]
    return pd.DataFrame({
        "subject": [s.rsplit(".", 1)[-1] for s in df["Subject"]], "video": df["Filename"],
        "onset": df["Onset"], "offset": df["Offset"],
        "emotion": [emap[e.lower()] for e in df["emotion"]],
    })


def _gt_from_samm(root: Path) -> pd.DataFrame:
    rel = pd.read_excel(root / "SAMM_LongVideos_V3_Release.xlsx", header=9,
                        dtype={"Subject": str})
    facs = pd.read_excel(root / "SAMM_Micro_FACS_Codes_v2.xlsx", header=13,
                         dtype={"Subject": str})
    rel = rel[rel["Type"].str.startswith("Micro")]
    emo = dict(zip(facs["Filename"], facs["Estimated Emotion"], strict=True))
    emap = DEFAULT_EMOTION_MAPS["samm_lv"]
    return pd.DataFrame({
        "subject": list(rel["Subject"]), "video": [f.rsplit("_", 1)[0] for f in rel["Filename"]],
        "onset": list(rel["Onset"]), "offset": list(rel["Offset"]),
        "emotion": [emap[emo[f].lower()] for f in rel["Filename"]],
    })


def test_ground_truth_matches_spreadsheets(casme3, samm):
    for res, expected in ((casme3, _gt_from_casme3(casme3.out_dir / "casme3_label.xlsx")),
                          (samm, _gt_from_samm(samm.out_dir))):
        gt = pd.read_csv(res.ground_truth, dtype={"subject": str, "video": str})
        assert list(gt.columns) == ["subject", "video", "onset", "offset", "emotion"]
        pd.testing.assert_frame_equal(gt, expected.reset_index(drop=True), check_dtype=False)
        assert set(gt["emotion"]) <= {"negative", "positive", "surprise", "others"}
    assert set(pd.read_csv(samm.ground_truth, dtype=str)["subject"]) == {"001", "002"}
    assert set(pd.read_csv(casme3.ground_truth, dtype=str)["subject"]) == {"1", "2"}


def test_ingest_reads_the_synthetic_layouts(casme3, samm, tmp_path):
    """vrme's own ingestion reads both layouts back with nothing skipped."""
    from vrme.data.ingest import ingest

    for res, layout in ((casme3, "casme3"), (samm, "samm_lv")):
        cfg = config_from_mapping({
            "dataset": {"name": layout, "layout": layout, "root": str(res.out_dir),
                        "fps": res.spec.fps, "frame_skip": 1},
            "features": {"k": 10}, "run": {"out": str(tmp_path / layout)},
        })
        out = ingest(cfg)
        assert len(out.skipped) == 0, out.skipped.to_string()
        labels = read_labels(out.files["labels"])
        want = res.events if layout == "samm_lv" else res.events[res.events["type"] == "micro"]
        got = labels[["subject", "video", "onset", "apex", "offset", "type"]]
        expected = want[["subject", "video", "onset", "apex", "offset", "type"]]
        assert got.astype(str).values.tolist() == expected.astype(str).values.tolist()
        micro = labels["type"] == "micro"
        assert list(labels.loc[micro, "emotion"]) == list(want.loc[want["type"] == "micro",
                                                                   "emotion"])
        manifest = read_manifest(out.files["manifest"])
        assert set(manifest["n_frames"]) == {res.spec.frames_per_video}
        assert set(manifest["first_frame"]) == {res.spec.first_frame}


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs(tmp_path, source):
    spec = SynthSpec(layout="samm-lv", subjects=1, videos=2, seed=3, **TINY)
    a = generate_dataset(spec, tmp_path / "a", progress=False, source=source)
    b = generate_dataset(spec, tmp_path / "b", progress=False, source=source)
    files_a, files_b = all_files(a.out_dir), all_files(b.out_dir)
    assert files_a.keys() == files_b.keys() and len(files_a) > 2 * 60
    assert files_a == files_b  # frames, spreadsheets, csv and json byte for byte
    other = generate_dataset(SynthSpec(layout="samm-lv", subjects=1, videos=2, seed=4, **TINY),
                             tmp_path / "c", progress=False, source=source)
    files_c = all_files(other.out_dir)
    assert files_c.keys() == files_a.keys()
    differing = [k for k in files_a if files_a[k] != files_c[k]]
    assert len(differing) > 0.9 * len(files_a)
    assert files_c["SAMM_LongVideos_V3_Release.xlsx"] != files_a["SAMM_LongVideos_V3_Release.xlsx"]


def test_one_video_regenerates_alone(tmp_path, source):
    """A video depends only on (seed, subject, video), not on how many others there are."""
    big = SynthSpec(layout="casme3", subjects=2, videos=2, seed=9, **TINY)
    small = SynthSpec(layout="casme3", subjects=1, videos=1, seed=9, **TINY)
    generate_dataset(big, tmp_path / "big", progress=False, source=source)
    generate_dataset(small, tmp_path / "small", progress=False, source=source)
    assert all_files(tmp_path / "big/data/spNO.1/a") == all_files(tmp_path / "small/data/spNO.1/a")
    assert all_files(tmp_path / "big/data/spNO.1/b") != all_files(tmp_path / "big/data/spNO.1/a")


@pytest.mark.slow
def test_parallel_workers_give_identical_files(tmp_path, source):
    kw = {**TINY, "workers": None}
    serial = SynthSpec(layout="casme3", subjects=2, videos=1, seed=2, **{**kw, "workers": 1})
    parallel = SynthSpec(layout="casme3", subjects=2, videos=1, seed=2, **{**kw, "workers": 2})
    generate_dataset(serial, tmp_path / "s", progress=False, source=source)
    generate_dataset(parallel, tmp_path / "p", progress=False, source=source)
    assert all_files(tmp_path / "s") == all_files(tmp_path / "p")


# -- faces and motion -------------------------------------------------------------------------

def test_dlib_finds_the_face_in_every_subject(casme3, source, dlib_models):
    detector, predictor = dlib_models
    for subject in (1, 2):
        folder = casme3.out_dir / f"data/spNO.{subject}/a/color"
        expected = build_subject(CASME3_SPEC, subject, source).landmarks
        iod = np.linalg.norm(expected[36:42].mean(0) - expected[42:48].mean(0))
        for n in range(0, CASME3_SPEC.frames_per_video, 8):
            img = cv2.imread(str(folder / f"{n}.jpg"), cv2.IMREAD_GRAYSCALE)
            faces = detector(img, 0)
            assert len(faces) == 1, f"spNO.{subject} frame {n}: {len(faces)} faces"
        neutral = cv2.imread(str(folder / "0.jpg"), cv2.IMREAD_GRAYSCALE)
        shape = predictor(neutral, detector(neutral, 0)[0])
        assert shape.num_parts == 68
        found = np.array([[p.x, p.y] for p in shape.parts()], dtype=float)
        # the warps are driven by landmarks where dlib sees them (head drift: a few px)
        assert np.median(np.linalg.norm(found - expected, axis=1)) < 0.1 * iod
        face_h = found[:, 1].max() - found[:, 1].min()
        assert 0.2 * CASME3_SPEC.height < face_h < 0.5 * CASME3_SPEC.height


def _measure(neutral: np.ndarray, apex: np.ndarray, action: str, detector, predictor):
    """(99th percentile of the flow magnitude in the action's region minus the face's median
    flow, mean |apex - neutral| inside the region, the same outside it within the face)."""
    face = detector(neutral, 0)[0]
    lm = np.array([[p.x, p.y] for p in predictor(neutral, face).parts()])
    flow = cv2.calcOpticalFlowFarneback(neutral, apex, None, **FARNEBACK)
    pts = lm[list(AU_LANDMARKS[action])]
    (x0, y0), (x1, y1) = pts.min(0) - 15, pts.max(0) + 15
    region = np.zeros(neutral.shape, bool)
    region[max(0, y0):y1, max(0, x0):x1] = True
    inface = np.zeros(neutral.shape, bool)
    inface[face.top():face.bottom(), face.left():face.right()] = True
    rest = inface & ~region
    flow = flow - np.median(flow[rest], axis=0)
    mag = np.hypot(flow[..., 0], flow[..., 1])
    diff = np.abs(apex.astype(float) - neutral.astype(float))
    return np.percentile(mag[region], 99), diff[region].mean(), diff[rest].mean()


def test_micro_expression_motion_in_rendered_frames(casme3, dlib_models):
    detector, predictor = dlib_models
    micro = casme3.events[casme3.events["type"] == "micro"]
    assert len(micro) == 2
    for ev in micro.itertuples():
        folder = casme3.out_dir / f"data/{ev.subject_dir}/{ev.video}/color"
        neutral = cv2.imread(str(folder / f"{ev.onset}.jpg"), cv2.IMREAD_GRAYSCALE)
        apex = cv2.imread(str(folder / f"{ev.apex}.jpg"), cv2.IMREAD_GRAYSCALE)
        p99, inside, outside = _measure(neutral, apex, ev.action, detector, predictor)
        assert 1.0 <= p99 <= 2.5, (ev.action, p99)
        assert 0.6 * ev.amplitude_px <= p99 <= 1.15 * ev.amplitude_px
        assert inside > 1.3 * outside, (ev.action, inside, outside)


@pytest.mark.parametrize("action", ["brow_raise", "brow_lower", "lip_corner_pull",
                                    "nose_wrinkle", "lip_press", "eye_squint"])
def test_every_action_moves_its_region(action, source, dlib_models):
    """Each AU warp at 2 px apex: Farneback sees 1-2.5 px in its region and little elsewhere."""
    detector, predictor = dlib_models
    spec = SynthSpec(layout="casme3", subjects=1, videos=1, seconds=0.4, fps=30, width=400,
                     height=300, seed=1, head_motion=0.0)
    subject = build_subject(spec, 1, source)
    n = spec.frames_per_video
    ev = _Event(type="micro", action=action, emotion="others", emotion_raw="others",
                amplitude=2.0, onset=1, apex=6, offset=n - 1)
    amps = {a: np.zeros(n, np.float32) for a in [*subject.fields, "blink"]}
    amps[action][ev.onset: ev.offset + 1] = _profile(ev)
    zeros = np.zeros(n)
    tl = _Timeline(n=n, events=[ev], blinks=[], jerks=[], amps=amps, tx=zeros, ty=zeros,
                   theta=zeros, gain=np.ones(n))
    frames = list(_render_frames(spec, subject, tl, np.random.default_rng(0)))
    p99, inside, outside = _measure(frames[1], frames[6], action, detector, predictor)
    assert 1.0 <= p99 <= 2.5, p99
    assert inside > 1.5 * outside, (inside, outside)


def test_schedule_keeps_events_apart(source):
    for fps, seed in ((30.0, 0), (30.0, 1), (200.0, 2)):
        spec = SynthSpec(layout="casme3", subjects=1, videos=1, seconds=60, fps=fps,
                         mes_per_video=8, macros_per_video=3, seed=seed, width=320, height=240)
        subject = build_subject(spec, 1, source)
        tl = _timeline(spec, subject, 1)
        evs = sorted(tl.events, key=lambda e: e.onset)
        micro = [e for e in evs if e.type == "micro"]
        macro = [e for e in evs if e.type == "macro"]
        assert len(micro) == 8 and len(macro) == 3
        for e in micro:
            assert round(0.2 * fps) <= e.offset - e.onset + 1 <= round(0.5 * fps)
            assert 1.3 <= e.amplitude <= 2.4
            assert e.onset < e.apex < e.offset
        for e in macro:
            assert round(0.5 * fps) <= e.offset - e.onset + 1 <= round(4 * fps)
            assert 3.5 <= e.amplitude <= 8.0
        for a, b in zip(evs, evs[1:]):
            assert b.onset - a.offset - 1 >= fps  # >= 1 s apart
        assert evs[0].onset >= 0.5 * fps and evs[-1].offset <= tl.n - 1 - 0.5 * fps
        assert {e.emotion for e in micro} == set(ME_ACTIONS)  # every class appears
        assert tl.blinks and tl.jerks
        for s, e in tl.blinks + [(s, e) for s, e, _ in tl.jerks]:
            for m in micro:
                assert e < m.onset or s > m.offset, "distractor overlaps an ME"
        # amplitudes: zero outside events, apex value at the apex
        for e in evs:
            assert tl.amps[e.action][e.apex] == pytest.approx(e.amplitude, rel=1e-5)
            assert tl.amps[e.action][e.onset] == 0 and tl.amps[e.action][e.offset] == 0


def test_short_video_leaves_events_out_with_a_warning(caplog):
    spec = SynthSpec(layout="casme3", seconds=2.0, fps=30, mes_per_video=4, macros_per_video=1)
    with caplog.at_level("WARNING", logger="vrme.synth.generate"):
        events = _schedule(np.random.default_rng(0), spec, spec.frames_per_video)
    assert 0 < len(events) < 5 and all(e.type == "micro" for e in events)
    assert "holds only" in caplog.text


# -- video files, config, CLI -----------------------------------------------------------------

def test_render_video_file_matches_the_dataset(casme3, tmp_path, source):
    path = tmp_path / "clip.avi"
    events = render_video_file(CASME3_SPEC, path, subject=2, video=1, source=source)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert len(frames) == CASME3_SPEC.frames_per_video
    same = casme3.events[casme3.events["subject"] == "2"]
    cols = ["onset", "apex", "offset", "type", "emotion", "au"]
    assert events[cols].values.tolist() == same[cols].values.tolist()
    assert set(events["video"]) == {"clip"}
    jpg = cv2.imread(str(casme3.out_dir / "data/spNO.2/a/color/30.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(frames[30].astype(float) - jpg).mean() < 4
    with pytest.raises(SynthError, match=".avi or .mp4"):
        render_video_file(CASME3_SPEC, tmp_path / "clip.mkv", source=source)


def test_spec_from_config():
    cfg = load_config(PROJECT / "configs" / "demo.yaml")
    spec = spec_from_config(cfg)
    assert (spec.layout, spec.subjects, spec.videos, spec.seconds, spec.fps, spec.seed) == \
        ("casme3", 4, 2, 20, 30, 7)
    assert (spec.width, spec.height, spec.mes_per_video, spec.macros_per_video) == (640, 480, 4, 1)
    raw = {"dataset": {"name": "s", "layout": "samm_lv", "fps": 200, "frame_skip": 7},
           "synth": {"subjects": 2, "fps": 200}, "features": {"k": 30}}
    spec = spec_from_config(config_from_mapping(raw))
    assert spec.layout == "samm-lv" and spec.subjects == 2 and spec.fps == 200
    raw["dataset"]["layout"] = "megc"
    with pytest.raises(ConfigError, match="megc"):
        spec_from_config(config_from_mapping(raw))


def test_invalid_specs_are_refused():
    with pytest.raises(SynthError, match="layout"):
        SynthSpec(layout="casme9")
    with pytest.raises(SynthError, match="subjects"):
        SynthSpec(subjects=0)
    assert SynthSpec(layout="samm-lv").fps == 200 and SynthSpec().fps == 30
    assert SynthSpec(layout="samm_lv").layout == "samm-lv"


@pytest.mark.slow
def test_cli_synth(tmp_path):
    out = tmp_path / "ds"
    args = ["synth", "--layout", "casme3", "--out", str(out), "--subjects", "1", "--videos", "1",
            "--seconds", "2", "--seed", "3", "--width", "160", "--height", "120", "--mes", "1",
            "--macros", "0"]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "micro-expressions" in result.output and "seconds taken" in result.output
    assert len(list((out / "data/spNO.1/a/color").glob("*.jpg"))) == 60
    assert len(pd.read_csv(out / "ground_truth.csv")) == 1
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "is not empty" in " ".join(again.output.split())
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0
