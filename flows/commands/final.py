"""``vrme train-final``: one model trained on every subject, for unlabelled videos."""

from __future__ import annotations

import typer

from flows.commands._common import (ConfigOpt, OutOpt, RootOpt, SetOpt, friendly_errors, load,
                                    setup_logging)


def register(app: typer.Typer) -> None:
    """Add the ``train-final`` command to ``app``."""

    @app.command("train-final")
    @friendly_errors
    def train_final_cmd(config: ConfigOpt, root: RootOpt = None, out: OutOpt = None,
                        set_: SetOpt = None) -> None:
        """Train one model on all subjects (priors from all labels) and print its folder
        (<out>/final/<run name>/: model.pt, priors.json, model.json). Ingests and computes
        features first where they are missing (cached otherwise); a synthetic dataset named
        by the config is generated if its root does not exist yet."""
        from vrme.errors import UserError
        from vrme.features import run_features
        from vrme.final import train_final
        from vrme.ingest import ingest
        from vrme.schema import read_manifest

        setup_logging()
        cfg = load(config, set_, root, out)
        ds_root = cfg.dataset.root
        if ds_root is None:
            raise UserError("no dataset root: set dataset.root in the config or pass --root")
        if not ds_root.exists() and cfg.synth is not None:
            from vrme.synth import generate_dataset, spec_from_config

            generate_dataset(spec_from_config(cfg), ds_root, progress=True)
        manifest_path = cfg.ingest_dir / "manifest.parquet"
        if manifest_path.is_file() and (cfg.ingest_dir / "labels.parquet").is_file():
            manifest = read_manifest(manifest_path)
        else:
            manifest = ingest(cfg).manifest
        run_features(cfg, manifest, progress=True)
        typer.echo(str(train_final(cfg, progress=True)))
