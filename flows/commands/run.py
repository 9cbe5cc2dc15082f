"""``vrme run``, ``vrme demo`` and ``vrme serve``: the benchmark as a Prefect flow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load

FoldsOpt = Annotated[
    str | None, typer.Option("--folds", help="Retrain just these folds, e.g. 3,7 (the report "
                             "pools every finished fold).")
]
RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Recompute everything, ignoring "
                                          "caches.")]


def _print_outcome(cfg: Any, state: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    report_dir = Path(cfg.run_dir) / "report"
    if state.is_completed():
        res = state.result()
        rep = res["report"]
        m = rep.get("metrics", {}).get("official", {})
        t = Table(title=f"{cfg.run_name}: leave-one-subject-out (official STRS)",
                  show_header=False, title_justify="left")
        for key in ("strs", "spot_precision", "spot_recall", "spot_f1", "analysis_f1",
                    "analysis_uf1"):
            v = m.get(key)
            t.add_row(key, "n/a" if v is None else f"{v:.4f}")
        console.print(t)
        console.print(f"folds trained: {', '.join(res['folds_trained']) or 'none'}; "
                      f"reused from cache: {', '.join(res['folds_cached']) or 'none'}; "
                      f"videos: {res['videos']}; {res['seconds']:.1f} s")
        console.print(f"STRS = {m.get('strs')}")
        console.print(f"report: {rep.get('html', report_dir / 'report.html')}")
        return
    console.print(f"[bold red]run failed:[/] {state.message}", highlight=False)
    if (report_dir / "report.html").exists():
        console.print(f"partial report (finished folds only): {report_dir / 'report.html'}")
    sys.exit(1)


def run_benchmark_cli(config: Path, set_: list[str] | None, root: Path | None, out: Path | None,
                      folds: str | None, refresh: bool) -> None:
    """Validate the config, run the benchmark flow, print the metrics and the report path."""
    cfg = load(config, set_, root, out)  # fail fast, with a clear message, on a bad config
    from flows.benchmark import benchmark_flow
    from flows.commands._common import quiet_expected_tracebacks

    quiet_expected_tracebacks()

    fold_list = [f.strip() for f in folds.split(",") if f.strip()] if folds else None
    state = benchmark_flow(config=str(config), overrides=list(set_ or []),
                           root=str(root) if root else None, out=str(out) if out else None,
                           folds=fold_list, refresh=refresh, return_state=True)
    _print_outcome(cfg, state)


def register(app: typer.Typer) -> None:
    @app.command("run")
    @friendly_errors
    def run_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                set_: SetOpt = None, folds: FoldsOpt = None, refresh: RefreshOpt = False) -> None:
        """Run the whole benchmark (ingest, align, features, every fold, report) as a Prefect
        flow; print the STRS and where the report is. Reruns recompute only what changed."""
        run_benchmark_cli(config, set_, root, out, folds, refresh)

    @app.command("demo")
    @friendly_errors
    def demo_cmd(config: Annotated[Path, typer.Option("--config", "-c")] = Path("configs/demo.yaml"),
                 out: OutOpt = None, set_: SetOpt = None, refresh: RefreshOpt = False) -> None:
        """The whole benchmark on a small generated dataset (configs/demo.yaml): generates it
        on first use, then runs like `vrme run`."""
        run_benchmark_cli(config, set_, None, out, None, refresh)

    @app.command("serve")
    @friendly_errors
    def serve_cmd(cron: Annotated[str, typer.Option(
                      "--cron", help='Cron schedule, e.g. "0 2 * * *" (02:00 every night).')],
                  config: Annotated[Path | None, typer.Option(
                      "--config", "-c", help="YAML config (benchmark, train-final).")] = None,
                  root: RootOpt = None, out: OutOpt = None, set_: SetOpt = None,
                  flow_name: Annotated[str, typer.Option(
                      "--flow", help="Which flow: benchmark, train-final, predict, report.")
                  ] = "benchmark",
                  param: Annotated[list[str] | None, typer.Option(
                      "--param", help="Parameter of a predict/report flow, key=value "
                      "(repeatable), e.g. --param model=runs/x --param root=/megc")] = None,
                  name: Annotated[str | None, typer.Option("--name", help="Deployment name; "
                                  "default <run name>-scheduled.")] = None) -> None:
        """Serve a vrme flow (default: the benchmark) as a Prefect deployment on a cron
        schedule; blocks until Ctrl-C. Runs appear in the Prefect UI (README: Schedules)."""
        from prefect.client.schemas.schedules import CronSchedule

        from vrme.errors import UserError

        CronSchedule(cron=cron)  # validates the expression before anything starts
        flows = _serveable_flows()
        if flow_name not in flows:
            raise UserError(f"--flow {flow_name!r}: choose one of {', '.join(flows)}")
        target = flows[flow_name]
        if flow_name in ("benchmark", "train-final"):
            if config is None:
                raise UserError(f"--flow {flow_name} needs --config")
            cfg = load(config, set_, root, out)
            params: dict[str, Any] = {
                "config": str(config.resolve()), "overrides": list(set_ or []),
                "root": str(cfg.dataset.root) if cfg.dataset.root else None,
                "out": str(cfg.out_dir)}
            default_name = f"{cfg.run_name}-scheduled"
        else:
            params = _parse_params(param or [])
            if flow_name == "predict" and isinstance(params.get("model"), str):
                params["model"] = [params["model"]]
            default_name = f"{flow_name}-scheduled"
        target.serve(name=name or default_name, cron=cron, parameters=params,
                     pause_on_shutdown=False)


def _serveable_flows() -> dict[str, Any]:
    from flows.benchmark import benchmark_flow
    from flows.final import predict_flow, train_final_flow
    from flows.report import report_flow

    return {"benchmark": benchmark_flow, "train-final": train_final_flow,
            "predict": predict_flow, "report": report_flow}


def _parse_params(items: list[str]) -> dict[str, Any]:
    import yaml

    from vrme.errors import UserError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--param {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else None
    return out
