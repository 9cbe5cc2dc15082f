"""Shared code of ``vrme align`` and ``vrme features``: the summary of a stage's videos."""

from __future__ import annotations

from typing import Any


def summarize(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the summary table: videos per status, frames computed, frames/s (per video,
    summed), windows per alignment flag, skipped and failed videos with their reasons,
    replaced bad frames. ``statuses``: the stage's per-video records (VideoStatus fields)."""
    by = {s: [v for v in statuses if v.get("status") == s]
          for s in ("computed", "cached", "skipped", "failed", "interrupted")}
    frames = sum(int(v.get("n_indices") or 0) for v in by["computed"])
    seconds = sum(float(v.get("seconds") or 0.0) for v in by["computed"])
    flags: dict[str, int] = {}
    for v in statuses:
        for k, n in (v.get("counts") or {}).items():
            flags[k] = flags.get(k, 0) + int(n)
    return {
        **{k: len(vs) for k, vs in by.items()},
        "frames": frames,
        "fps": frames / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "windows": flags,
        "skipped_videos": [(v["subject"], v["video"], str(v.get("reason", "")))
                           for s in ("skipped", "failed") for v in by[s]],
        "bad_frames": sum(len(v.get("bad_frames") or []) for v in statuses),
    }


def print_summary(title: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the per-stage summary table and return its numbers."""
    from rich.console import Console
    from rich.table import Table

    s = summarize(statuses)
    console = Console()
    t = Table(title=title, show_header=False)
    t.add_row("videos computed", str(s["computed"]))
    t.add_row("videos cached", str(s["cached"]))
    t.add_row("videos skipped", str(s["skipped"]))
    if s["failed"]:
        t.add_row("videos failed", str(s["failed"]))
    t.add_row("frames computed (after skipping)", f"{s['frames']:,}")
    t.add_row("frames per second (per video)", f"{s['fps']:,.1f}")
    t.add_row("compute time (videos summed)", f"{s['seconds']:.1f} s")
    for flag in ("detected", "late", "reused", "none"):
        if flag in s["windows"]:
            t.add_row(f"windows {flag}", f"{s['windows'][flag]:,}")
    if s["bad_frames"]:
        t.add_row("bad frames replaced (repeat_previous)", str(s["bad_frames"]))
    console.print(t)
    if s["skipped_videos"]:
        sk = Table(title="Skipped or failed videos")
        for col in ("subject", "video", "reason"):
            sk.add_column(col)
        for row in s["skipped_videos"]:
            sk.add_row(*row)
        console.print(sk)
    return s
