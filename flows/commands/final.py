"""``vrme train-final``: one model trained on every subject, for unlabelled videos."""

from __future__ import annotations

import typer

from flows.commands._common import ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load


def register(app: typer.Typer) -> None:
    """Add the ``train-final`` command to ``app``."""

    @app.command("train-final")
    @friendly_errors
    def train_final_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                        set_: SetOpt = None) -> None:
        """Train one model on all subjects (priors from all labels) and print its folder
        (<out>/final/<run name>/: model.pt, priors.json, model.json). Runs as the Prefect flow
        vrme-train-final: ingestion and features run first where missing (cached otherwise);
        a synthetic dataset named by the config is generated if needed."""
        from flows.commands._common import flow_parameters, run_config_flow

        cfg = load(config, set_, root, out)  # a bad config fails here, with a clear message
        res = run_config_flow("vrme-train-final", cfg, flow_parameters(config, set_, root, out),
                              "final model")
        if res.status != "completed":
            typer.secho(f"error: {res.message}", fg="red", err=True)
            raise typer.Exit(1)
        typer.echo((res.outcome.get("summary") or {}).get("model_dir", ""))
