"""``vrme ingest``: scan a dataset root and write manifest.parquet, labels.parquet, skipped.csv."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load

if TYPE_CHECKING:
    from vrme.ingest import IngestResult


def print_ingest_summary(result: "IngestResult") -> None:
    """Print the ingestion summary: videos, events per class, skipped items by reason."""
    from rich.console import Console
    from rich.table import Table

    s = result.summary()
    console = Console()
    t = Table(title=f"Ingested into {result.out_dir}", show_header=False)
    t.add_row("videos", str(s["videos"]))
    t.add_row("subjects", str(s["subjects"]))
    t.add_row("frames", f"{s['frames']:,}")
    for emotion, n in s["micro_by_emotion"].items():
        t.add_row(f"micro-expressions: {emotion}", str(n))
    t.add_row("macro-expressions", str(s["macro"]))
    console.print(t)
    if s["skipped_by_reason"]:
        sk = Table(title=f"Skipped or noted ({result.files.get('skipped', 'skipped.csv')})")
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
        and skipped.csv (under <out>/ingest/), and print a summary."""
        from vrme.ingest import ingest
        from vrme.io import clean_work_folder

        cfg = load(config, set_, root, out, can_generate=False)
        clean_work_folder(cfg.out_dir)
        print_ingest_summary(ingest(cfg))
