"""Flow ``vrme-sweep``: ablations as one parent run whose children are benchmark runs.

``vrme sweep --config C --grid decode.p=0.5,0.55,0.6 --grid decode.interval_strategy=0,1`` runs
every combination of the grid (3 x 2 = 6 settings) as a child flow run of ``vrme-benchmark``
under one parent run, one after another, each in its own run folder
(``runs/<run>-<setting>/``). Every child reuses what its records say is valid: the feature
files are shared by all of them (the grid does not touch the features), and trained folds are
kept per training hash, so settings that differ only in decoding (``decode.*``, how k_p is
obtained) train nothing. ``control=True`` adds the shuffled-label control
(``train.shuffle_labels=true``) with the base settings.

The comparison is written to ``runs/<run>-sweep/``: ``sweep.csv`` (one row per setting: the
official STRS, spot F1, analysis F1 and more, what was trained), ``sweep.md`` and a plot of STRS,
spot F1 and analysis F1 per setting, and published as a table and a report artifact. A setting
whose run fails is named with its error; the others go on.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from prefect import flow

from flows._shared import (
    config_from_params,
    name_from_parameters,
    tag_this_run,
)
from flows.naming import cli_command, run_tags
from flows.outcome import finish_run
from flows.progress import RunProgress, artifact_key
from vrme.config import ConfigError, parse_override
from vrme.interrupt import stop_requested

log = logging.getLogger("vrme.flows")

CONTROL = "train.shuffle_labels=true"
METRICS = ("strs", "spot_f1", "analysis_f1", "spot_precision", "spot_recall", "spot_tp",
           "spot_fp", "spot_fn")


def parse_grid(grid: list[str]) -> list[tuple[str, list[str]]]:
    """``["decode.p=0.5,0.6", "decode.interval_strategy=0,1"]`` -> ``[("decode.p", ["0.5",
    "0.6"]), ...]``; values stay text (each is checked as a ``--set`` value). A key given twice,
    or a key without values, is a :class:`ConfigError`."""
    out: list[tuple[str, list[str]]] = []
    for item in grid:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected key.path=value1,value2,...")
        key, values = item.split("=", 1)
        key = key.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not key or not vals:
            raise ConfigError(f"--grid {item!r}: give a key and at least one value")
        if key in [k for k, _ in out]:
            raise ConfigError(f"--grid: {key} is given twice; list all its values in one --grid")
        parse_override(f"{key}={vals[0]}")  # a malformed key fails here, named
        out.append((key, vals))
    return out


def settings_of(grid: list[tuple[str, list[str]]], control: bool) -> list[list[str]]:
    """Every combination of the grid as a list of overrides (``key=value``), in grid order;
    the shuffled-label control last when asked for."""
    keys = [k for k, _ in grid]
    combos = [[f"{k}={v}" for k, v in zip(keys, vals)]
              for vals in itertools.product(*[v for _, v in grid])] if grid else [[]]
    if control:
        combos.append([CONTROL])
    return combos


def setting_label(setting: list[str]) -> str:
    """A readable label of a setting: ``decode.p=0.6 decode.interval_strategy=0``."""
    return " ".join(setting) if setting else "base"


def setting_slug(setting: list[str]) -> str:
    """A folder-safe name of a setting: ``p-0.6_interval_strategy-0`` (last key parts)."""
    if not setting:
        return "base"
    parts = []
    for s in setting:
        key, value = s.split("=", 1)
        parts.append(f"{key.split('.')[-1]}-{value}")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else (
        None if isinstance(v, float) else v)


@flow(name="vrme-sweep", flow_run_name=name_from_parameters("sweep"), persist_result=False)
def sweep_flow(config: str, grid: list[str], overrides: list[str] | None = None,
               root: str | None = None, out: str | None = None, control: bool = False,
               folds: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark for every combination of ``grid`` (``key=v1,v2`` items) as child
    flow runs, then compare them (see the module docstring)."""
    from flows.benchmark import benchmark_flow

    base = list(overrides or [])
    cfg = config_from_params(config, base, root, out)
    tag_this_run(run_tags(cfg.run_name, config, base) + ["sweep"])
    settings = settings_of(parse_grid(grid), control)
    for s in settings:  # every setting is a valid config before anything runs
        config_from_params(config, base + s + [f"run.name={cfg.run_name}-x"], root, out)
    progress = RunProgress(cfg.run_name, ["sweep"], title=f"sweep of {cfg.run_name}")
    progress.start("sweep", len(settings), "settings")
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for i, setting in enumerate(settings):
        label = setting_label(setting)
        if stop_requested():
            break
        run_name = f"{cfg.run_name}-{setting_slug(setting)}"
        child_overrides = base + setting + [f"run.name={run_name}"]
        log.info("sweep %d/%d: %s (run %s)", i + 1, len(settings), label, run_name)
        state = benchmark_flow(config=config, overrides=child_overrides, root=root, out=out,
                               folds=folds, return_state=True)
        row: dict[str, Any] = {"setting": label, "run": run_name, "state": state.name}
        if state.is_completed():
            res = state.result()
            m = ((res.get("report") or {}).get("metrics") or {}).get("official", {})
            row.update({k: _round(m.get(k)) for k in METRICS})
            row.update(folds_trained=len(res.get("folds_trained") or []),
                       folds_decoded=len(res.get("folds_decoded") or []),
                       folds_reused=len(res.get("folds_cached") or []),
                       report=(res.get("report") or {}).get("html"))
        else:
            failed[label] = state.message or state.name
            row["error"] = failed[label]
        rows.append(row)
        progress.advance("sweep", i + 1)
    progress.finish("sweep", f"{len(rows) - len(failed)} of {len(settings)} settings",
                    failed=bool(failed), stopped=stop_requested())
    sweep_dir = Path(cfg.out_dir) / "runs" / f"{cfg.run_name}-sweep"
    files = write_comparison(sweep_dir, rows, cfg.run_name, grid, base)
    _publish(cfg.run_name, rows, files)
    rerun = cli_command("sweep", config, base, root, out) + "".join(
        f" --grid {g}" for g in grid) + (" --control" if control else "")
    return finish_run(progress, {"rows": rows, "files": {k: str(v) for k, v in files.items()}},
                      settings=failed,
                      interrupted=stop_requested(), rerun=rerun)


def write_comparison(folder: Path, rows: list[dict[str, Any]], run_name: str, grid: list[str],
                     base: list[str]) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.png`` (STRS, spot F1, analysis F1 per setting) and ``sweep.md``
    in ``folder``; returns their paths."""
    import pandas as pd

    from vrme.io import write_bytes_atomic, write_json_atomic, write_text_atomic
    from vrme.report.plots import metric_bars_png

    df = pd.DataFrame(rows)
    files = {"csv": write_text_atomic(folder / "sweep.csv", df.to_csv(index=False))}
    ok = df[df["state"] == "Completed"] if len(df) else df
    if len(ok):
        png = metric_bars_png(list(ok["setting"]),
                              {"STRS": list(ok["strs"]), "spot F1": list(ok["spot_f1"]),
                               "analysis F1": list(ok["analysis_f1"])},
                              title=f"Sweep of {run_name}")
        files["plot"] = write_bytes_atomic(folder / "plots" / "sweep.png", png)
    head = ["setting", "STRS", "spot F1", "analysis F1", "spot P", "spot R", "TP", "FP", "FN",
            "trained", "decoded", "reused", "run"]
    lines = [f"# Sweep of {run_name}", "",
             f"Grid: {', '.join(grid) or 'none'}; base overrides: {', '.join(base) or 'none'}. "
             "Official STRS of every setting's leave-one-subject-out run; trained / decoded / "
             "reused = folds trained, decoded again from a trained fold, reused as they were.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['setting']} | failed: {str(r['error'])[:200]} |"
                         + " |" * (len(head) - 2))
            continue
        cells = [r["setting"], r.get("strs"), r.get("spot_f1"), r.get("analysis_f1"),
                 r.get("spot_precision"), r.get("spot_recall"), r.get("spot_tp"),
                 r.get("spot_fp"), r.get("spot_fn"), r.get("folds_trained"),
                 r.get("folds_decoded"), r.get("folds_reused"), r["run"]]
        lines.append("| " + " | ".join("n/a" if c is None else str(c) for c in cells) + " |")
    if "plot" in files:
        lines += ["", "![STRS, spot F1 and analysis F1 per setting](plots/sweep.png)"]
    files["markdown"] = write_text_atomic(folder / "sweep.md", "\n".join(lines) + "\n")
    files["json"] = write_json_atomic(folder / "sweep.json", {"grid": grid, "base": base,
                                                              "rows": json.loads(
                                                                  df.to_json(orient="records"))})
    return files


def _publish(run_name: str, rows: list[dict[str, Any]], files: dict[str, Path]) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from flows.report import markdown_with_inline_images

    try:
        create_table_artifact(table=rows, key=artifact_key(run_name, "sweep"),
                              description=f"Sweep of {run_name}: one row per setting")
        md = Path(files["markdown"])
        create_markdown_artifact(
            markdown=f"Sweep folder: `{md.parent.absolute()}`\n\n"
                     + markdown_with_inline_images(md.read_text(), md.parent / "plots"),
            key=artifact_key(run_name, "sweep-report"), description=f"Sweep of {run_name}")
    except Exception as exc:  # noqa: BLE001 - artifacts never fail a run
        log.warning("could not publish the sweep's artifacts: %s", exc)
