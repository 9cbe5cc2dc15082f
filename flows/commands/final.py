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
        load(config, set_, root, out)  # a bad config fails here, with a clear message
        from flows.commands._common import quiet_expected_tracebacks
        from flows.final import train_final_flow

        quiet_expected_tracebacks()

        state = train_final_flow(config=str(config), overrides=list(set_ or []),
                                 root=str(root) if root else None, out=str(out) if out else None,
                                 return_state=True)
        if not state.is_completed():
            typer.secho(f"error: {state.message}", fg="red", err=True)
            raise typer.Exit(1)
        typer.echo(state.result()["model_dir"])
