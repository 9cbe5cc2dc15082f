"""``vrme predict``: a MEGC submission CSV from an unlabelled test folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.commands._common import friendly_errors, load, setup_logging

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
    from vrme.errors import DataError
    from vrme.frames import check_video

    for m in models:
        if not m.exists():
            raise DataError(f"model {m} (--model) not found")
    if root is not None:
        from vrme.ingest import scan_unlabelled

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
        cache: CacheOpt = Path("data/work/predict"),
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

        from vrme.decode import decode_params
        from vrme.predict import load_models, predict_folder, prediction_decode

        check_inputs(model, cache, root=root, outputs=(out,))  # before any model loads
        setup_logging()
        cfg = load(config, None, dataset=False) if config is not None else None
        ens = load_models(model, config=cfg)
        dec = prediction_decode(ens.cfg, decode_mode, set_)
        pred = predict_folder(ens, root, out, cache_dir=cache, fps=fps, decode=dec,
                              workers=workers)
        p_used, k_p_used = decode_params(dec, ens.k_p)
        t = Table(title=f"{len(pred.videos)} video(s), {len(ens.models)} model(s); decode "
                  f"{dec.mode}, p {p_used:g}, k_p {k_p_used}")
        for col in ("subject", "video", "fps", "skip", "status", "intervals"):
            t.add_column(col, justify="right" if col in ("fps", "skip", "intervals") else "left")
        for r in pred.videos.itertuples(index=False):
            t.add_row(r.subject, r.video, f"{r.fps:g}", str(r.frame_skip),
                      r.status if r.status == "ok" else f"{r.status}: {r.reason}",
                      str(r.n_intervals))
        Console(stderr=True).print(t)
        typer.echo(str(out))
