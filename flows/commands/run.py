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


def _print_outcome(cfg: Any, res: Any) -> None:
    """The run's numbers, what was reused, the report's path; or what failed and how to
    rerun it (exit 1)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = res.outcome.get("summary") or {}
    rep = summary.get("report") or {}
    if res.status == "completed":
        m = rep.get("metrics", {}).get("official", {})
        t = Table(title=f"{cfg.run_name}: leave-one-subject-out (official STRS)",
                  show_header=False, title_justify="left")
        for key in ("strs", "spot_precision", "spot_recall", "spot_f1", "analysis_f1",
                    "analysis_uf1"):
            v = m.get(key)
            t.add_row(key, "n/a" if v is None else f"{v:.4f}")
        console.print(t)
        folds = "; ".join(f"{label}: {', '.join(summary.get(k) or []) or '-'}" for k, label in (
            ("folds_trained", "folds trained"), ("folds_decoded", "decoded again"),
            ("folds_cached", "reused")))
        console.print(f"{folds}; videos: {summary.get('videos')}; "
                      f"{summary.get('seconds', 0):.1f} s", highlight=False, soft_wrap=True)
        console.print(f"STRS = {m.get('strs')}")
        console.print(f"report: {rep.get('html', Path(cfg.run_dir) / 'report' / 'report.html')}")
        return
    console.print(f"[bold red]run failed:[/] {res.message}", highlight=False, soft_wrap=True)
    if rep.get("html"):  # written by this run, from the folds that finished
        console.print(f"partial report (finished folds only): {rep['html']}")
    sys.exit(1)


def run_benchmark_cli(config: Path, set_: list[str] | None, root: Path | None, out: Path | None,
                      folds: str | None, refresh: bool) -> None:
    """Validate the config, run the benchmark flow, print the metrics and the report path."""
    from flows.commands._common import flow_parameters, run_config_flow

    cfg = load(config, set_, root, out)  # fail fast, with a clear message, on a bad config
    fold_list = [f.strip() for f in folds.split(",") if f.strip()] if folds else None
    params = flow_parameters(config, set_, root, out, folds=fold_list, refresh=refresh)
    res = run_config_flow("vrme-benchmark", cfg, params, "benchmark",
                          extra_title=f"folds {','.join(fold_list)}" if fold_list else "")
    _print_outcome(cfg, res)


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
    def demo_cmd(config: Annotated[Path, typer.Option("--config", "-c")]
                 = Path("configs/demo.yaml"),
                 out: OutOpt = None, set_: SetOpt = None, refresh: RefreshOpt = False) -> None:
        """The whole benchmark on a small generated dataset (configs/demo.yaml): generates it
        on first use, then runs like `vrme run`."""
        run_benchmark_cli(config, set_, None, out, None, refresh)

    @app.command("serve")
    @friendly_errors
    def serve_cmd(config: Annotated[Path | None, typer.Option(
                      "--config", "-c", help="YAML config: serve every vrme flow of it.")] = None,
                  cron: Annotated[str | None, typer.Option(
                      "--cron", help='Cron schedule of --flow, e.g. "0 2 * * *" (02:00 every '
                      'night); without it nothing is scheduled, runs start from the UI.')] = None,
                  root: RootOpt = None, out: OutOpt = None, set_: SetOpt = None,
                  flow_name: Annotated[str, typer.Option(
                      "--flow", help="The flow --cron schedules: benchmark, train-final, "
                      "ingest, align, features (with --config), or predict, report (with "
                      "--param).")] = "benchmark",
                  param: Annotated[list[str] | None, typer.Option(
                      "--param", help="Parameter of a predict/report flow, key=value "
                      "(repeatable), e.g. --param model=runs/x --param root=/megc")] = None,
                  name: Annotated[str | None, typer.Option(
                      "--name", help="Deployment name of a predict/report flow; default "
                      "<flow>-scheduled.")] = None) -> None:
        """Serve vrme's flows as Prefect deployments and execute their runs: the runs the
        schedule starts (--cron), the runs started from the UI (Run, Retry) and retried runs
        of `vrme run`. Blocks until Ctrl-C; the deployments stay registered, the schedule is
        paused (README: Schedules)."""
        from prefect.client.schemas.schedules import CronSchedule

        from flows.commands._common import flow_parameters
        from vrme.errors import UserError

        if cron is not None:
            CronSchedule(cron=cron)  # validates the expression before anything starts
        config_flows = {"benchmark": "vrme-benchmark", "train-final": "vrme-train-final",
                        "ingest": "vrme-ingest", "align": "vrme-align",
                        "features": "vrme-features"}
        other_flows = {"predict": "vrme-predict", "report": "vrme-report"}
        if flow_name not in config_flows and flow_name not in other_flows:
            raise UserError(f"--flow {flow_name!r}: choose one of "
                            f"{', '.join([*config_flows, *other_flows])}")
        plan: list[tuple[str, str, dict[str, Any], str | None]] = []
        if flow_name in config_flows:
            if config is None:
                raise UserError(f"--flow {flow_name} needs --config")
            cfg = load(config, set_, root, out)
            params = flow_parameters(config, set_, root, out)
            for short, full in config_flows.items():
                plan.append((full, cfg.run_name, params, cron if short == flow_name else None))
        else:
            if cron is None:
                raise UserError(f"--flow {flow_name} needs --cron")
            params = _parse_params(param or [])
            if flow_name == "predict" and isinstance(params.get("model"), str):
                params["model"] = [params["model"]]
            plan.append((other_flows[flow_name], name or f"{flow_name}-scheduled", params, cron))
        serve_deployments(plan)


def serve_deployments(plan: list[tuple[str, str, dict[str, Any], str | None]]) -> None:
    """Register and serve ``(flow, deployment, parameters, cron)`` until Ctrl-C, then say what
    stays registered and how to remove it."""
    from prefect import serve
    from prefect.flows import EntrypointType
    from rich.console import Console

    from flows.engine import load_flow
    from flows.launch import prefect_api

    console = Console(stderr=True)
    with prefect_api(lambda m: console.print(m, highlight=False, soft_wrap=True),
                     services=True) as url:
        deps = [load_flow(f).to_deployment(name=d, parameters=p, cron=c, tags=["vrme"],
                                           entrypoint_type=EntrypointType.MODULE_PATH)
                for f, d, p, c in plan]
        names = [f"{f}/{d}" for f, d, _, _ in plan]
        scheduled = [f"{f}/{d} ({c})" for f, d, _, c in plan if c]
        console.print(f"Serving {', '.join(names)} on {url}. Scheduled: "
                      f"{', '.join(scheduled) or 'nothing'}. Runs started from the UI (Run, "
                      "Retry) and retried runs of `vrme run` execute here. Ctrl-C stops.",
                      highlight=False, soft_wrap=True)
        try:
            serve(*deps, pause_on_shutdown=True)
        except KeyboardInterrupt:
            pass
        if scheduled:
            _pause_schedules([n for (f, d, _, c), n in zip(plan, names) if c])
    paused = " Its schedule is paused; `vrme serve` with the same options resumes it." \
        if scheduled else ""
    console.print(f"Stopped serving. The deployments stay registered ({', '.join(names)}), "
                  f"and their runs wait until a `vrme serve` executes them.{paused} Remove "
                  "one with `prefect deployment delete <flow>/<deployment>`.", highlight=False,
                  soft_wrap=True)


def _pause_schedules(deployments: list[str]) -> None:
    """Pause the schedules of the named deployments (``flow/deployment``): a stopped
    ``vrme serve`` leaves no schedule running that nobody executes."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for name in deployments:
            dep = client.read_deployment_by_name(name)
            for sched in dep.schedules:
                if sched.active:
                    client.update_deployment_schedule(dep.id, sched.id, active=False)


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
