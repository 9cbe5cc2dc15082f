"""Ingestion: from a dataset root to ``manifest.parquet``, ``labels.parquet`` and ``skipped.csv``.

The layout (``dataset.layout``, one module each in ``vrme/data/layouts/``, DATASETS.md) scans the
root into videos and reads its labels into the common event table; this module does the rest
for every layout alike: frame listing and gaps, the manifest, events checked against the videos
on disk, and the three tables:

- ``casme3``: ``ROOT/data/<subject>/<video>/color/<n>.jpg`` + ``casme3_label.xlsx``
- ``samm_lv``: ``ROOT/SAMM_longvideos/<video>/<video>_<nnnn>.jpg`` + the two SAMM spreadsheets
- ``casme2``: ``ROOT/rawpic/s<NN>/<NN>_<code><name>/img<nnn>.jpg`` + ``CAS(ME)^2code_final.xlsx``
- ``megc`` / ``videos``: unlabelled; every folder holding numbered images is a video (MEGC test
  sets in either layout), and every .mp4/.avi/.mov/.mkv file is a video read through OpenCV.

Every video or label row that is left out lands in ``skipped.csv`` with its reason, and so does
every file of a frame folder that is not one of the video's frames.

Identity rule (how a label row finds its video): the layout's scan gives each video a
(subject folder, video) key and its reader gives each event the same key, each by one exact
rule (CAS(ME)^3 ``Subject`` and ``Filename`` name the folder ``data/<Subject>/<Filename>/``; a
SAMM-LV ``Filename`` ``<s>_<v>_<n>`` names ``SAMM_longvideos/<s>_<v>/``; CAS(ME)^2 see its
module). Nothing else matches (no case folding, no number matching); a row whose folder is not
there is reported with the nearest folder on disk.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrme.data import layouts as layouts
from vrme.catalog import LABELS_FILE, MANIFEST_FILE, SKIPPED_FILE
from vrme.config import Config, DatasetConfig
from vrme.errors import DataError, FrameError
from vrme.data.frames import (
    VIDEO_EXTENSIONS,
    FrameListing,
    count_video_frames,
    list_frames,
    natural_key,
)
from vrme.io import write_text_atomic
from vrme.data.labels import EVENT_COLUMNS, Issue, safe_name, with_changes
from vrme.data.layouts import VideoEntry  # noqa: F401 - re-exported (it lives in vrme.data.layouts)
from vrme.data.layouts.casme3 import scan as scan_casme3  # noqa: F401 - re-exported
from vrme.data.layouts.samm_lv import scan as scan_samm  # noqa: F401 - re-exported
from vrme.data.layouts.unlabelled import scan_unlabelled  # noqa: F401 - re-exported
from vrme.schema import LABELS_SCHEMA, MANIFEST_SCHEMA, SKIPPED_COLUMNS, write_table

log = logging.getLogger(__name__)

INGEST_RECORD = "ingest.json"
INGEST_VERSION = 2
"""Version of the ingestion rules (what is read, kept and skipped). Part of the ingest record:
bump it with any change that changes the manifest, the labels or skipped.csv."""


@dataclass
class IngestResult:
    """What ingestion produced: tables and where they were written."""

    manifest: pd.DataFrame
    labels: pd.DataFrame
    skipped: pd.DataFrame
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for the summary table: videos, frames, events per class, skipped by reason."""
        micro = self.labels[self.labels["type"] == "micro"]
        return {
            "videos": int(len(self.manifest)),
            "subjects": int(self.manifest["subject"].nunique()) if len(self.manifest) else 0,
            "frames": int(self.manifest["n_frames"].sum()) if len(self.manifest) else 0,
            "micro_by_emotion": micro["emotion"].value_counts().sort_index().to_dict(),
            "macro": int((self.labels["type"] == "macro").sum()),
            "skipped_by_reason": _reason_counts(self.skipped),
        }


def _reason_counts(skipped: pd.DataFrame) -> dict[str, int]:
    if skipped.empty:
        return {}
    # Group reasons that differ only in numbers/quoted values.
    keys = skipped["kind"] + ": " + skipped["reason"].map(_reason_family)
    return {k: int(v) for k, v in keys.value_counts().sort_index().items()}


def _reason_family(reason: str) -> str:
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    text = re.sub(r"\d+", "N", text)
    return text.split(":")[0] if ": " in text and len(text) > 60 else text


# -- the dataset section ----------------------------------------------------------------------


def _dataset(cfg: Config | DatasetConfig) -> DatasetConfig:
    """The dataset section of a config (the functions below take either)."""
    return cfg.dataset if isinstance(cfg, Config) else cfg


def _describe_gaps(gaps: list[tuple[int, int]]) -> str:
    runs = [str(a) if a == b else f"{a}-{b}" for a, b in gaps]
    text = ", ".join(runs[:10]) + (" …" if len(runs) > 10 else "")
    return f"frames {text} ({sum(b - a + 1 for a, b in gaps)} missing)"


def _some(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                       else "")


def build_manifest(
    entries: Iterable[VideoEntry], root: Path, cfg: Config | DatasetConfig
) -> tuple[pd.DataFrame, list[Issue]]:
    """List each video's frames, detect gaps, and build manifest rows (schema MANIFEST_SCHEMA).
    ``cfg`` is a config or its dataset section."""
    import cv2

    ds = _dataset(cfg)
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for e in entries:
        base = Issue(kind="video", subject=e.subject, video=e.video)
        if (e.subject, e.video) in seen:
            issues.append(with_changes(base, item=str(e.folder or e.file),
                                 reason="another video has the same subject and name"))
            continue
        seen.add((e.subject, e.video))
        if e.file is not None:
            try:
                n, fps, w, h = count_video_frames(e.file)
            except FrameError as exc:
                issues.append(with_changes(base, item=_rel(e.file, root), reason=str(exc)))
                continue
            rows.append(_row(ds, e, root, _rel(e.file, root), "video", None, 0, n - 1, n, n, [],
                             "video", fps or ds.fps, w, h))
            continue
        assert e.folder is not None
        prefix_of = layouts.get(ds.layout).frame_prefix
        try:
            listing = list_frames(e.folder, prefix_of(e.video) if prefix_of else None)
        except FrameError as exc:
            issues.append(with_changes(base, item=_rel(e.folder, root), reason=f"no frames: {exc}"))
            continue
        pattern = listing.describe_pattern()
        if listing.ignored:
            issues.append(with_changes(base, kind="frames", item=_some(listing.ignored),
                                 reason=f"{len(listing.ignored)} file(s) not named like the "
                                        f"video's frames ({pattern}): not read",
                                 action="ignored"))
        numbering = "contiguous"
        if listing.gaps:
            numbering = "gaps"
            limit = ds.max_frame_gap
            if listing.longest_gap > limit:
                long = [(a, b) for a, b in listing.gaps if b - a + 1 > limit]
                issues.append(with_changes(
                    base, kind="video", item=_describe_gaps(long),
                    reason=f"frame gap longer than dataset.max_frame_gap ({limit}): no file "
                           f"for {_describe_gaps(long)} between {listing.files[0]} and "
                           f"{listing.files[-1]} ({pattern})", action="skipped"))
                continue
            skip = ds.on_frame_gap == "skip_video"
            issues.append(with_changes(
                base, kind="frames", item=_describe_gaps(listing.gaps), reason="frame gap",
                action="skipped (video left out: dataset.on_frame_gap=skip_video)" if skip
                else "filled (each missing frame repeats the previous one)",
            ))
            if skip:
                continue
        first_path = listing.folder / listing.files[0]
        img = cv2.imread(str(first_path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            issues.append(with_changes(base, item=_rel(first_path, root),
                                 reason="first frame is not a decodable image"))
            continue
        n_frames = listing.last - listing.first + 1
        rows.append(_row(ds, e, root, _rel(e.folder, root), "frames", listing, listing.first,
                         listing.last, n_frames, len(listing.files), listing.missing, numbering,
                         ds.fps, img.shape[1], img.shape[0]))
    df = pd.DataFrame(rows, columns=MANIFEST_SCHEMA.names)
    return df, issues


def _row(ds: DatasetConfig, e: VideoEntry, root: Path, path: str, source: str,
         listing: FrameListing | None, first: int, last: int, n_frames: int, n_files: int,
         missing: list[int], numbering: str, fps: float, w: int, h: int) -> dict[str, Any]:
    prefix, suffix, pad, files = "", "", 0, []
    if listing is not None:
        prefix, suffix, pad = listing.pattern
    return dict(dataset=ds.name, subject=e.subject, subject_dir=e.subject_dir,
                video=e.video, source=source, path=path, name_prefix=prefix, name_suffix=suffix,
                pad_width=pad, frame_files=files, first_frame=first, last_frame=last,
                n_frames=n_frames, n_files=n_files, missing_frames=list(missing),
                frame_numbering=numbering, fps=float(fps), width=int(w), height=int(h),
                labelled=False)


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()




# -- labels against videos ----------------------------------------------------------------------


def label_folder(layout: str, subject_dir: str, video: str) -> str:
    """The folder a label row names, relative to the root (the identity rule)."""
    return layouts.get(layout).where(subject_dir, video)


def _nearest(target: str, candidates: list[str]) -> str:
    """' nearest: X' for the candidate most like ``target`` (same text in another case first,
    then the closest by difflib), or '' if none is close."""
    folded = [c for c in candidates if c.casefold() == target.casefold()]
    if folded:
        return f"; nearest: {folded[0]} (names are compared exactly, case included)"
    close = difflib.get_close_matches(target, candidates, n=1, cutoff=0.6)
    return f"; nearest: {close[0]}" if close else ""


def validate_events(
    events: pd.DataFrame, manifest: pd.DataFrame, emotion_map: dict[str, str],
    layout: str = "casme3", on_disk: dict[tuple[str, str], str | None] | None = None,
) -> tuple[pd.DataFrame, list[Issue]]:
    """Check each event against the videos on disk and the emotion map.

    A label row's video is the folder its subject and video name exactly (see the module
    docstring); ``on_disk`` maps every (subject_dir, video) found under the root to the reason
    it was left out of ``manifest`` (None if it is in it), so that a label of a video that is
    on disk but unusable says why. Left out (with an Issue): unknown emotion (micro only),
    onset > offset, a video not on disk (with the nearest folder) or left out, an event beyond
    the video's last frame or before its first. Kept with a note: an apex outside
    [onset, offset]. Repeated and contradictory rows were dropped by the readers.
    """
    issues: list[Issue] = []
    keep: list[bool] = []
    bounds = {
        (r.subject_dir, r.video): (int(r.first_frame), int(r.last_frame), r.subject)
        for r in manifest.itertuples(index=False)
    }
    on_disk = on_disk if on_disk is not None else {k: None for k in bounds}
    folders = [label_folder(layout, s, v) for s, v in on_disk]
    nearest: dict[str, str] = {}
    subjects = events["subject"].tolist()
    for n, r in enumerate(events.itertuples(index=False)):
        base = Issue(kind="label", file=r.source_file, sheet=getattr(r, "source_sheet", "") or "",
                     row=int(r.source_row), subject=r.subject_dir, video=r.video,
                     item=f"{r.onset}-{r.offset}")
        ok = True
        key = (r.subject_dir, r.video)
        if r.type == "micro" and (r.emotion is None or pd.isna(r.emotion)):
            known = ", ".join(sorted(emotion_map))
            issues.append(with_changes(base, reason=f"unknown emotion {r.emotion_raw!r} (known: "
                                                    f"{known})"))
            ok = False
        elif r.onset > r.offset:
            issues.append(with_changes(base, reason=f"onset {r.onset} > offset {r.offset}"))
            ok = False
        elif key not in bounds:
            folder = label_folder(layout, r.subject_dir, r.video)
            if key in on_disk:
                issues.append(with_changes(base, reason=f"video {folder} is on disk but was left "
                                                        f"out: {on_disk[key]}"))
            else:
                if folder not in nearest:
                    nearest[folder] = _nearest(folder, folders)
                issues.append(with_changes(base, reason="video folder missing (no such video on "
                                                        f"disk): no folder {folder}"
                                                        f"{nearest[folder]}"))
            ok = False
        else:
            first, last, subject = bounds[key]
            subjects[n] = subject
            if r.offset > last or r.onset < first:
                issues.append(with_changes(base, reason=f"event {r.onset}-{r.offset} outside the "
                                                        f"video's frames {first}-{last}"))
                ok = False
        if ok and not pd.isna(r.apex) and not (r.onset <= r.apex <= r.offset):
            issues.append(with_changes(base, reason=f"apex {r.apex} outside onset-offset",
                                       action="kept"))
        keep.append(ok)
    out = events.assign(subject=subjects) if len(events) else events
    return out[pd.Series(keep, index=events.index, dtype=bool)].copy(), issues


def check_layout(cfg: Config | DatasetConfig, root: Path | None = None) -> list[Path]:
    """Check that ``root`` (default ``dataset.root``) has the layout's folder and label
    spreadsheets, and return the spreadsheets' paths. Cheap, so the CLI runs it before
    anything starts. ``cfg`` is a config or its dataset section. Raises :class:`DataError`
    (no such folder) or :class:`LabelError` (a spreadsheet missing)."""
    ds = _dataset(cfg)
    root = Path(root or ds.root or "")
    if not str(root) or not root.is_dir():
        raise DataError(f"dataset root {root} does not exist (set dataset.root or pass --root)")
    return layouts.get(ds.layout).check(ds, root)


def read_layout_labels(cfg: Config | DatasetConfig, label_paths: list[Path]
                       ) -> tuple[pd.DataFrame, list[Issue]]:
    """The events of the layout's label spreadsheets (``label_paths``, from
    :func:`check_layout`) and the issues (skipped rows, notes) found reading them; an empty
    table for unlabelled layouts. Raises :class:`LabelError` for a spreadsheet that cannot be
    read as meant."""
    ds = _dataset(cfg)
    layout = layouts.get(ds.layout)
    if layout.read_labels is None:
        return pd.DataFrame(columns=EVENT_COLUMNS), []
    return layout.read_labels(label_paths, ds)


def check_labels(cfg: Config | DatasetConfig) -> None:
    """Read the label spreadsheets once, before anything starts, so that a spreadsheet that
    cannot be read as meant stops the command with its one-line error (a few hundred rows read
    in well under a second; ingestion reads them again)."""
    read_layout_labels(cfg, check_layout(cfg))


# -- the whole step ----------------------------------------------------------------------------


def ingest(cfg: Config, *, root: Path | None = None, out_dir: Path | None = None) -> IngestResult:
    """Scan ``root`` (default ``cfg.dataset.root``), read the labels, and write
    ``manifest.parquet``, ``labels.parquet`` and ``skipped.csv`` into ``out_dir``
    (default ``cfg.ingest_dir``).

    For labelled layouts only videos with at least one usable micro-expression are kept in the
    manifest (as the reference does); the others are listed in ``skipped.csv``.
    """
    root = Path(root or cfg.dataset.root or "")
    out_dir = Path(out_dir or cfg.ingest_dir)
    label_paths = check_layout(cfg, root)
    layout = cfg.dataset.layout
    lay = layouts.get(layout)
    entries, issues = lay.scan(root)
    left_out = [i for i in issues if i.kind == "video" and i.video]
    for e in entries:
        if not (safe_name(e.subject) and safe_name(e.video)):
            raise DataError(f"{root}: unusable video name {e.subject}/{e.video}")
    manifest, more = build_manifest(entries, root, cfg)
    issues += more
    emap = dict(cfg.dataset.emotion_map or {})
    events, more = read_layout_labels(cfg, label_paths)
    issues += more
    if lay.labelled:
        why = {(i.subject, i.video): i.reason for i in issues
               if i.kind == "video" and str(i.action).startswith("skipped")}
        why.update({(i.subject, i.video): f"frame gap ({i.item}); dataset.on_frame_gap="
                                          "skip_video" for i in issues
                    if i.kind == "frames" and str(i.action).startswith("skipped")})
        in_manifest = set(zip(manifest["subject_dir"], manifest["video"]))
        on_disk = {(e.subject_dir, e.video): None if (e.subject_dir, e.video) in in_manifest
                   else why.get((e.subject, e.video), "left out") for e in entries}
        for i in left_out:  # folders the scan left out, under the key a label would give them
            on_disk.setdefault((i.subject, i.video), i.reason)
        events, more = validate_events(events, manifest, emap, layout, on_disk)
        issues += more
        labelled = set(zip(events.loc[events["type"] == "micro", "subject"],
                           events.loc[events["type"] == "micro", "video"]))
        manifest["labelled"] = [
            (s, v) in labelled for s, v in zip(manifest["subject"], manifest["video"])
        ]
        for r in manifest[~manifest["labelled"]].itertuples(index=False):
            issues.append(Issue(kind="video", subject=r.subject, video=r.video, item=r.path,
                                reason="no usable micro-expression label: not used"))
        manifest = manifest[manifest["labelled"]].reset_index(drop=True)
        # Events of videos that are not used (macro-only videos) are not kept either.
        used = set(zip(manifest["subject"], manifest["video"]))
        drop = [(s, v) not in used for s, v in zip(events["subject"], events["video"])]
        for r in events[drop].itertuples(index=False):
            issues.append(Issue(kind="label", file=r.source_file, sheet=r.source_sheet,
                                row=int(r.source_row), subject=r.subject, video=r.video,
                                item=f"{r.onset}-{r.offset}",
                                reason="video has no usable micro-expression: not used"))
        events = events[[not d for d in drop]]
    labels = _labels_table(events, cfg.dataset.name)
    manifest = manifest.sort_values(["subject", "video"], key=_natural_series).reset_index(drop=True)
    skipped = pd.DataFrame([i.as_dict() for i in issues], columns=SKIPPED_COLUMNS)
    skipped["row"] = skipped["row"].astype("Int64")

    files = {
        "manifest": write_table(manifest, out_dir / MANIFEST_FILE, MANIFEST_SCHEMA,
                                {"vrme": {"root": str(root), "layout": layout}}),
        "labels": write_table(labels, out_dir / LABELS_FILE, LABELS_SCHEMA),
        "skipped": write_text_atomic(out_dir / SKIPPED_FILE, skipped.to_csv(index=False)),
    }
    log.info("ingested %d videos, %d events, %d skipped items into %s",
             len(manifest), len(labels), len(skipped), out_dir)
    return IngestResult(manifest=manifest, labels=labels, skipped=skipped, out_dir=out_dir,
                        files=files)


def _natural_series(s: pd.Series) -> pd.Series:
    return s.map(lambda v: tuple((0, x, "") if isinstance(x, int) else (1, 0, x)
                                 for x in natural_key(str(v))))


def _labels_table(events: pd.DataFrame, dataset: str) -> pd.DataFrame:
    df = events.copy()
    df = df.sort_values(["subject", "video", "onset", "offset"], kind="stable")
    df["dataset"] = dataset
    df["event"] = df.groupby(["subject", "video"]).cumcount().astype("int32") if len(df) else []
    df["emotion"] = df["emotion"].astype(object).where(df["emotion"].notna(), None)
    for col in ("onset", "apex", "offset"):
        df[col] = df[col].astype("Int64")
    df["source_row"] = df["source_row"].astype("int32")
    return df[LABELS_SCHEMA.names].reset_index(drop=True)


def dataset_fingerprint(cfg: Config, root: Path | None = None) -> str:
    """Cheap fingerprint of what ingestion reads: the label spreadsheets' contents and the
    modification times of every folder under the root (a folder's time changes when a frame is
    added, removed or renamed in it). Frames replaced in place are caught later, by the
    per-video frame fingerprints of the align and feature caches."""
    import hashlib

    from vrme.io import fingerprint_file

    root = Path(root or cfg.dataset.root or "")
    h = hashlib.sha256()
    h.update(cfg.section_hash("dataset").encode())
    for name in cfg.dataset.label_files or []:
        p = root / name
        h.update(f"{name}:{fingerprint_file(p) if p.is_file() else 'missing'}\n".encode())
    if not root.is_dir():
        h.update(b"no root")
        return h.hexdigest()[:16]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        h.update(f"{rel}\0{os.stat(dirpath).st_mtime_ns}\0{len(filenames)}\n".encode())
        for f in sorted(filenames):
            if f.lower().endswith(VIDEO_EXTENSIONS):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def ingest_record_key(cfg: Config) -> dict[str, Any]:
    """What ingested tables depend on: the dataset fingerprint (settings, spreadsheets, folder
    times) and :data:`INGEST_VERSION`."""
    return {"dataset_fingerprint": dataset_fingerprint(cfg), "version": INGEST_VERSION}


def current_ingest(cfg: Config) -> dict[str, Any] | None:
    """The ingest record (``<out>/ingest/ingest.json``) when it was made from this dataset
    with these settings and code version and its tables exist; else None."""
    import json

    path = cfg.ingest_dir / INGEST_RECORD
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != ingest_record_key(cfg):
        return None
    if not all(Path(p).is_file() for p in rec.get("files", {}).values()):
        return None
    return rec


def ingest_if_needed(cfg: Config, force: bool = False) -> tuple[dict[str, Any], bool]:
    """Ingest unless :func:`current_ingest` finds valid tables; returns (the ingest record:
    files, summary, key) and whether it was reused. The record is written last."""
    from vrme.io import write_json_atomic

    rec = None if force else current_ingest(cfg)
    if rec is not None:
        return rec, True
    key = ingest_record_key(cfg)
    res = ingest(cfg)
    rec = {"key": key, "files": {k: str(v) for k, v in res.files.items()},
           "summary": res.summary()}
    write_json_atomic(cfg.ingest_dir / INGEST_RECORD, rec)
    return json_ready(rec), False


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars turned into Python ones (for JSON and Prefect)."""
    import json

    return json.loads(json.dumps(obj, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
