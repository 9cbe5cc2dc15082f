"""The report of a leave-one-subject-out run, rebuilt from the fold folders without training.

:func:`vrme.record.write_run_info` records at the start of a run everything the report needs later
(``<run_dir>/run.json``: the whole config, the dataset, where ingestion wrote its tables, the
fold config hash, the code version of every stage, vrme's version and git commit, the machine),
so ``vrme report --run DIR`` works without the original config file.

:func:`build_report` reads the finished folds under ``<run_dir>/folds/<subject>/`` (a fold
counts only when :func:`vrme.training.train.fold_is_complete` says so and, when run.json records
one, its config hash matches), pools their intervals, scores them once with both STRS variants and
writes ``<run_dir>/report/``:

- ``metrics.json``: official STRS and its parts, the reference (paper-code) variant beside it,
  per-emotion recall/precision, the folds that are missing and why (``"complete": false``,
  ``"missing_folds"``), the paper's Table 3 numbers for real datasets, the run's versions, and
  the per-video counts and missed/false intervals (``per_video``, ``missed``, ``false``: the
  rows of the three CSV files below);
- ``folds.parquet``: one row per expected fold (metrics on its own subject, k_p, training
  windows, how it was made, epochs, final and lowest loss, timings, hashes, status);
- ``predictions.csv``: pooled intervals in STRS format (subject, video, onset, offset, emotion;
  original frame numbers), in the order they were scored; ``ground_truth.csv`` the ground truth
  they were scored against (so ``vrme strs --pred predictions.csv --gt ground_truth.csv``
  reproduces ``metrics.json``); ``intervals.csv`` the same predictions with apex and score;
- ``per_video.csv`` (:data:`PER_VIDEO_COLUMNS`), ``missed.csv`` (:data:`MISSED_COLUMNS`) and
  ``false.csv`` (:data:`FALSE_COLUMNS`): the official matching (``StrsResult.pairs``) video by
  video and interval by interval;
- ``report.md`` with ``plots/*.png``, and ``report.html``, self-contained (PNGs embedded as
  base64): how the run was made (code versions, machine, the time and outcome of each stage
  from ``stages.json`` when an orchestrator wrote one, every setting, the config as YAML),
  per-fold loss curves, the per-video table with the missed and false intervals, per-video spot
  score curves (frames and seconds) with true intervals and predictions marked TP or FP (at most
  ``max_videos`` videos, picked round-robin over subjects; the report says which), the analysis
  confusion matrix, per-subject spot F1 and predicted vs true durations.

Every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrme.catalog import fold_dir, folds_dir
from vrme.config import Config
from vrme.errors import DataError
from vrme.io import write_bytes_atomic, write_json_atomic, write_parquet_atomic, write_text_atomic
from vrme.record import RUN_INFO_FILE, _now, is_synthetic_dataset, read_run_info, run_config
from vrme.report.load import FoldState, _load_tables, fold_states, read_stages
from vrme.report.render import _Doc, _document, _fmt, _html, _Image, _md
from vrme.report.score import (
    STRS_COLUMNS,
    _clean,
    _confusion,
    _counts_text,
    _matching,
    _per_class,
    _video_clock,
    per_dataset_metrics,
)

log = logging.getLogger(__name__)


REPORT_DIR = "report"


DEFAULT_MAX_VIDEOS = 12
"""Score curves drawn by default (one PNG per video; a real dataset has over a thousand)."""


PAPER_LAYOUTS = ("casme3", "samm_lv")


@dataclass
class ReportResult:
    """What :func:`build_report` wrote (paths) and its headline numbers (``metrics``: the
    content of metrics.json)."""

    report_dir: Path
    html: Path
    markdown: Path
    metrics_path: Path
    folds_path: Path
    predictions: Path
    ground_truth: Path
    plots: list[Path]
    metrics: dict[str, Any]
    complete: bool
    missing_folds: list[str]
    shown_videos: list[tuple[str, str]]
    per_video: Path | None = None
    missed: Path | None = None
    false: Path | None = None


def _pick_videos(videos: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Up to ``n`` videos taken round-robin over subjects (subject order kept), so every subject
    is shown before any gets a second video."""
    by_subject: dict[str, list[tuple[str, str]]] = {}
    for sv in videos:
        by_subject.setdefault(sv[0], []).append(sv)
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < n and any(len(v) > depth for v in by_subject.values()):
        for vids in by_subject.values():
            if len(vids) > depth and len(picked) < n:
                picked.append(vids[depth])
        depth += 1
    return picked


def _safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "_"


def _fold_rows(states: list[FoldState], per_fold: pd.DataFrame) -> pd.DataFrame:
    metrics = per_fold.set_index("fold") if len(per_fold) else pd.DataFrame()
    metric_cols = ["strs", "spot_tp", "spot_fp", "spot_fn", "spot_precision", "spot_recall",
                   "spot_f1", "analysis_precision", "analysis_recall", "analysis_f1",
                   "analysis_uf1", "n_pred", "n_gt"]
    rows = []
    for st in states:
        m = st.marker
        timings = m.get("timings", {}) if st.complete else {}
        history = m.get("history", []) if st.complete else []
        row: dict[str, Any] = {"fold": st.fold, "status": "complete" if st.complete else "missing",
                               "reason": st.reason}
        for c in metric_cols:
            v = metrics.loc[st.fold, c] if st.complete and st.fold in metrics.index else np.nan
            row[c] = float(v) if v is not None and not pd.isna(v) else np.nan
        row.update(
            k_p=float(m["k_p"]) if st.complete and "k_p" in m else np.nan,
            n_train_windows=float(m.get("n_train_windows", np.nan)) if st.complete else np.nan,
            n_test_videos=float(len(m.get("test_videos", []))) if st.complete else np.nan,
            train_s=float(timings.get("train_s", np.nan)),
            predict_s=float(timings.get("predict_s", np.nan)),
            total_s=float(timings.get("total_s", np.nan)),
            final_loss=_epoch_value(history, -1, "loss"),
            final_mse=_epoch_value(history, -1, "mse"),
            final_ce=_epoch_value(history, -1, "ce"),
            epochs=float(len(history)) if history else np.nan,
            min_loss=np.nan, min_loss_epoch=np.nan,
            how=str(m.get("how", "")) if st.complete else "",
            load_s=float(timings.get("load_s", np.nan)),
            wait_s=float(timings.get("wait_s", np.nan)),
            decode_s=float(timings.get("decode_s", np.nan)),
            threads=float(timings.get("threads", np.nan)),
            train_hash=str(m.get("train_hash", "")) if st.complete else "",
            decode_hash=str(m.get("decode_hash", "")) if st.complete else "",
        )
        losses = [_epoch_value(history, i, "loss") for i in range(len(history))]
        if losses and np.isfinite(losses).any():
            i = int(np.nanargmin(losses))
            row.update(min_loss=losses[i], min_loss_epoch=float(history[i].get("epoch", i + 1)))
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("spot_tp", "spot_fp", "spot_fn", "n_pred", "n_gt", "k_p", "n_train_windows",
              "n_test_videos", "epochs", "min_loss_epoch", "threads"):
        df[c] = df[c].astype("Int64") if len(df) else df[c]
    return df


def _epoch_value(history: list[dict[str, Any]], i: int, key: str) -> float:
    """``history[i][key]`` as a float (NaN when missing or not a number)."""
    try:
        return float(history[i][key])
    except (IndexError, KeyError, TypeError, ValueError):
        return np.nan


def _paper_rows(cfg: Config, synthetic: bool, official: Any, reference: Any
                ) -> list[list[Any]] | None:
    if cfg.dataset.layout not in PAPER_LAYOUTS or synthetic or not cfg.paper:
        return None
    rows: list[list[Any]] = [
        ["this run (official STRS)", official.strs, official.spot_f1, official.analysis_f1],
        ["this run (paper-code scoring)", reference.strs, reference.spot_f1,
         reference.analysis_f1],
    ]
    for name, nums in cfg.paper.items():
        rows.append([name, nums.strs, nums.spot_f1, nums.recog_f1])
    return rows


@dataclass
class _Run:
    """A run as loaded for its report: its record, tables and fold states."""
    run_dir: Path
    cfg: Config
    info: dict[str, Any]
    manifest: pd.DataFrame
    labels: pd.DataFrame
    expected: list[str]
    config_hash: str | None
    states: list[FoldState]

    @property
    def complete(self) -> list[str]:
        return [s.fold for s in self.states if s.complete]

    @property
    def missing(self) -> list[FoldState]:
        return [s for s in self.states if not s.complete]

    @property
    def state_of(self) -> dict[str, FoldState]:
        return {s.fold: s for s in self.states}


@dataclass
class _Scores:
    """The pooled predictions of the complete folds, scored."""
    intervals: pd.DataFrame
    gt: pd.DataFrame
    emotions: list[str] | None
    official: Any
    reference: Any
    pred: pd.DataFrame
    per_fold: pd.DataFrame
    folds_df: pd.DataFrame
    synthetic: bool
    paper: Any
    all_videos: list[tuple[str, str]]
    fold_of: dict[tuple[str, str], str]
    clock: pd.DataFrame
    match: Any


@dataclass
class _Plots:
    images: list[_Image]
    loss_images: list[_Image]
    score_images: list[_Image]
    shown: list[tuple[str, str]]

    @property
    def all(self) -> list[_Image]:
        return self.images + self.loss_images + self.score_images


def build_report(run_dir: str | os.PathLike[str], cfg: Config | None = None, *,
                 manifest: pd.DataFrame | str | os.PathLike[str] | None = None,
                 labels: pd.DataFrame | str | os.PathLike[str] | None = None,
                 max_videos: int = DEFAULT_MAX_VIDEOS) -> ReportResult:
    """Rebuild ``<run_dir>/report/`` from the run's finished folds (no training; see the
    module docstring for the files).

    ``cfg`` defaults to the config in ``run.json``; ``manifest``/``labels`` (tables or Parquet
    paths) default to the paths run.json records, then ``cfg.ingest_dir``, then the run's
    sibling ``ingest/`` folder. Expected folds are the subjects with a labelled
    micro-expression (:func:`vrme.training.loso.loso_subjects`); the ones that did not finish
    are listed as missing and scoring covers the complete ones only (their ground truth only).
    At most ``max_videos`` score curves are drawn (the per-video table covers every video).
    Raises :class:`DataError` when no fold is complete.

    Five steps: load the run, score it, draw the plots, write the tables and plots, render
    report.md and report.html.
    """
    import time

    t0 = time.perf_counter()
    run = _load_run(Path(run_dir), cfg, manifest, labels)
    scores = _score_run(run)
    stages, stages_note = read_stages(run.run_dir)
    metrics = _metrics(run, scores)
    plots = _draw_plots(run, scores, max_videos)
    out = run.run_dir / REPORT_DIR
    files, plot_paths = _write_outputs(out, scores, plots)
    metrics["per_video"] = _records(scores.match.per_video)
    metrics["missed"] = _records(scores.match.missed)
    metrics["false"] = _records(scores.match.false)
    metrics["shown_videos"] = [list(sv) for sv in plots.shown]
    metrics["n_videos"] = len(scores.all_videos)
    metrics["plots"] = sorted(p.name for p in plot_paths)
    metrics["report_seconds"] = round(time.perf_counter() - t0, 3)
    metrics = _clean(metrics)
    files["metrics"] = write_json_atomic(out / "metrics.json", metrics)
    files.update(_render(out, run, scores, plots, metrics, max_videos, stages, stages_note))
    log.info("report of %d/%d folds written to %s in %.1f s (official STRS %s)",
             len(run.complete), len(run.expected), files["html"], time.perf_counter() - t0,
             _fmt(scores.official.strs))
    missing = [s.fold for s in run.missing]
    return ReportResult(report_dir=out, html=files["html"], markdown=files["markdown"],
                        metrics_path=files["metrics"], folds_path=files["folds"],
                        predictions=files["predictions"], ground_truth=files["ground_truth"],
                        plots=plot_paths, metrics=metrics, complete=not missing,
                        missing_folds=missing, shown_videos=plots.shown,
                        per_video=files["per_video"], missed=files["missed"],
                        false=files["false"])


def _load_run(run_dir: Path, cfg: Config | None, manifest: Any, labels: Any) -> _Run:
    """Step 1: the run's record, config, tables and fold states; DataError without a
    complete fold."""
    from vrme.training.loso import loso_subjects

    info: dict[str, Any] = {}
    if (run_dir / RUN_INFO_FILE).is_file():
        info = read_run_info(run_dir)
    if cfg is None:
        if not info:
            raise DataError(f"{run_dir / RUN_INFO_FILE} not found and no config given: cannot "
                            "tell how this run was made (pass --config)")
        cfg = run_config(run_dir)
    manifest_df, labels_df = _load_tables(run_dir, cfg, info, manifest, labels)
    expected = loso_subjects(manifest_df, labels_df)
    config_hash = info.get("fold_config_hash")
    run = _Run(run_dir, cfg, info, manifest_df, labels_df, expected, config_hash,
               fold_states(run_dir, expected, config_hash))
    if not run.complete:
        reasons = "; ".join(f"{s.fold}: {s.reason}" for s in run.missing[:5])
        raise DataError(f"no finished fold under {folds_dir(run_dir)} ({reasons})")
    for s in run.missing:
        log.warning("fold %s is missing from the report: %s", s.fold, s.reason)
    return run


def _score_run(run: _Run) -> _Scores:
    """Step 2: pool the complete folds' intervals, score them with both STRS variants, per
    fold, and match them video by video."""
    from vrme.training.loso import (
        ground_truth_table,
        per_fold_metrics,
        pool_fold_intervals,
        score_intervals,
    )

    cfg, complete, state_of = run.cfg, run.complete, run.state_of
    intervals = pool_fold_intervals(run.run_dir, complete).reset_index(drop=True)
    gt = ground_truth_table(run.labels, complete)
    emotions = list(cfg.eval.emotions) if cfg.eval.emotions else None
    scores = score_intervals(intervals, gt, emotions)
    official, reference = scores["official"], scores["reference"]
    pred = intervals[STRS_COLUMNS].reset_index(drop=True)
    per_fold = per_fold_metrics(intervals, gt, complete, emotions)
    synthetic = bool(run.info.get("dataset", {}).get("synthetic",
                                                      is_synthetic_dataset(cfg.dataset.root)))
    # Every test video of the scored folds, and the official matching interval by interval.
    all_videos: list[tuple[str, str]] = []
    fold_of: dict[tuple[str, str], str] = {}
    for f in complete:
        for v in state_of[f].marker.get("test_videos", []):
            all_videos.append((str(f), str(v)))
            fold_of[(str(f), str(v))] = f
    clock = _video_clock(run.manifest, cfg.dataset.fps)
    match = _matching(pred, gt, official, all_videos, clock, extra=intervals)
    return _Scores(intervals=intervals, gt=gt, emotions=emotions, official=official,
                   reference=reference, pred=pred, per_fold=per_fold,
                   folds_df=_fold_rows(run.states, per_fold), synthetic=synthetic,
                   paper=_paper_rows(cfg, synthetic, official, reference),
                   all_videos=all_videos, fold_of=fold_of, clock=clock, match=match)


def _metrics(run: _Run, sc: _Scores) -> dict[str, Any]:
    """The body of metrics.json (the per-video lists and plot names are added when written)."""
    cfg, official, reference, missing = run.cfg, sc.official, sc.reference, run.missing
    metrics: dict[str, Any] = {
        "run": run.info.get("run_name", run.run_dir.name),
        "run_dir": str(run.run_dir),
        "created": _now(),
        "dataset": {"name": cfg.dataset.name, "layout": cfg.dataset.layout,
                    "synthetic": sc.synthetic, "fps": cfg.dataset.fps,
                    "frame_skip": cfg.dataset.frame_skip},
        "complete": not missing,
        "expected_folds": run.expected,
        "completed_folds": run.complete,
        "missing_folds": [s.fold for s in missing],
        "missing_reasons": {s.fold: s.reason for s in missing},
        "emotions": list(official.emotions),
        "official": official.to_dict(),
        "reference": reference.to_dict(),
        "reference_emotions": list(reference.emotions),
        "per_class": _per_class(sc.pred, sc.gt, official),
        "n_predictions": int(len(sc.pred)),
        "n_ground_truth": int(len(sc.gt)),
        "pred_unscored": int(official.pred_unscored),
        "gt_unscored": int(official.gt_unscored),
        "fold_config_hash": run.config_hash,
        "versions": run.info.get("versions"),
    }
    if cfg.datasets:
        metrics["per_dataset"] = per_dataset_metrics(sc.pred, sc.gt,
                                                     [d.name for d in cfg.datasets],
                                                     sc.emotions)
    if sc.paper is not None:
        metrics["paper"] = {name: nums.model_dump() for name, nums in cfg.paper.items()}
    return metrics


def _draw_plots(run: _Run, sc: _Scores, max_videos: int) -> _Plots:
    """Step 3: per-video score curves (at most ``max_videos``), the confusion matrix,
    per-subject F1, durations, and the training curves."""
    from vrme.decoding.decode import box_smooth, peak_threshold
    from vrme.report.plots import (
        LOSS_PANELS_PER_PNG,
        confusion_png,
        durations_png,
        loss_curves_png,
        score_curve_png,
        subject_f1_png,
    )
    from vrme.training.train import read_scores

    cfg, states, state_of = run.cfg, run.states, run.state_of
    gt, intervals, official, clock = sc.gt, sc.intervals, sc.official, sc.clock
    images: list[_Image] = []

    # Per-video score curves.
    score_images: list[_Image] = []
    shown = _pick_videos(sc.all_videos, max(0, int(max_videos)))
    scores_cache: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    pred_marked = intervals.assign(status=sc.match.pred_status)
    gt_marked = gt.assign(status=sc.match.gt_status)
    for subj, vid in shown:
        f = sc.fold_of[(subj, vid)]
        if f not in scores_cache:
            scores_cache[f] = read_scores(fold_dir(run.run_dir, f))
        table, meta = scores_cache[f]
        grp = table[(table["subject"].astype(str) == subj) & (table["video"].astype(str) == vid)]
        grp = grp.sort_values("index")
        spot = grp["spot"].to_numpy(np.float64)
        k_p = int(state_of[f].marker.get("k_p") or 1)
        smoothed = box_smooth(spot, 2 * k_p) if len(spot) else spot
        thr = peak_threshold(smoothed, cfg.decode.p) if len(spot) else None
        g = gt_marked[(gt_marked["subject"] == subj) & (gt_marked["video"] == vid)]
        p = pred_marked[(pred_marked["subject"].astype(str) == subj)
                        & (pred_marked["video"].astype(str) == vid)]
        c = clock.loc[(subj, vid)] if (subj, vid) in clock.index else None
        counts = _counts_text(p["status"], g["status"])
        png = score_curve_png(grp["frame"].to_numpy(), spot, gt=g, pred=p, smoothed=smoothed,
                              threshold=thr,
                              clock=None if c is None else (c["first_frame"], c["fps"]),
                              title=f"subject {subj}, video {vid}: {len(g)} true, {len(p)} "
                                    f"predicted; {counts} (k_p={k_p})")
        score_images.append(_Image(f"score_{_safe_file_part(subj)}_{_safe_file_part(vid)}.png",
                                   png, f"Spot score of subject {subj}, video {vid} ({counts})"))
    m, rows, cols = _confusion(official, gt)
    images.append(_Image("confusion.png", confusion_png(
        m, rows, cols, title=f"Analysis on spotted intervals ({int(m.sum())} pairs)"),
        "Analysis confusion matrix on the spotted (true positive) intervals"))
    images.append(_Image("subject_f1.png", subject_f1_png(
        [s.fold for s in states],
        [float(sc.per_fold.set_index("fold").loc[s.fold, "spot_f1"]) if s.complete else None
         for s in states], pooled=official.spot_f1, title="Spotting F1 per subject"),
        "Spotting F1 per subject (fold); n/a = fold missing"))
    images.append(_Image("durations.png", durations_png(
        (intervals["offset"] - intervals["onset"] + 1).to_numpy(),
        (gt["offset"] - gt["onset"] + 1).to_numpy(),
        fps=None if cfg.datasets else cfg.dataset.fps,  # several datasets: frames only
        title="Predicted vs true micro-expression durations"),
        "Durations of predicted and true intervals"))

    # Training curves, small multiples, LOSS_PANELS_PER_PNG folds a figure.
    loss_images: list[_Image] = []
    pages = [states[i:i + LOSS_PANELS_PER_PNG] for i in range(0, len(states),
                                                              LOSS_PANELS_PER_PNG)]
    for i, page in enumerate(pages, 1):
        part = f" ({i} of {len(pages)})" if len(pages) > 1 else ""
        folds_txt = f"folds {page[0].fold} to {page[-1].fold}" if len(page) > 1 else \
            f"fold {page[0].fold}"
        loss_images.append(_Image(f"loss_curves_{i}.png", loss_curves_png(
            [s.fold for s in page],
            [s.marker.get("history") if s.complete else None for s in page],
            [str(s.marker.get("how", "")) if s.complete else "missing" for s in page],
            title=f"Training loss per epoch, {folds_txt}{part}"),
            f"Training loss, MSE and cross-entropy per epoch, {folds_txt}{part} (one y axis "
            "for all, logarithmic when the values span a decade)"))
    return _Plots(images=images, loss_images=loss_images, score_images=score_images,
                  shown=shown)


def _write_outputs(out: Path, sc: _Scores, plots: _Plots) -> tuple[dict[str, Path], list[Path]]:
    """Step 4: the tables (CSV, Parquet) and the plots; plots of videos no longer shown are
    removed. Returns the files by name and the plot paths."""
    import pyarrow as pa

    from vrme.decoding.decode import OUTPUT_COLUMNS

    files: dict[str, Path] = {}
    files["predictions"] = write_text_atomic(out / "predictions.csv", sc.pred.to_csv(index=False))
    files["ground_truth"] = write_text_atomic(out / "ground_truth.csv",
                                              sc.gt[STRS_COLUMNS].to_csv(index=False))
    files["intervals"] = write_text_atomic(out / "intervals.csv",
                                           sc.intervals[OUTPUT_COLUMNS].to_csv(index=False))
    files["per_video"] = write_text_atomic(out / "per_video.csv",
                                           sc.match.per_video.to_csv(index=False))
    files["missed"] = write_text_atomic(out / "missed.csv", sc.match.missed.to_csv(index=False))
    files["false"] = write_text_atomic(out / "false.csv", sc.match.false.to_csv(index=False))
    files["folds"] = write_parquet_atomic(out / "folds.parquet",
                                          pa.Table.from_pandas(sc.folds_df,
                                                               preserve_index=False))
    plots_dir = out / "plots"
    plot_paths = [write_bytes_atomic(plots_dir / img.name, img.data) for img in plots.all]
    keep = {p.name for p in plot_paths}
    for old in plots_dir.glob("*.png"):
        if old.name not in keep:  # curves of videos no longer shown
            old.unlink(missing_ok=True)
    return files, plot_paths


def _render(out: Path, run: _Run, sc: _Scores, plots: _Plots, metrics: dict[str, Any],
            max_videos: int, stages: Any, stages_note: str) -> dict[str, Path]:
    """Step 5: report.md and report.html from the same blocks."""
    doc = _Doc(cfg=run.cfg, info=run.info, metrics=metrics, folds_df=sc.folds_df,
               paper=sc.paper, images=plots.images, loss_images=plots.loss_images,
               score_images=plots.score_images, shown=plots.shown, all_videos=sc.all_videos,
               max_videos=max_videos, match=sc.match, stages=stages, stages_note=stages_note)
    blocks = _document(doc)
    title = f"vrme report: {metrics['run']}"
    return {"markdown": write_text_atomic(out / "report.md", _md(blocks)),
            "html": write_text_atomic(out / "report.html", _html(title, blocks))}


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts (missing values become None)."""
    obj = df.astype(object)
    return [_clean(r) for r in obj.where(obj.notna(), None).to_dict(orient="records")]
