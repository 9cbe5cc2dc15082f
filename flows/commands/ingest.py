"""``vrme ingest``: scan a dataset root and write manifest.parquet, labels.parquet, skipped.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load


def print_ingest_summary(s: dict[str, Any], files: dict[str, str]) -> None:
    """Print the ingestion summary (``IngestResult.summary()``): videos, events per class,
    skipped items by reason; ``files``: where the tables were written."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    where = Path(files["manifest"]).parent if files.get("manifest") else "ingest/"
    t = Table(title=f"Ingested into {where}", show_header=False)
    t.add_row("videos", str(s["videos"]))
    t.add_row("subjects", str(s["subjects"]))
    t.add_row("frames", f"{s['frames']:,}")
    for emotion, n in s["micro_by_emotion"].items():
        t.add_row(f"micro-expressions: {emotion}", str(n))
    t.add_row("macro-expressions", str(s["macro"]))
    console.print(t)
    if s["skipped_by_reason"]:
        sk = Table(title=f"Skipped or noted ({files.get('skipped', 'skipped.csv')})")
        sk.add_column("kind: reason")
        sk.add_column("count", justify="right")
        for reason, n in s["skipped_by_reason"].items():
            sk.add_row(reason, str(n))
        console.print(sk)
    else:
        console.print("Nothing skipped.")


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    @friendly_errors
    def ingest_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                   set_: SetOpt = None) -> None:
        """Read a dataset's folders and label spreadsheets into manifest.parquet, labels.parquet
        and skipped.csv (under <out>/ingest/), and print a summary. Runs the vrme-ingest flow
        (a config's synthetic dataset is generated first, as `vrme run` does)."""
        from flows.commands._common import flow_parameters, run_config_flow

        cfg = load(config, set_, root, out)
        res = run_config_flow("vrme-ingest", cfg, flow_parameters(config, set_, root, out),
                              "ingest")
        rec = res.outcome.get("summary") or {}
        print_ingest_summary(rec.get("summary") or {}, rec.get("files") or {})
