"""The event schedule of one video: micro- and macro-expressions, blinks, head drift and jerks,
flicker, placed under the spacing rules of the generator, as per-frame amplitudes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vrme.data import layouts as layouts
from vrme.synth.face import _ACTION_AU, _ACTION_OBJECTIVE, ME_ACTIONS, SynthSubject, _video_seed
from vrme.synth.spec import SynthSpec

log = logging.getLogger(__name__)


@dataclass
class _Event:
    type: str  # micro | macro
    action: str
    emotion: str | None
    emotion_raw: str
    amplitude: float
    onset: int  # positions (0-based)
    apex: int
    offset: int


@dataclass
class _Timeline:
    n: int
    events: list[_Event]
    blinks: list[tuple[int, int]]
    jerks: list[tuple[int, int, float]]
    amps: dict[str, np.ndarray]  # action -> amplitude (px) per position
    tx: np.ndarray
    ty: np.ndarray
    theta: np.ndarray  # radians
    gain: np.ndarray


def _raised_cosine(n_up: int) -> np.ndarray:
    """n_up + 1 samples from 0 to 1 along a raised cosine."""
    if n_up <= 0:
        return np.ones(1)
    return 0.5 * (1 - np.cos(np.pi * np.arange(n_up + 1) / n_up))


def _schedule(rng: np.random.Generator, spec: SynthSpec, n: int) -> list[_Event]:
    """Place the MEs and macro-expressions of one video (positions), >= 1 s apart."""
    fps = float(spec.fps or 0)
    gap = max(2, int(math.ceil(fps)))
    margin = max(1, int(math.ceil(0.5 * fps)))
    n_me, n_macro = spec.mes_per_video, spec.macros_per_video
    emotions = list(ME_ACTIONS)
    start = int(rng.integers(len(emotions)))
    me_emotions = [emotions[(start + i) % len(emotions)] for i in range(n_me)]
    me_lengths = [max(3, int(round(rng.uniform(0.2, 0.5) * fps))) for _ in range(n_me)]
    macro_lengths = [max(4, int(round(rng.uniform(0.5, 4.0) * fps))) for _ in range(n_macro)]

    def needed(lengths: list[int]) -> int:
        return 2 * margin + sum(lengths) + gap * max(0, len(lengths) - 1)

    dropped_macro = dropped_me = 0
    min_macro = max(4, int(round(0.5 * fps)))
    while macro_lengths and needed(me_lengths + macro_lengths) > n:
        # Shorten the longest macro-expression first (not below 0.5 s), then drop one.
        j = int(np.argmax(macro_lengths))
        excess = needed(me_lengths + macro_lengths) - n
        if macro_lengths[j] > min_macro:
            macro_lengths[j] = max(min_macro, macro_lengths[j] - excess)
            continue
        macro_lengths.pop()
        dropped_macro += 1
    while me_lengths and needed(me_lengths) > n:
        me_lengths.pop()
        me_emotions.pop()
        dropped_me += 1
    if dropped_me or dropped_macro:
        log.warning("a %.1f s video holds only %d ME(s) and %d macro-expression(s) "
                    "(asked %d and %d): each needs its length plus 1 s of separation",
                    n / fps, len(me_lengths), len(macro_lengths), n_me, n_macro)

    kinds: list[tuple[str, int, str | None]] = [("micro", ln, e)
                                                for ln, e in zip(me_lengths, me_emotions,
                                                                 strict=True)]
    kinds += [("macro", ln, None) for ln in macro_lengths]
    order = rng.permutation(len(kinds))
    kinds = [kinds[i] for i in order]
    slack = n - needed([k[1] for k in kinds])
    parts = rng.dirichlet(np.ones(len(kinds) + 1)) * slack if kinds else np.zeros(1)
    extra = np.floor(parts).astype(int)

    raw_table = spec.rendering.raw_emotions
    events: list[_Event] = []
    pos = margin
    actions_all = [a for a in _ACTION_AU]
    for i, (kind, length, emotion) in enumerate(kinds):
        pos += int(extra[i]) + (gap if i else 0)
        onset, offset = pos, pos + length - 1
        if kind == "micro":
            assert emotion is not None
            action = str(rng.choice(ME_ACTIONS[emotion]))
            words, probs = raw_table[emotion]
            raw = str(rng.choice(words, p=probs))
            amplitude = float(rng.uniform(1.3, 2.4))
            apex = onset + int(round(rng.uniform(0.35, 0.6) * (length - 1)))
        else:
            action = str(rng.choice(actions_all))
            raw = ""
            amplitude = float(rng.uniform(3.5, 8.0))
            apex = onset + int(round(rng.uniform(0.15, 0.35) * (length - 1)))
        apex = min(max(apex, onset + 1), offset - 1)
        events.append(_Event(type=kind, action=action, emotion=emotion, emotion_raw=raw,
                             amplitude=amplitude, onset=onset, apex=apex, offset=offset))
        pos = offset + 1
    return events


def _profile(ev: _Event) -> np.ndarray:
    """Amplitude (px) at positions ev.onset..ev.offset: 0 at both ends, ``amplitude`` at the
    apex. MEs rise and fall along raised cosines; macro-expressions hold a plateau after the
    apex and fall over the last 15-30 % of their length."""
    rise = _raised_cosine(ev.apex - ev.onset)
    if ev.type == "micro":
        fall = _raised_cosine(ev.offset - ev.apex)[::-1]
        shape = np.concatenate([rise, fall[1:]])
    else:
        length = ev.offset - ev.onset + 1
        fall_len = max(1, int(round(0.22 * length)))
        fall_len = min(fall_len, ev.offset - ev.apex)
        hold = ev.offset - ev.apex - fall_len
        fall = _raised_cosine(fall_len)[::-1]
        shape = np.concatenate([rise, np.ones(hold), fall[1:]])
    return ev.amplitude * shape


def _busy(n: int, events: Sequence[_Event], pad: int) -> np.ndarray:
    """Positions within ``pad`` of an ME (where blinks and jerks are not placed)."""
    busy = np.zeros(n, bool)
    for ev in events:
        if ev.type == "micro":
            busy[max(0, ev.onset - pad): min(n, ev.offset + pad + 1)] = True
    return busy


def _place_free(rng: np.random.Generator, busy: np.ndarray, length: int,
                start_min: int) -> int | None:
    """A random start whose ``length`` positions are all free; marks them busy."""
    n = len(busy)
    for _ in range(50):
        if n - length <= start_min:
            return None
        s = int(rng.integers(start_min, n - length))
        if not busy[s: s + length].any():
            busy[s: s + length] = True
            return s
    return None


def _timeline(spec: SynthSpec, subject: SynthSubject, video: int) -> _Timeline:
    """Everything that happens in one video, drawn from the (seed, subject, video) stream."""
    fps = float(spec.fps or 0)
    n = spec.frames_per_video
    rng = np.random.default_rng(_video_seed(spec.seed, subject.index, video).spawn(1)[0])
    events = _schedule(rng, spec, n)
    amps = {name: np.zeros(n, np.float32) for name in [*subject.fields, "blink"]}
    for ev in events:
        amps[ev.action][ev.onset: ev.offset + 1] += _profile(ev).astype(np.float32)

    pad = max(1, int(round(0.25 * fps)))
    lead = int(round(0.5 * fps))
    busy = _busy(n, events, pad)
    # Blinks: 0.1-0.3 s, the lids close quickly and open more slowly.
    blinks: list[tuple[int, int]] = []
    n_blinks = int(rng.poisson(spec.blinks_per_minute * n / fps / 60.0))
    for _ in range(n_blinks):
        length = max(3, int(round(rng.uniform(0.1, 0.3) * fps)))
        s = _place_free(rng, busy, length, lead)
        if s is None:
            continue
        close = max(1, int(round(0.4 * (length - 1))))
        shape = np.concatenate([_raised_cosine(close),
                                _raised_cosine(length - 1 - close)[::-1][1:]])
        # amplitude of a blink = how far the lids close (1 = shut)
        amps["blink"][s: s + length] = (rng.uniform(0.85, 1.0) * shape).astype(np.float32)
        blinks.append((s, s + length - 1))

    # Head pose: slow drift (sum of low-frequency sinusoids) plus a few quick jerks.
    t = np.arange(n) / fps
    motion = spec.head_motion
    tx = np.zeros(n)
    ty = np.zeros(n)
    theta = np.zeros(n)
    for arr, amp_px in ((tx, 1.6), (ty, 1.0), (theta, math.radians(0.35))):
        for _ in range(3):
            f = rng.uniform(0.01, 0.08)
            arr += motion * rng.uniform(0.3, 1.0) * amp_px * np.sin(
                2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    jerks: list[tuple[int, int, float]] = []
    n_jerks = int(rng.poisson(n / fps / 7.0)) if motion > 0 else 0
    state = np.zeros(3)
    steps = []
    for _ in range(n_jerks):
        length = max(2, int(round(rng.uniform(0.06, 0.15) * fps)))
        s = _place_free(rng, busy, length, lead)
        if s is None:
            continue
        delta = np.array([rng.normal(0, 2.0), rng.normal(0, 1.2),
                          math.radians(rng.normal(0, 0.4))]) * motion
        steps.append((s, length, delta))
    for s, length, delta in sorted(steps, key=lambda x: x[0]):
        delta = delta - 0.5 * state  # mean-reverting, so the head does not wander off
        state = state + delta
        ramp = np.concatenate([_raised_cosine(length - 1), np.ones(n - s - length)])
        tx[s:] += delta[0] * ramp
        ty[s:] += delta[1] * ramp
        theta[s:] += delta[2] * ramp
        jerks.append((s, s + length - 1, float(np.hypot(delta[0], delta[1]))))
    gain = 1.0 + 0.015 * np.sin(2 * np.pi * rng.uniform(0.03, 0.2) * t + rng.uniform(0, 6.3))
    return _Timeline(n=n, events=events, blinks=sorted(blinks), jerks=sorted(jerks), amps=amps,
                     tx=tx, ty=ty, theta=theta, gain=gain)


def _event_rows(spec: SynthSpec, subject: SynthSubject, video: str, tl: _Timeline,
                first: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = []
    for k, ev in enumerate(sorted(tl.events, key=lambda e: e.onset), start=1):
        events.append(dict(
            subject=subject.fold, subject_dir=subject.subject_dir, video=video, event=k,
            onset=ev.onset + first, apex=ev.apex + first, offset=ev.offset + first,
            type=ev.type, emotion_raw=ev.emotion_raw, emotion=ev.emotion,
            au=_ACTION_AU[ev.action], action=ev.action,
            objective_class=_ACTION_OBJECTIVE[ev.action], amplitude_px=round(ev.amplitude, 4),
        ))
    distractors = [dict(subject=subject.fold, subject_dir=subject.subject_dir, video=video,
                        type="blink", onset=s + first, offset=e + first,
                        size=round(float(tl.amps["blink"][s:e + 1].max()), 3))
                   for s, e in tl.blinks]
    distractors += [dict(subject=subject.fold, subject_dir=subject.subject_dir, video=video,
                         type="jerk", onset=s + first, offset=e + first, size=round(size, 3))
                    for s, e, size in tl.jerks]
    return events, distractors
