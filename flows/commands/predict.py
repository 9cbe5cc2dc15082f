"""``vrme predict``: a MEGC submission CSV from an unlabelled test folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows.commands._common import friendly_errors, load, setup_logging
from vrme.catalog import PREDICT_CACHE

ModelOpt = Annotated[
    list[Path],
    typer.Option("--model", "-m", help="Final model folder (or its model.pt), a fold folder, or "
                 "a run folder (every finished fold, scores averaged). Repeatable.",
                 show_default=False),
]
CacheOpt = Annotated[
    Path, typer.Option("--cache", help="Where features of the new videos are cached.")
]
FpsOpt = Annotated[
    float | None, typer.Option("--fps", help="Frame rate of frame folders (default: guessed "
                               "from the path: 'samm' -> 200, 'cas' -> 30, else the model's).",
                               show_default=False)
]
DecodeModeOpt = Annotated[
    str | None, typer.Option("--decode-mode", help="Decoding mode instead of the model's "
                             "decode.mode: loso (the benchmarks') or samm_test (the reference's "
                             "MEGC SAMM test-set decoding; METHOD.md section 8).",
                             show_default=False)
]
DecodeSetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a decode key of the model's "
                                   "config: decode.key.path=value (repeatable), e.g. "
                                   "decode.samm_test.p=0.7.", show_default=False)
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="Feature processes (default: CPUs).",
                             show_default=False)
]


def check_inputs(models: list[Path], cache: Path, *, root: Path | None = None,
                 video: Path | None = None, outputs: tuple[Path | None, ...] = ()) -> None:
    """Everything ``predict``/``spot`` can check before a model loads: the model paths exist,
    the test folder (``root``) is a folder holding at least one video, the one ``video`` opens
    and decodes its first frame (an empty, truncated or non-video file, an empty frame folder),
    the cache folder is writable, and each output file is not a folder and can be written."""
    from vrme.config import check_writable_folder
    from vrme.data.frames import check_video
    from vrme.errors import DataError

    for m in models:
        if not m.exists():
            raise DataError(f"model {m} (--model) not found")
    if root is not None:
        from vrme.data.ingest import scan_unlabelled

        if not root.is_dir():
            state = "is not a folder" if root.exists() else "does not exist"
            raise DataError(f"test folder {root} (--root) {state}")
        entries, _ = scan_unlabelled(root)
        if not entries:
            raise DataError(f"{root} (--root): no video found (frame folders or .mp4/.avi/.mov/"
                            ".mkv files)")
    if video is not None:
        check_video(video)
    check_writable_folder(cache, "cache folder (--cache)")
    for out in outputs:
        if out is None:
            continue
        if out.is_dir():
            raise DataError(f"output {out} is a folder; give a file name")
        check_writable_folder(out.absolute().parent, f"folder of {out}")


def run_prediction_flow(flow_name: str, params: dict[str, Any], title: str) -> Any:
    """Run ``vrme-predict`` or ``vrme-spot`` as a run of deployment ``<flow>/cli`` in a child
    process (:func:`flows.launch.launch`), like every other flow of the CLI; a user error
    inside it exits 2 with its one line, Ctrl-C stops it."""
    import sys

    from rich.console import Console

    from flows.launch import launch

    res = launch(flow_name, params, deployment="cli", run_title=title, tags=["vrme"],
                 title=title)
    if res.status == "error":
        Console(stderr=True).print(f"[bold red]error:[/] {res.message}", markup=True,
                                   highlight=False, soft_wrap=True)
        sys.exit(res.exit_code)
    if res.status == "interrupted":
        Console(stderr=True).print("[bold yellow]interrupted:[/] nothing is half-written; run "
                                   "the command again to resume (computed features are "
                                   "reused)", markup=True, highlight=False, soft_wrap=True)
        sys.exit(130)
    return res


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to ``app``."""

    @app.command("predict")
    @friendly_errors
    def predict_cmd(
        model: ModelOpt,
        root: Annotated[Path, typer.Option("--root", help="Unlabelled test folder (MEGC "
                                           "layouts, frame folders or video files).",
                                           show_default=False)],
        out: Annotated[Path, typer.Option("--out", help="Submission CSV to write.")] = Path(
            "submission.csv"),
        config: Annotated[Path | None, typer.Option(
            "--config", "-c", help="Training config, only for models whose folder records none "
            "(no model.json / run.json).", show_default=False)] = None,
        cache: CacheOpt = PREDICT_CACHE,
        fps: FpsOpt = None,
        decode_mode: DecodeModeOpt = None,
        set_: DecodeSetOpt = None,
        workers: WorkersOpt = None,
    ) -> None:
        """Spot and recognise micro-expressions in every video under --root and write the MEGC
        CSV (subject, video, onset, offset, emotion; original frame numbers; 'others' left
        out), plus <out>_intervals.csv with every interval, apex and score. Each video is read
        at the frame skip that matches the model's training rate (a 200 fps SAMM video with a
        CAS(ME)^3 model: skip 7). Decoding is the model's decode section, changed by
        --decode-mode and --set decode.key=value."""
        from rich.console import Console
        from rich.table import Table

        from vrme.inference.predict import load_models, prediction_decode

        check_inputs(model, cache, root=root, outputs=(out,))  # before any model loads
        setup_logging()
        cfg = load(config, None, dataset=False) if config is not None else None
        # the decoding options are checked against the models' config before anything starts
        prediction_decode(load_models(model, config=cfg).cfg, decode_mode, set_)
        res = run_prediction_flow("vrme-predict", {
            "model": [str(m.absolute()) for m in model], "root": str(root.absolute()),
            "out": str(out.absolute()), "cache": str(cache.absolute()), "fps": fps,
            "decode_mode": decode_mode, "decode_set": list(set_ or []),
            "config": str(config.absolute()) if config else None, "workers": workers},
            f"predict {root}")
        summary = res.outcome.get("summary") or {}
        dec = summary.get("decode") or {}
        t = Table(title=f"{len(summary.get('videos', []))} video(s), "
                  f"{summary.get('n_models')} model(s); decode {dec.get('mode')}, "
                  f"p {dec.get('p', 0):g}, k_p {dec.get('k_p')}")
        for col in ("subject", "video", "fps", "skip", "status", "intervals"):
            t.add_column(col, justify="right" if col in ("fps", "skip", "intervals") else "left")
        for r in summary.get("videos", []):
            t.add_row(str(r["subject"]), str(r["video"]), f"{float(r['fps']):g}",
                      str(r["frame_skip"]),
                      r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
                      str(r["n_intervals"]))
        Console(stderr=True).print(t)
        if res.status != "completed":
            Console(stderr=True).print(f"[bold red]predict failed:[/] {res.message}",
                                       highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        typer.echo(str(out))
