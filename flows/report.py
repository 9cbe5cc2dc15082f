"""Flow ``vrme-report``: rebuild a run's report from its stored fold outputs (no training), and
the artifacts a benchmark run shows in the Prefect UI."""

from __future__ import annotations

import base64
import logging
import math
import re
from pathlib import Path
from typing import Any

from prefect import flow

from flows.progress import RunProgress, artifact_key
from tasks.pipeline import report_task
from vrme.config import Config

log = logging.getLogger("vrme.flows")

_IMAGE = re.compile(r"!\[([^\]]*)\]\(plots/([^)]+)\)")


def _round(v: Any, digits: int = 4) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, digits)
    return v


def fold_table(report: dict[str, Any] | None, done: dict[str, dict], failed: dict[str, str]
               ) -> list[dict[str, Any]]:
    """Rows of the folds artifact: subject, how it was made (trained, decoded again from a
    trained fold, reused, failed), spotting TP/FP/FN, true and predicted intervals, spot F1 and
    the fold's own STRS (rounded), training seconds (training only, not time spent waiting)
    and the error of a failed fold."""
    per_fold = {str(r["fold"]): r for r in (report or {}).get("per_fold", [])}
    rows = []
    for f in sorted(set(done) | set(failed), key=lambda s: (len(s), s)):
        m = per_fold.get(f, {})
        d = done.get(f, {})
        status = "failed" if f in failed else ("reused" if d.get("reused") else
                                              d.get("how", "trained"))
        rows.append({
            "subject": f,
            "status": status,
            "spot_tp": _int(m.get("spot_tp")),
            "spot_fp": _int(m.get("spot_fp")),
            "spot_fn": _int(m.get("spot_fn")),
            "true_intervals": _int(m.get("n_gt")),
            "predicted_intervals": _int(m.get("n_pred")),
            "spot_f1": _round(m.get("spot_f1")),
            "fold_strs": _round(m.get("strs")),
            "train_s": _round(d.get("train_s"), 1) if f in done else None,
            "error": failed.get(f, ""),
        })
    return rows


def _int(v: Any) -> int | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return int(v)


def markdown_with_inline_images(markdown: str, plots_dir: Path) -> str:
    """``markdown`` with every ``![..](plots/x.png)`` replaced by the image itself (a data URI),
    so the images render in the Prefect UI, which cannot reach the report folder."""

    def inline(m: re.Match[str]) -> str:
        p = plots_dir / m.group(2)
        try:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
        except OSError:
            return f"*({m.group(1)}: {p} not readable)*"
        return f"![{m.group(1)}](data:image/png;base64,{data})"

    return _IMAGE.sub(inline, markdown)


def publish_artifacts(cfg: Config, report: dict[str, Any] | None, fold_rows: list[dict[str, Any]],
                      note: str = "") -> None:
    """The folds table and the report (metrics, plots, where report.html is) as Prefect
    artifacts. ``note`` (e.g. what failed) heads the report artifact. Never raises."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    try:
        if fold_rows:
            create_table_artifact(table=fold_rows, key=artifact_key(cfg.run_name, "folds"),
                                  description=f"Leave-one-subject-out folds of {cfg.run_name}")
        head = f"**{note}**\n\n" if note else ""
        if report:
            html = Path(report["html"]).absolute()
            body = markdown_with_inline_images(report.get("markdown", ""), html.parent / "plots")
            text = (f"{head}Report: `{html}` (self-contained; open it in a browser). "
                    f"Tables: `{html.parent}`.\n\n{body}")
        else:
            text = f"{head}No report: no fold finished."
        create_markdown_artifact(markdown=text, key=artifact_key(cfg.run_name, "report"),
                                 description=f"Report of {cfg.run_name}")
    except Exception as exc:  # noqa: BLE001 - artifacts must never fail a run
        log.warning("could not publish the run's artifacts: %s", exc)


def report_step(cfg: Config, manifest_path: str, labels_path: str,
                progress: RunProgress | None = None) -> dict[str, Any]:
    """The report task inside the calling flow."""
    if progress is not None:
        progress.start("report")
    try:
        rep = report_task(cfg, str(cfg.run_dir), manifest_path, labels_path)
    except Exception:
        if progress is not None:
            progress.finish("report", "failed", failed=True)
        raise
    if progress is not None:
        strs = rep["metrics"].get("official", {}).get("strs")
        progress.finish("report", f"STRS {'n/a' if strs is None else f'{strs:.4f}'}")
    return rep


@flow(name="vrme-report", flow_run_name="report {run}", persist_result=False)
def report_flow(run: str) -> dict[str, Any]:
    """Rebuild ``<run>/report/`` from the finished folds under ``<run>/folds``."""
    from flows.outcome import finish_run
    from vrme.record import read_run_info, run_config

    info = read_run_info(Path(run))
    cfg = run_config(Path(run))
    progress = RunProgress(cfg.run_name, ["report"], title=f"report of {cfg.run_name}")
    rep = report_step(cfg, info["manifest"], info["labels"], progress)
    publish_artifacts(cfg, rep, [])
    return finish_run(progress, rep, rerun=f"vrme report --run {run}")
