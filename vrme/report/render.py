"""Rendering the report: the blocks of the document (how the run was made, training, the
per-video results) as Markdown (``report.md``) and self-contained HTML (``report.html``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import vrme
from vrme.config import Config
from vrme.record import RUN_INFO_FILE, code_versions
from vrme.report.score import MAX_LISTED, _Matching


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "n/a" if not math.isfinite(float(v)) else f"{float(v):.{digits}f}"
    return str(v)


@dataclass
class _Table:
    header: list[str]
    rows: list[list[Any]]
    left: set[int] = field(default_factory=set)  # text columns, left-aligned in HTML


@dataclass
class _Image:
    name: str  # file name under plots/
    data: bytes
    caption: str


def _md(blocks: list[tuple[str, Any]]) -> str:
    out: list[str] = []
    for kind, b in blocks:
        if kind == "h1":
            out.append(f"# {b}\n")
        elif kind == "h2":
            out.append(f"## {b}\n")
        elif kind == "h3":
            out.append(f"### {b}\n")
        elif kind == "code":
            lang, text = b
            out.append(f"```{lang}\n{text}\n```\n")
        elif kind == "p":
            out.append(f"{b}\n")
        elif kind == "warn":
            out.append(f"> **Warning:** {b}\n")
        elif kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join("---" for _ in b.header) + "|")
            for r in b.rows:
                out.append("| " + " | ".join(_fmt(x).replace("|", "\\|") for x in r) + " |")
            out.append("")
        elif kind == "img":
            out.append(f"![{b.caption}](plots/{b.name})\n")
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1060px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.6em 0 1.2em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:0.9em}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.warn{background:#fff3cd;border:1px solid #e0c36b;padding:0.6em 1em}
figure{margin:0.8em 0}figcaption{font-size:0.85em;color:#555}img{max-width:100%}
td.t{text-align:left}pre{background:#f6f6f6;padding:0.6em;font-size:0.85em;overflow-x:auto}
summary{cursor:pointer}
"""


def _html(title: str, blocks: list[tuple[str, Any]]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"]
    for kind, b in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{esc(str(b))}</{kind}>")
        elif kind == "code":
            lang, text = b
            out.append(f"<details><summary>{esc(lang.upper())} ({text.count(chr(10)) + 1} "
                       f"lines)</summary><pre>{esc(text)}</pre></details>")
        elif kind == "p":
            out.append(f"<p>{esc(str(b))}</p>")
        elif kind == "warn":
            out.append(f"<p class=\"warn\"><b>Warning:</b> {esc(str(b))}</p>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in b.header)
                       + "</tr></thead><tbody>")
            for r in b.rows:
                out.append("<tr>" + "".join(
                    f"<td class=\"t\">{esc(_fmt(x))}</td>" if i in b.left else
                    f"<td>{esc(_fmt(x))}</td>" for i, x in enumerate(r)) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b.data).decode("ascii")
            out.append(f"<figure><img alt=\"{esc(b.caption)}\" src=\"data:image/png;base64,"
                       f"{data}\"><figcaption>{esc(b.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


@dataclass
class _Doc:
    """Everything :func:`_document` renders."""

    cfg: Config
    info: dict[str, Any]
    metrics: dict[str, Any]
    folds_df: pd.DataFrame
    paper: list[list[Any]] | None
    images: list[_Image]
    loss_images: list[_Image]
    score_images: list[_Image]
    shown: list[tuple[str, str]]
    all_videos: list[tuple[str, str]]
    max_videos: int
    match: _Matching
    stages: dict[str, Any] | None
    stages_note: str


def _secs(v: Any, digits: int = 1) -> str | None:
    """Seconds as text with ``digits`` decimals (None when missing)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f"{f:.{digits}f}" if math.isfinite(f) else None


def _utc(ts: Any) -> str | None:
    try:
        return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).replace(
            microsecond=0).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _number(v: Any) -> float | None:
    """``v`` as a finite float, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _stage_order(stages: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Stages in the order they started (stages that never started last, by name)."""
    def key(item: tuple[str, dict[str, Any]]) -> tuple[int, float, str]:
        start = _number(item[1].get("started"))
        return (0, start, item[0]) if start is not None else (1, 0.0, item[0])

    return sorted(stages.items(), key=key)


def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` of a nested mapping, leaves only."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.extend(_flat(v, key) if isinstance(v, dict) and v else [(key, v)])
    return out


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _provenance(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'How this run was made': config, code versions, machine, stages."""
    info, cfg = d.info, d.cfg
    b: list[tuple[str, Any]] = [("h2", "How this run was made")]
    if info:
        b.append(("p", f"Config {info.get('config_source') or '(given in code, no file)'}; "
                       f"run.json written {info.get('created', 'n/a')}. The whole config is in "
                       "the appendix as YAML."))
    else:
        b.append(("warn", f"No {RUN_INFO_FILE} in the run folder: the config below is the one "
                          "passed to the report, the code versions and machine of the run are "
                          "not recorded."))
    # Code versions: the run's (run.json) beside this report's code.
    ran = info.get("versions") or {}
    ran_code = ran.get("code") or {}
    now = {"vrme": vrme.__version__, "python": platform.python_version(), **code_versions()}
    b.append(("h3", "Code versions"))
    rows, differ = [], []
    for key in ("vrme", "python", *code_versions()):
        r = ran.get(key) if key in ("vrme", "python") else ran_code.get(key)
        if r is not None and str(r) != str(now[key]):
            differ.append(key)
        rows.append([key, "not recorded" if r is None else str(r), str(now[key])])
    src = ran.get("source")
    rows.append(["source (git commit)", "not a git checkout" if not src and "source" in ran
                 else "not recorded" if not src else
                 f"{src.get('commit', '')[:12]}"
                 f"{' (uncommitted changes)' if src.get('dirty') else ''}",
                 ""])
    for key, label in (("feature_hash", "feature hash"), ("fold_config_hash", "fold config hash")):
        rows.append([label, info.get(key) or "not recorded", ""])
    b.append(("table", _Table(["component", "run (run.json)", "this report's code"], rows)))
    if differ:
        b.append(("warn", f"The code now differs from the code that made the run in: "
                          f"{', '.join(differ)}. The folds' numbers are the run's own (read "
                          "from its files); only the scoring and this report are today's."))
    # Machine.
    mach = info.get("machine")
    b.append(("h3", "Machine"))
    if isinstance(mach, dict) and mach:
        b.append(("table", _Table(["key", "value"], [[k, _value_text(v)] for k, v in mach.items()],
                                  left={1})))
    else:
        b.append(("p", "run.json records no machine."))
    # Stages.
    b.append(("h3", "Time and outcome of each stage"))
    b.append(("p", d.stages_note))
    if d.stages is not None:
        srows, total, spans = [], 0.0, []
        for name, st in _stage_order(d.stages):
            sec, start = _number(st.get("seconds")), _number(st.get("started"))
            if sec is not None:
                total += sec
                if start is not None:
                    spans.append((start, start + sec))
            done, tot = st.get("done"), st.get("total")
            count = f"{done}/{tot} {st.get('unit') or ''}".strip() if tot else ""
            note = str(st.get("note") or "")
            if name == "report" and st.get("status") in ("pending", "running"):
                note = (note + "; " if note else "") + "recorded before this report was built"
            srows.append([name, st.get("status"), count, _utc(start), _secs(sec), note])
        span = (f"; {max(e for _, e in spans) - min(b for b, _ in spans):.1f} s from the first "
                "stage's start to the last one's end") if spans else ""
        srows.append(["all stages", "", "", "", _secs(total),
                      f"sum of the stages' seconds{span}"])
        b.append(("table", _Table(["stage", "status", "done", "started (UTC)", "seconds",
                                   "note"], srows, left={5})))
    # The settings that decide the numbers.
    conf = cfg.model_dump(mode="json")
    b.append(("h3", "Settings"))
    b.append(("p", "Every key of the config, section by section (nested keys dotted)."))
    crow = [[sec, "; ".join(f"{k}={_value_text(v)}" for k, v in _flat(val))]
            for sec, val in conf.items() if isinstance(val, dict) and val]
    crow += [[sec, _value_text(val)] for sec, val in conf.items()
             if not isinstance(val, dict) and val is not None]
    b.append(("table", _Table(["section", "settings"], crow, left={1})))
    return b


def _training(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'Per-fold training': loss curves and a table of each fold's training."""
    b: list[tuple[str, Any]] = [("h2", "Per-fold training")]
    b.append(("p", "How: trained = trained when the fold was written; decoded = a trained "
                   "model with the same training hash reused (models/<train hash>) and its "
                   "scores decoded again. Load, train and predict seconds are those of the "
                   "training that made the model; decode and total those of the run that wrote "
                   "the fold. Lowest loss = the smallest epoch loss (its epoch)."))
    rows = []
    for r in d.folds_df.itertuples(index=False):
        low = None if pd.isna(r.min_loss) else f"{r.min_loss:.4f} ({int(r.min_loss_epoch)})"
        rows.append([r.fold, r.how or r.status, None if pd.isna(r.epochs) else int(r.epochs),
                     r.final_loss, r.final_mse, r.final_ce, low,
                     None if pd.isna(r.n_train_windows) else int(r.n_train_windows),
                     None if pd.isna(r.threads) else int(r.threads), _secs(r.load_s),
                     _secs(r.train_s), _secs(r.predict_s), _secs(r.decode_s, 2),
                     _secs(r.total_s), r.train_hash or None, r.decode_hash or None])
    b.append(("table", _Table(["fold", "how", "epochs", "final loss", "final MSE", "final CE",
                               "lowest loss (epoch)", "train windows", "threads", "load s",
                               "train s", "predict s", "decode s", "total s", "train hash",
                               "decode hash"], rows)))
    for img in d.loss_images:
        b.append(("img", img))
    return b


def _per_video(d: _Doc) -> list[tuple[str, Any]]:
    """The blocks of 'Per video': counts per video, the missed and the false intervals."""
    mt, off = d.match, d.metrics["official"]
    pv = mt.per_video
    b: list[tuple[str, Any]] = [("h2", "Per video")]
    b.append(("p", "Official STRS matching: in each video every true interval goes to the first "
                   "prediction (table order) with IoU >= 0.5; one prediction may claim several. "
                   "TP = true intervals claimed, FP = predictions that claimed none, FN = true "
                   f"intervals nobody claimed. Summed over videos: TP {int(pv['tp'].sum())}, "
                   f"FP {int(pv['fp'].sum())}, FN {int(pv['fn'].sum())} (official spot TP "
                   f"{off['spot_tp']}, FP {off['spot_fp']}, FN {off['spot_fn']}). Not scored "
                   "(the official rules leave them out): predictions in a video without ground "
                   "truth, ground truth of a subject without any prediction. Also in "
                   "per_video.csv."))
    rows = [[r.subject, r.video, None if pd.isna(r.frames) else int(r.frames),
             _secs(r.seconds), r.true, r.predicted, r.tp, r.fp, r.fn, r.pred_unscored,
             r.gt_unscored] for r in pv.itertuples(index=False)]
    b.append(("table", _Table(["subject", "video", "frames", "seconds", "true", "predicted",
                               "TP", "FP", "FN", "predicted, not scored",
                               "true, not scored"], rows)))

    def capped(df: pd.DataFrame, what: str, file: str) -> pd.DataFrame:
        if len(df) > MAX_LISTED:
            b.append(("p", f"The first {MAX_LISTED} of {len(df)} {what} are listed; {file} and "
                           "metrics.json have them all."))
        return df.head(MAX_LISTED)

    b.append(("h3", f"Missed true intervals (FN, {len(mt.missed)})"))
    b.append(("p", "Frames are original numbers, seconds count from the video's first frame; "
                   "row = 0-based row of ground_truth.csv / predictions.csv (file line = row + "
                   "2). Best IoU: the closest prediction of the same video."))
    if len(mt.missed):
        rows = [[r.subject, r.video, r.gt_row, r.onset, r.offset, _secs(r.onset_s, 2),
                 _secs(r.offset_s, 2), r.emotion, r.best_iou, r.reason]
                for r in capped(mt.missed, "missed intervals", "missed.csv").itertuples(
                    index=False)]
        b.append(("table", _Table(["subject", "video", "gt row", "onset", "offset", "onset s",
                                   "offset s", "emotion", "best IoU", "why"], rows, left={9})))
    else:
        b.append(("p", "None: every scored true interval was found."))
    b.append(("h3", f"False predicted intervals (FP, {len(mt.false)})"))
    if len(mt.false):
        rows = [[r.subject, r.video, r.pred_row, r.onset, r.offset, _secs(r.onset_s, 2),
                 _secs(r.offset_s, 2), None if pd.isna(r.apex) else int(r.apex), r.emotion,
                 r.score, r.best_iou, r.reason]
                for r in capped(mt.false, "false intervals", "false.csv").itertuples(
                    index=False)]
        b.append(("table", _Table(["subject", "video", "pred row", "onset", "offset", "onset s",
                                   "offset s", "apex", "emotion", "score", "best IoU", "why"],
                                  rows, left={11})))
    else:
        b.append(("p", "None: every scored prediction claimed a true interval."))
    return b


def _config_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          default_flow_style=False).rstrip()


def _document(d: _Doc) -> list[tuple[str, Any]]:
    metrics, folds_df = d.metrics, d.folds_df
    ds = metrics["dataset"]
    b: list[tuple[str, Any]] = [("h1", f"vrme report: {metrics['run']}")]
    kind = "synthetic" if ds["synthetic"] else "real"
    b.append(("p", f"Dataset {ds['name']} ({ds['layout']} layout, {kind}), {ds['fps']:g} fps, "
                   f"frame skip {ds['frame_skip']}. Leave-one-subject-out: "
                   f"{len(metrics['completed_folds'])} of {len(metrics['expected_folds'])} folds "
                   f"complete; {metrics['n_predictions']} predicted and "
                   f"{metrics['n_ground_truth']} true micro-expressions. Frame numbers are "
                   f"original numbers. Built {metrics['created']}."))
    if not metrics["complete"]:
        miss = ", ".join(f"{f} ({metrics['missing_reasons'][f]})"
                         for f in metrics["missing_folds"])
        b.append(("warn", f"Incomplete run: missing folds {miss}. The numbers below cover the "
                          "complete folds only."))
    b.append(("h2", "Headline numbers"))
    b.append(("p", "Official = the MEGC STRS evaluator (the number to report); paper-code "
                   "scoring = the reference implementation's own evaluator (soft matching, "
                   "negative/positive/surprise only), shown to compare with published numbers."))
    rows = []
    for key, label in (("strs", "STRS"), ("spot_tp", "spot TP"), ("spot_fp", "spot FP"),
                       ("spot_fn", "spot FN"), ("spot_precision", "spot precision"),
                       ("spot_recall", "spot recall"), ("spot_f1", "spot F1"),
                       ("analysis_precision", "analysis precision"),
                       ("analysis_recall", "analysis recall"), ("analysis_f1", "analysis F1"),
                       ("analysis_uf1", "analysis UF1")):
        rows.append([label, metrics["official"][key], metrics["reference"][key]])
    b.append(("table", _Table(["metric", "official", "paper-code scoring"], rows)))
    if metrics.get("per_dataset"):
        b.append(("h2", "Per dataset"))
        b.append(("p", "One benchmark over several datasets (the MEGC protocol): the official "
                       "STRS of each dataset's subjects scored alone, then of all of them pooled "
                       "(the headline above)."))
        drows = []
        for name, m in metrics["per_dataset"].items():
            m = m or {}
            drows.append([name, m.get("strs"), m.get("spot_f1"), m.get("analysis_f1"),
                          m.get("spot_tp"), m.get("spot_fp"), m.get("spot_fn"), m.get("n_gt")])
        o = metrics["official"]
        drows.append(["pooled", o["strs"], o["spot_f1"], o["analysis_f1"], o["spot_tp"],
                      o["spot_fp"], o["spot_fn"], metrics["n_ground_truth"]])
        b.append(("table", _Table(["dataset", "STRS", "spot F1", "analysis F1", "TP", "FP",
                                   "FN", "true"], drows)))
    if d.paper is not None:
        b.append(("h2", "Beside the paper (Table 3)"))
        b.append(("p", "Published numbers come from the config's paper section. The paper's "
                       "own numbers were computed with the paper-code scoring and with k_p "
                       "estimated over all subjects; this run estimates priors per fold."))
        b.append(("table", _Table(["method", "STRS", "spot F1", "recog F1"], d.paper)))
    b.extend(_provenance(d))
    b.append(("h2", "Per emotion"))
    b.append(("p", "Spot recall: share of the emotion's true intervals that were spotted. "
                   "Spot precision: share of intervals predicted with that emotion that match a "
                   "true interval. Analysis: official one-vs-rest on the spotted pairs."))
    prow = []
    for e, r in metrics["per_class"].items():
        prow.append([e, r["n_gt"], r["n_pred"], r["spotted"], r["spot_recall"],
                     r["spot_precision"], r.get("analysis_precision"),
                     r.get("analysis_recall"), r.get("analysis_f1")])
    b.append(("table", _Table(["emotion", "true", "predicted", "spotted", "spot recall",
                               "spot precision", "analysis precision", "analysis recall",
                               "analysis F1"], prow)))
    for img in d.images:
        b.append(("img", img))
    b.append(("h2", "Per fold"))
    frows = [[r.fold, r.status, r.strs, r.spot_f1, r.analysis_f1, r.n_pred, r.n_gt,
              None if pd.isna(r.k_p) else int(r.k_p), _secs(r.train_s), r.final_loss]
             for r in folds_df.itertuples(index=False)]
    b.append(("table", _Table(["fold", "status", "STRS", "spot F1", "analysis F1", "predicted",
                               "true", "k_p", "train s", "final loss"], frows)))
    b.extend(_training(d))
    b.extend(_per_video(d))
    b.append(("h2", "Score curves"))
    names = ", ".join(f"{s}/{v}" for s, v in d.shown)
    b.append(("p", f"Per-frame spot score of {len(d.shown)} of {len(d.all_videos)} videos "
                   f"(round-robin over subjects, at most {d.max_videos}; every video is in the "
                   f"per-video table): {names}. Bottom axis: original frame numbers; top axis: "
                   "seconds from the video's first frame. Shaded bands = true "
                   "micro-expressions (dashed outline = missed), bars under the curve = "
                   "predicted intervals (tick = apex; solid = TP, hatched = FP, outline = not "
                   "scored), coloured by emotion; dashed = smoothed score, dotted = peak "
                   "threshold."))
    for img in d.score_images:
        b.append(("img", img))
    b.append(("h2", "Appendix: the config (YAML)"))
    b.append(("p", "The run's whole config (from run.json), as `vrme run --config` reads it."))
    b.append(("code", ("yaml", _config_yaml(d.cfg))))
    return b
