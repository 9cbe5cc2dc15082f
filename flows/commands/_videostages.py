"""Shared code of ``vrme align`` and ``vrme features``: manifest loading and the summary."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from vrme.config import Config
    from vrme.videojobs import VideoStatus


def load_manifest(cfg: "Config") -> "pd.DataFrame":
    """``<out>/ingest/manifest.parquet``; a user error if ingestion has not run."""
    from vrme.errors import UserError
    from vrme.schema import read_manifest

    path = cfg.ingest_dir / "manifest.parquet"
    if not path.is_file():
        raise UserError(f"{path} not found: run `vrme ingest --config {cfg.source}` first")
    return read_manifest(path)


def summarize(statuses: list["VideoStatus"], seconds: float) -> dict[str, Any]:
    """Counts for the summary table: videos per status, frames computed, frames/s, windows
    per alignment flag, skipped videos with their reasons, replaced bad frames."""
    by = {s: [v for v in statuses if v.status == s] for s in ("computed", "cached", "skipped")}
    frames = sum(v.n_indices for v in by["computed"])
    flags: dict[str, int] = {}
    for v in statuses:
        for k, n in v.counts.items():
            flags[k] = flags.get(k, 0) + int(n)
    return {
        "computed": len(by["computed"]),
        "cached": len(by["cached"]),
        "skipped": len(by["skipped"]),
        "frames": frames,
        "fps": frames / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "windows": flags,
        "skipped_videos": [(v.subject, v.video, v.reason) for v in by["skipped"]],
        "bad_frames": sum(len(v.bad_frames) for v in statuses),
    }


def print_summary(title: str, statuses: list["VideoStatus"], seconds: float) -> dict[str, Any]:
    """Print the per-stage summary table and return its numbers."""
    from rich.console import Console
    from rich.table import Table

    s = summarize(statuses, seconds)
    console = Console()
    t = Table(title=title, show_header=False)
    t.add_row("videos computed", str(s["computed"]))
    t.add_row("videos cached", str(s["cached"]))
    t.add_row("videos skipped", str(s["skipped"]))
    t.add_row("frames computed (after skipping)", f"{s['frames']:,}")
    t.add_row("frames per second", f"{s['fps']:,.1f}")
    t.add_row("wall time", f"{s['seconds']:.1f} s")
    for flag in ("detected", "reused", "none"):
        if flag in s["windows"]:
            t.add_row(f"windows {flag}", f"{s['windows'][flag]:,}")
    if s["bad_frames"]:
        t.add_row("bad frames replaced (repeat_previous)", str(s["bad_frames"]))
    console.print(t)
    if s["skipped_videos"]:
        sk = Table(title="Skipped videos")
        for col in ("subject", "video", "reason"):
            sk.add_column(col)
        for row in s["skipped_videos"]:
            sk.add_row(*row)
        console.print(sk)
    return s


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(fn(*args, **kwargs), wall seconds)."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t
