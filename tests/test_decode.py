"""Interval decoding on hand-made score curves (METHOD.md section 8)."""

from __future__ import annotations

import numpy as np
import pytest

from vrme.config import DecodeConfig
from vrme.decode import (
    NEUTRAL_CLASS,
    Proposal,
    box_smooth,
    decode_scores,
    decode_video,
    extensible_interval,
    find_score_peaks,
    fixed_interval,
    frame_classes,
    interval_iou,
    majority_vote,
    peak_threshold,
    propose_intervals,
    stitch_windows,
    suppress,
)


def triangle(n: int, centre: int, half_width: int, height: float = 1.0) -> np.ndarray:
    """0 outside (centre - half_width, centre + half_width), linear up to ``height`` at centre."""
    i = np.arange(n)
    return height * np.clip(1 - np.abs(i - centre) / half_width, 0, None)


def logits_for(n: int, cls: int = 1) -> np.ndarray:
    z = np.zeros((n, 5))
    z[:, cls] = 2.0
    z[:, NEUTRAL_CLASS] = 5.0
    return z


# -- stitching and smoothing ----------------------------------------------------------------


def test_stitch_takes_first_window_whole_then_second_halves():
    n_w, k = 4, 6
    per_window = np.zeros((n_w, k, 2))
    for w in range(n_w):
        per_window[w, :, 0] = w
        per_window[w, :, 1] = np.arange(k)
    out = stitch_windows(per_window)
    assert out.shape == ((n_w + 1) * k // 2, 2)
    half = k // 2
    for f in range(len(out)):
        w = 0 if f < k else f // half - 1
        assert out[f, 0] == w
        assert out[f, 1] == f - w * half
        if w > 0:
            assert out[f, 1] >= half  # only second halves of later windows


def test_stitch_of_no_window_is_empty():
    assert stitch_windows(np.zeros((0, 8))).shape == (0,)


def test_box_smooth_is_a_same_length_moving_average():
    s = np.arange(20, dtype=float)
    out = box_smooth(s, 4)
    assert out.shape == s.shape
    assert out[10] == pytest.approx((8 + 9 + 10 + 11) / 4)
    # A box longer than the curve is capped, so the length is preserved.
    assert box_smooth(np.ones(5), 50).shape == (5,)


def test_threshold_and_peaks():
    s = np.zeros(60)
    s[20], s[40] = 1.0, 0.5
    thr = peak_threshold(s, 0.55)
    assert thr == pytest.approx(s.mean() + 0.55 * (1.0 - s.mean()))
    assert list(find_score_peaks(s, thr, 3)) == [20]
    assert list(find_score_peaks(s, 0.4, 3)) == [20, 40]
    assert list(find_score_peaks(s, 0.4, 25)) == [20]  # distance keeps the higher one


# -- interval selection ---------------------------------------------------------------------


def test_single_bump_gives_its_support_and_apex():
    # Non-zero on 44..56, apex 50: the core interval grows to the two zero frames on each side.
    s = triangle(100, 50, 7)
    cfg = DecodeConfig()
    props = propose_intervals(s, 5, cfg)
    assert [(p.onset, p.apex, p.offset) for p in props] == [(44, 50, 56)]


def test_single_bump_without_interval_strategy_is_peak_plus_minus_k_p():
    s = triangle(100, 50, 7)
    props = propose_intervals(s, 5, DecodeConfig(interval_strategy=0))
    assert len(props) == 1
    p = props[0]
    assert (p.offset - p.onset) == 10 and p.apex == p.peak and abs(p.peak - 50) <= 1
    assert (p.onset, p.offset) == (p.peak - 5, p.peak + 5)


def test_fixed_interval_is_clipped_to_the_video():
    assert fixed_interval(2, 5, 30) == Proposal(onset=0, apex=2, offset=7, peak=2)
    assert fixed_interval(28, 5, 30).offset == 29


def test_two_bumps_closer_than_k_p_give_one_interval():
    s = np.maximum(triangle(120, 50, 6), triangle(120, 53, 6))
    for strategy in (0, 1):
        props = propose_intervals(s, 5, DecodeConfig(interval_strategy=strategy))
        assert len(props) == 1, strategy
    p = propose_intervals(s, 5, DecodeConfig())[0]
    assert p.onset <= 45 and p.offset >= 58


def test_two_distant_bumps_give_two_intervals():
    s = triangle(150, 40, 6) + triangle(150, 100, 6, 0.9)
    props = propose_intervals(s, 5, DecodeConfig())
    assert [p.apex for p in props] == [40, 100]
    for p, (lo, hi) in zip(props, [(35, 45), (95, 105)]):  # non-zero supports
        assert lo - 1 <= p.onset <= lo and hi <= p.offset <= hi + 1


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_flat_curve_gives_no_interval(value):
    s = np.full(80, value)
    for strategy in (0, 1):
        assert propose_intervals(s, 5, DecodeConfig(interval_strategy=strategy)) == []
    iv = decode_scores(s, logits_for(80), 5, DecodeConfig())
    assert len(iv) == 0


def test_extension_walks_over_a_plateau_above_the_mean():
    # A peak on a long shoulder that stays above the video mean: the interval extends over it
    # and stops before the first two frames below the mean.
    s = np.zeros(200)
    s[80:121] = 0.4  # shoulder, frames 80..120
    s[95:106] = triangle(200, 100, 6)[95:106] + 0.4
    mu = s.mean()
    assert 0.4 > mu
    p = extensible_interval(s, 100, 5)
    assert (p.onset, p.apex, p.offset) == (80, 100, 120)


def test_extension_is_bounded_by_max_extension():
    # A shoulder above the mean on 100..200 around a bump at 150; k_p = 5.
    s = np.zeros(300)
    s[100:201] = 0.4
    s[145:156] += triangle(300, 150, 6)[145:156]
    # 11 * k_p = 55 frames reach the two zero frames beyond each end: the shoulder is taken.
    p = extensible_interval(s, 150, 5, max_extension=11)
    assert (p.onset, p.apex, p.offset) == (100, 150, 200)
    # 5 * k_p = 25 frames find no stop: each side keeps its core position (reference behaviour).
    q = extensible_interval(s, 150, 5, max_extension=5)
    assert (q.onset, q.apex, q.offset) == (145, 150, 155)


def test_onset_ignores_rises_below_mean_over_divisor():
    # A faint rise at 46..47 (below mu/1.5) before the real one at 48: the onset is the frame
    # before the real rise; with a divisor so large that the level is ~0, the faint rise counts.
    s = np.zeros(100)
    s[46:53] = [0.001, 0.002, 0.5, 0.8, 1.0, 0.8, 0.5]
    p = extensible_interval(s, 50, 5)
    assert (p.onset, p.apex, p.offset) == (47, 50, 53)
    q = extensible_interval(s, 50, 5, onset_divisor=1e9)
    assert (q.onset, q.apex, q.offset) == (45, 50, 53)


def test_iou_and_suppression():
    a = Proposal(10, 15, 20, 15)
    b = Proposal(12, 17, 22, 17)  # IoU 8/12, apex 2 away
    c = Proposal(21, 30, 40, 30)  # IoU 0 with a, apex 15 away
    d = Proposal(19, 24, 29, 24)  # IoU 1/19 with a but apex 9 away: kept with k_p 5
    assert interval_iou(a, b) == pytest.approx(8 / 12)
    assert interval_iou(a, Proposal(30, 35, 40, 35)) == 0
    kept = suppress([c, b, a, d], k_p=5)
    assert kept == [a, d]  # sorted by onset; b overlaps a, c's apex is within k_p of d's
    assert suppress([a, d], k_p=10) == [a]  # apexes 9 apart are not more than k_p = 10


# -- recognition ----------------------------------------------------------------------------


def test_frame_classes_under_each_synergy_strategy():
    z = np.array([
        [1.0, 0.5, 0.2, 0.1, 3.0],   # neutral strongest
        [-1.0, -2.0, -3.0, -0.5, 4.0],  # every emotion logit negative
    ])
    assert list(frame_classes(z, 0)) == [4, 4]
    assert list(frame_classes(z, 1)) == [0, 4]  # neutral logit set to 0
    assert list(frame_classes(z, 2)) == [0, 3]  # never neutral
    assert z[0, 4] == 3.0  # the input is not modified


def test_majority_vote_inside_only_ties_and_empty():
    c = np.array([2, 1, 1, 0, 0, 0, 3, 3])
    assert majority_vote(c, 0, 7) == 0  # frames 1..6: 1,1,0,0,0,3
    assert majority_vote(c, 2, 7) == 0  # frames 3..6: 0,0,0,3
    assert majority_vote(c, 5, 8) == 3  # frames 6..7
    assert majority_vote(np.array([2, 1, 3, 3, 1, 2]), 0, 5) == 1  # tie 1/3: first met wins
    assert majority_vote(c, 3, 4) == NEUTRAL_CLASS  # nothing strictly inside
    assert majority_vote(c, 3, 3) == NEUTRAL_CLASS


def test_decode_scores_votes_and_drops_neutral():
    s = triangle(100, 50, 7)
    z = logits_for(100, cls=2)
    iv = decode_scores(s, z, 5, DecodeConfig(synergy_strategy=1))
    assert list(iv["emotion"]) == ["surprise"]
    assert iv["score"].iloc[0] == pytest.approx(1.0)
    # Synergy 0: the neutral logit wins everywhere, the interval is dropped ...
    assert len(decode_scores(s, z, 5, DecodeConfig(synergy_strategy=0))) == 0
    # ... or kept as neutral on request.
    kept = decode_scores(s, z, 5, DecodeConfig(synergy_strategy=0, neutral_intervals="keep"))
    assert list(kept["emotion"]) == ["neutral"]


def test_decode_video_maps_back_to_original_frame_numbers():
    s = triangle(100, 50, 7)
    iv = decode_video(s, logits_for(100, 1), 5, DecodeConfig(), subject="7", video="v",
                      first_frame=101, frame_skip=7)
    row = iv.iloc[0]
    assert (row["onset"], row["apex"], row["offset"]) == (101 + 44 * 7, 101 + 50 * 7, 101 + 56 * 7)
    assert (row["subject"], row["video"], row["emotion"]) == ("7", "v", "positive")
    assert list(iv.columns) == ["subject", "video", "onset", "apex", "offset", "emotion", "score"]
