"""``vrme sweep``: ablations as one parent run of benchmark runs, and their comparison."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load


def _print(res: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = res.outcome.get("summary") or {}
    rows = summary.get("rows") or []
    console = Console()
    t = Table(title="Sweep (official STRS)", title_justify="left")
    for col in ("setting", "STRS", "spot F1", "analysis F1", "trained", "decoded", "reused"):
        t.add_column(col, justify="left" if col == "setting" else "right")
    for r in rows:
        if r.get("error"):
            t.add_row(r["setting"], "failed", "", "", "", "", "")
            continue
        t.add_row(r["setting"], *("n/a" if r.get(k) is None else str(r.get(k)) for k in
                                  ("strs", "spot_f1", "analysis_f1", "folds_trained",
                                   "folds_decoded", "folds_reused")))
    console.print(t)
    files = summary.get("files") or {}
    if files.get("markdown"):
        console.print(f"comparison: {files['markdown']}", highlight=False, soft_wrap=True)
    if res.status != "completed":
        console.print(f"[bold red]sweep failed:[/] {res.message}", highlight=False,
                      soft_wrap=True)
        sys.exit(1)


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    @friendly_errors
    def sweep_cmd(config: ConfigOpt,
                  grid: Annotated[list[str], typer.Option(
                      "--grid", "-g", help="A setting and its values, key.path=v1,v2,... "
                      "(repeatable: every combination runs).", show_default=False)],
                  root: RootOpt = None, out: OutOpt = None, set_: SetOpt = None,
                  control: Annotated[bool, typer.Option(
                      "--control", help="Add the shuffled-label control "
                      "(train.shuffle_labels=true) with the base settings.")] = False,
                  folds: Annotated[str | None, typer.Option(
                      "--folds", help="Only these folds in every setting, e.g. 3,7.")] = None
                  ) -> None:
        """Run the benchmark for every combination of the --grid settings as child runs of one
        Prefect run, reusing every feature file and trained fold whose inputs do not change (a
        decoding-only sweep trains nothing), and compare them: a table and a plot of STRS,
        spot F1 and analysis F1 per setting (runs/<run>-sweep/)."""
        from flows.commands._common import flow_parameters, run_config_flow
        from flows.sweep import parse_grid, settings_of

        cfg = load(config, set_, root, out)
        settings = settings_of(parse_grid(grid), control)
        for s in settings:  # every setting is a valid config before anything starts
            load(config, list(set_ or []) + s, root, out)
        fold_list = [f.strip() for f in folds.split(",") if f.strip()] if folds else None
        params = flow_parameters(config, set_, root, out, grid=list(grid), control=control,
                                 folds=fold_list)
        res = run_config_flow("vrme-sweep", cfg, params, "sweep",
                              extra_title=f"sweep of {len(settings)}")
        _print(res)
