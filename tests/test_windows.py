"""Windows, pseudo-labels and training-window selection (METHOD.md sections 2, 4, 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vrme.errors import DataError, LabelError
from vrme.features.windows import (
    NEUTRAL_CLASS,
    VideoRef,
    covered_frames,
    frame_pseudo_labels,
    frame_to_index,
    micro_events,
    n_windows_for,
    scan_video,
    select_training_windows,
    shuffle_events,
    video_events,
    window_targets,
)
from vrme.schema import VideoFeatures, write_video_features


def label_rows(rows):
    """Labels-table rows from (subject, video, onset, apex, offset, type, emotion)."""
    return pd.DataFrame([
        dict(dataset="t", subject=s, video=v, event=i, onset=on, apex=ap, offset=off, type=t,
             emotion_raw=e, emotion=e, source_file="labels.xlsx", source_row=i + 2)
        for i, (s, v, on, ap, off, t, e) in enumerate(rows)
    ]).astype({"apex": "Int64", "onset": "Int64", "offset": "Int64"})


def test_frame_to_index_uses_the_real_first_frame():
    # SAMM-like: first frame 1, every 7th kept. Frames 1..7 -> 0, 8..14 -> 1.
    assert list(frame_to_index([1, 7, 8, 14, 15], 1, 7)) == [0, 0, 1, 1, 2]
    # A video numbered from 0 with no skipping.
    assert list(frame_to_index([0, 5], 0, 1)) == [0, 5]
    # A video whose first frame is 100.
    assert list(frame_to_index([100, 130], 100, 1)) == [0, 30]


def test_window_counts():
    assert n_windows_for(100, 30) == 100 // 15 - 1 == 5
    assert covered_frames(5, 30) == 90
    assert n_windows_for(20, 30) == 0 and covered_frames(0, 30) == 0


def test_pseudo_labels_mark_frames_strictly_inside():
    labels = label_rows([
        ("1", "a", 11, 14, 16, "micro", "surprise"),   # indices 10..15 -> 11..14 labelled
        ("1", "a", 31, None, 34, "micro", "negative"),  # indices 30..33 -> 31..32
        ("1", "a", 41, 50, 80, "macro", None),          # macro: ignored
        ("1", "b", 5, 6, 9, "micro", "positive"),       # another video
    ])
    ev = video_events(labels, "1", "a", first_frame=1, frame_skip=1)
    assert list(ev["onset_index"]) == [10, 30] and list(ev["offset_index"]) == [15, 33]
    assert list(ev["apex_index"]) == [13, -1]
    spot, cls = frame_pseudo_labels(ev, 40)
    assert list(np.flatnonzero(spot)) == [11, 12, 13, 14, 31, 32]
    assert set(cls[11:15]) == {2} and set(cls[31:33]) == {0}
    assert (cls[spot == 0] == NEUTRAL_CLASS).all()


def test_pseudo_labels_with_skip_and_out_of_range_events():
    labels = label_rows([("1", "a", 1 + 7 * 10, None, 1 + 7 * 14, "micro", "others"),
                         ("1", "a", 1 + 7 * 38, None, 1 + 7 * 60, "micro", "positive")])
    ev = video_events(labels, "1", "a", first_frame=1, frame_skip=7)
    spot, cls = frame_pseudo_labels(ev, 40)
    assert list(np.flatnonzero(spot)) == [11, 12, 13, 39]  # second event clipped at the end
    assert cls[12] == 3 and cls[39] == 1


def test_window_targets_follow_the_window_layout():
    k, n = 6, 20
    spot = np.arange(n, dtype=np.float32)
    cls = np.arange(n) % 5
    n_w = n_windows_for(n, k)
    sw, cw = window_targets(spot, cls, n_w, k)
    assert sw.shape == (n_w, k) == cw.shape
    for w in range(n_w):
        assert list(sw[w]) == list(range(w * 3, w * 3 + k))
    with pytest.raises(ValueError):
        window_targets(spot[:5], cls[:5], n_w, k)


def test_micro_events_fix_offset_zero_and_reject_bad_rows():
    labels = label_rows([("1", "a", 10, 15, 0, "micro", "negative")])
    ev = micro_events(labels)
    assert int(ev["offset"].iloc[0]) == 15  # the apex stands in for an offset written as 0
    bad = label_rows([("1", "a", 10, None, 0, "micro", "negative")])
    with pytest.raises(LabelError, match="labels.xlsx row 2"):
        micro_events(bad)
    bad_emotion = label_rows([("1", "a", 10, None, 20, "micro", "happy")])
    with pytest.raises(LabelError, match="emotion 'happy'"):
        micro_events(bad_emotion)


def _ref(name: str, n_frames: int, k: int = 6) -> VideoRef:
    return VideoRef(subject=name, video="v", path=None, n_frames=n_frames,  # type: ignore[arg-type]
                    n_windows=n_windows_for(n_frames, k), first_frame=0, frame_skip=1, k=k,
                    meta={})


def _events(pairs, cls=0):
    return pd.DataFrame({"onset_index": [p[0] for p in pairs],
                         "offset_index": [p[1] for p in pairs],
                         "apex_index": [-1] * len(pairs), "class_id": [cls] * len(pairs)})


def test_selection_takes_every_me_window_and_a_seeded_sample():
    refs = [_ref("1", 120), _ref("2", 120)]
    events = {("1", "v"): _events([(20, 26)], cls=1), ("2", "v"): _events([(60, 64)], cls=2)}
    sel = select_training_windows(refs, events, ratio=2.0, seed=5)
    me = []
    for ref, ws in zip(refs, sel.windows):
        from vrme.features.windows import video_targets
        sw, _ = video_targets(ref, events[ref.key])
        me.append(set(np.flatnonzero(sw.sum(1) > 0)))
        assert me[-1] <= set(ws)  # every ME window is in
    n_me = sum(len(m) for m in me)
    assert sel.n_me == n_me and sel.n_free == int(n_me * 2.0)
    assert sum(len(w) for w in sel.windows) == n_me + sel.n_free
    assert sel.class_counts.sum() == (n_me + sel.n_free) * 6
    assert sel.class_counts[1] > 0 and sel.class_counts[2] > 0 and sel.class_counts[3] == 0
    again = select_training_windows(refs, events, ratio=2.0, seed=5)
    assert all((a == b).all() for a, b in zip(sel.windows, again.windows))
    other = select_training_windows(refs, events, ratio=2.0, seed=6)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(sel.windows, other.windows))


def test_selection_takes_all_free_windows_when_short():
    refs = [_ref("1", 30)]
    sel = select_training_windows(refs, {("1", "v"): _events([(10, 14)])}, ratio=100, seed=0)
    assert sel.n_free == sel.n_free_available
    assert len(sel.windows[0]) == refs[0].n_windows


def test_shuffle_events_keeps_length_and_stays_inside():
    ev = _events([(10, 22), (40, 45)])
    ev["subject"], ev["video"] = "1", "v"
    out = shuffle_events(ev, {("1", "v"): 60}, seed=1)
    assert list(out["offset_index"] - out["onset_index"]) == [12, 5]
    assert (out["onset_index"] >= 0).all() and (out["offset_index"] < 60).all()
    assert list(out["onset_index"]) != [10, 40]


def test_scan_video_checks_the_file_against_expectations(tmp_path):
    k, n = 6, 30
    nw = n_windows_for(n, k)
    feats = VideoFeatures(subject="1", video="v", values=np.zeros((nw, 36, k), np.float32),
                          start_index=np.arange(nw) * 3, start_frame=1 + np.arange(nw) * 3,
                          align=np.array(["detected"] * nw, dtype=object), n_frames=n,
                          first_frame=1, frame_skip=1)
    write_video_features(tmp_path / "1" / "v.parquet", feats)
    ref = scan_video(tmp_path, "1", "v", k=6, frame_skip=1, first_frame=1)
    assert (ref.n_windows, ref.n_frames, ref.first_frame) == (nw, n, 1)
    with pytest.raises(DataError, match="k is 6"):
        scan_video(tmp_path, "1", "v", k=8)
    with pytest.raises(DataError, match="first_frame is 1"):
        scan_video(tmp_path, "1", "v", first_frame=0)
    with pytest.raises(DataError, match="feature file missing"):
        scan_video(tmp_path, "1", "w")
