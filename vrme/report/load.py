"""Loading a run for its report: which folds finished (:func:`fold_states`), the ingest tables
the run used, and the stage record ``stages.json`` an orchestrator wrote.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.catalog import FOLD_FAILURE_FILES, RUN_FAILURES_FILE, STAGES_FILE, fold_dir
from vrme.config import Config
from vrme.errors import DataError


@dataclass
class FoldState:
    """One expected fold: whether it finished, and if not why (``reason``)."""

    fold: str
    complete: bool
    reason: str = ""
    marker: dict[str, Any] = field(default_factory=dict)


def fold_states(run_dir: str | os.PathLike[str], expected: list[str],
                config_hash: str | None = None) -> list[FoldState]:
    """The state of every expected fold under ``run_dir/folds``: complete, or why not (not
    run, no fold.json, output files missing, made with another config, or the message of a
    ``failed.json``/``error.json`` an orchestrator left there)."""
    from vrme.training.train import fold_is_complete, read_fold_marker

    run_failures: dict[str, Any] = {}
    try:
        run_failures = (json.loads((Path(run_dir) / RUN_FAILURES_FILE).read_text())
                        .get("folds") or {})
    except (OSError, ValueError, AttributeError):
        pass
    out = []
    for f in expected:
        d = fold_dir(run_dir, f)
        marker = read_fold_marker(d) or {}
        if fold_is_complete(d):
            if config_hash and marker.get("config_hash") != config_hash:
                out.append(FoldState(f, False, "made with another config (fold hash "
                                     f"{marker.get('config_hash')} != run {config_hash})",
                                     marker))
            else:
                out.append(FoldState(f, True, "", marker))
            continue
        if not d.is_dir():
            reason = "not run"
        elif marker:
            reason = "output files missing" if marker.get("status") == "complete" else \
                f"status {marker.get('status')!r}"
        else:
            reason = "did not finish (no fold.json)"
        for name in FOLD_FAILURE_FILES:
            p = d / name
            if p.is_file():
                try:
                    data = json.loads(p.read_text())
                    msg = data.get("message") or data.get("error") if isinstance(data, dict) \
                        else str(data)
                except (OSError, ValueError):
                    msg = p.read_text(errors="replace")[:300]
                if msg:
                    reason = f"failed: {str(msg).strip()[:300]}"
                break
        else:
            rec = run_failures.get(str(f))
            msg = rec.get("message") if isinstance(rec, dict) else rec
            if msg:
                reason = f"failed: {str(msg).strip()[:300]}"
        out.append(FoldState(f, False, reason, marker))
    return out


def _first_file(*candidates: Any) -> Path | None:
    for c in candidates:
        if c is not None and Path(c).is_file():
            return Path(c)
    return None


def _load_tables(run_dir: Path, cfg: Config, info: dict[str, Any],
                 manifest: pd.DataFrame | str | os.PathLike[str] | None,
                 labels: pd.DataFrame | str | os.PathLike[str] | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    from vrme.schema import read_labels, read_manifest

    # The run folder sits at <out>/runs/<name>; ingestion writes <out>/ingest.
    sibling = run_dir.parent.parent / "ingest"
    tables = []
    for given, key, name, reader in ((manifest, "manifest", "manifest.parquet", read_manifest),
                                     (labels, "labels", "labels.parquet", read_labels)):
        if isinstance(given, pd.DataFrame):
            tables.append(given)
            continue
        path = _first_file(given, info.get(key), cfg.ingest_dir / name, sibling / name)
        if path is None:
            tried = [str(p) for p in (given, info.get(key), cfg.ingest_dir / name,
                                      sibling / name) if p is not None]
            raise DataError(f"{name} of run {run_dir} not found (looked at {', '.join(tried)}); "
                            "run `vrme ingest` or pass the tables")
        tables.append(reader(path))
    return tables[0], tables[1]


def read_stages(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str]:
    """The stages of ``<run_dir>/stages.json`` (``{name: {"status", "done", "total", "unit",
    "note", "started", "seconds"}}``) and a note; (None, why) when the file is missing or not
    readable."""
    p = Path(run_dir) / STAGES_FILE
    if not p.is_file():
        return None, (f"No {STAGES_FILE} in the run folder: the run was not made by a vrme flow "
                      "(vrme run, vrme benchmark) but by the library directly, which records "
                      "no time per stage. Each fold's own times are under Per-fold training.")
    try:
        data = json.loads(p.read_text())
        stages = data["stages"]
        if not isinstance(stages, dict) or not all(isinstance(v, dict)
                                                   for v in stages.values()):
            raise ValueError("'stages' is not an object of objects")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{p} is not readable ({exc}): no time per stage shown."
    return stages, (f"From {STAGES_FILE} as it was when this report was built (a run builds "
                    "its report before it records the report stage as finished).")
