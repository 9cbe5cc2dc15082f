"""Running trained models on videos nobody labelled: MEGC submissions and single videos.

Models: :func:`load_models` accepts a final model (its folder or ``model.pt``), one fold's
folder, or a whole run folder (every finished fold; their per-frame outputs are averaged: spot
scores and class logits alike). The feature and decoding parameters are the ones the models were
trained with: a final model's ``model.json``, or the run's ``run.json`` for fold models (pass
``config`` for a run made before run.json existed).

Frame rate and frame skip: a model was trained at ``train_rate = dataset.fps /
dataset.frame_skip`` frames per second after skipping (CAS(ME)^3: 30/1 = 30; SAMM-LV:
200/7 = 28.6). A video at ``fps`` is read with ``frame_skip = max(1, round(fps / train_rate))``,
so a CAS(ME)^3-trained model reads a 200 fps SAMM video with skip 7 (200/30 = 6.7) and a 30 fps
video with skip 1; a SAMM-trained model reads 30 fps videos with skip 1 (30/28.6 = 1.05).
Window length k and k_p stay the model's, in frames after skipping.

A video file's fps comes from its container. A folder of frames carries no rate, so it is
guessed from its path: a folder under a path part containing ``samm`` (any case) or named like
SAMM videos (``006_1``) is 200 fps; one under a part containing ``cas`` is 30 fps; anything else
gets the model's training fps. ``fps`` arguments (``--fps``) override the guess for frame
folders.

Features of unseen videos are computed by :func:`vrme.features.flow.run_features` (landmarks first)
into a cache folder: ``<cache>/features/predict/<feature-hash>/<subject>/<video>.parquet``,
reused when the frames and parameters are unchanged.

Output frame numbers are original numbers (the numbers in the frame file names; 0-based frame
positions for video files).

Decoding: the models' ``decode`` section, or the one :func:`prediction_decode` derives from it
(``decode.mode: samm_test`` for the MEGC SAMM test set, METHOD.md section 8).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrme.catalog import MODEL_FILE, PREDICT_CACHE, folds_dir
from vrme.config import Config, DecodeConfig, config_from_mapping
from vrme.errors import DataError, UserError

log = logging.getLogger(__name__)

"""Feature cache of unseen videos when none is given (relative to the working folder)."""
PREDICT_DATASET = "predict"
SAMM_FPS = 200.0
CASME_FPS = 30.0
MEGC_COLUMNS = ["subject", "video", "onset", "offset", "emotion"]
MEGC_EMOTIONS = ("negative", "positive", "surprise")
"""Emotions a MEGC submission lists (``others`` and neutral intervals are left out)."""


# -- models ------------------------------------------------------------------------------


@dataclass
class Ensemble:
    """One or more trained networks that share their input parameters.

    ``cfg`` is the training config (dataset fps and frame skip, align, features, decode
    sections); ``k`` the window length (frames after skipping); ``priors`` one per model.
    """

    models: list[Any]
    priors: list[Any]
    cfg: Config
    k: int
    sources: list[Path]
    kind: str
    device: Any = "cpu"

    @property
    def k_p(self) -> int:
        """Duration prior used to decode (indices after skipping): the model's, or the lower
        median of the members' for an ensemble of folds."""
        vals = sorted(int(p.k_p) for p in self.priors)
        return vals[(len(vals) - 1) // 2]

    @property
    def train_rate(self) -> float:
        """Frames per second the models saw after skipping (dataset fps / frame skip)."""
        return float(self.cfg.dataset.fps) / int(self.cfg.dataset.frame_skip)

    def predict(self, feats: Any, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame ``(spot, logits)`` of one video's features (a
        :class:`vrme.schema.VideoFeatures`), the mean over the members; shapes (n,) and
        (n, 5) for the n indices its windows cover (after skipping)."""
        from vrme.inference.scores import predict_video

        bs = batch_size or self.cfg.train.predict_batch_size
        spot_sum: np.ndarray | None = None
        logit_sum: np.ndarray | None = None
        for model in self.models:
            s, z = predict_video(model, feats, self.device, bs)
            spot_sum = s.astype(np.float64) if spot_sum is None else spot_sum + s
            logit_sum = z.astype(np.float64) if logit_sum is None else logit_sum + z
        assert spot_sum is not None and logit_sum is not None
        n = len(self.models)
        return (spot_sum / n).astype(np.float32), (logit_sum / n).astype(np.float32)


def _config_for(folder: Path, given: Config | None) -> Config | None:
    from vrme.catalog import RUN_INFO_FILE
    from vrme.record import run_config
    from vrme.training.final import read_model_info

    if given is not None:
        return given
    info = read_model_info(folder)
    if info and "config" in info:
        return config_from_mapping(dict(info["config"]), str(folder / "model.json"),
                                   recorded=True)
    for run in (folder, folder.parent.parent):
        if (run / RUN_INFO_FILE).is_file():
            return run_config(run)
    return None


def _model_folders(path: Path) -> tuple[list[Path], str, Path]:
    """(model folders, kind, folder whose config applies) of a model path."""
    from vrme.training.train import fold_is_complete, subject_sort_key

    if path.is_file():
        if path.name != MODEL_FILE:
            raise DataError(f"{path}: expected a model.pt file or a folder")
        path = path.parent
    if not path.is_dir():
        raise DataError(f"model {path} not found")
    if (path / MODEL_FILE).is_file():
        kind = "fold" if (path.parent.name == "folds") else "final"
        return [path], kind, path
    folds = folds_dir(path)
    if folds.is_dir():
        done = sorted((d for d in folds.iterdir() if d.is_dir() and fold_is_complete(d)),
                      key=lambda d: subject_sort_key(d.name))
        if not done:
            raise DataError(f"{path}: no finished fold under {folds}")
        return done, "folds", path
    raise DataError(f"{path}: neither a model folder (model.pt) nor a run folder (folds/)")


def load_models(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                config: Config | None = None, device: str = "auto") -> Ensemble:
    """Load a final model, a fold, or every finished fold of a run folder (or several of
    these) into an :class:`Ensemble`.

    The training config comes from the model's ``model.json``, else the run's ``run.json``,
    else ``config`` (which, when given, is used for all). All members must share the window
    length k and the feature parameters; otherwise :class:`DataError`.
    """
    from vrme.features.flow import feature_hash
    from vrme.training.train import load_fold_model, resolve_device

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    dev = resolve_device(device)
    models, priors, sources = [], [], []
    cfg: Config | None = None
    kinds: set[str] = set()
    for p in paths:
        folders, kind, cfg_folder = _model_folders(Path(p))
        c = _config_for(cfg_folder, config)
        if c is None:
            raise DataError(f"{p}: no model.json or run.json records how the model was trained; "
                            "pass the training config (--config)")
        if cfg is not None and feature_hash(c) != feature_hash(cfg):
            raise DataError(f"{p}: trained with other feature parameters than {sources[0]}; "
                            "an ensemble needs identical inputs")
        cfg = cfg or c
        kinds.add(kind)
        for folder in folders:
            model, pri, k = load_fold_model(folder, device=str(dev))
            if k != cfg.features.k:
                raise DataError(f"{folder / 'model.pt'}: window length k={k} but its config "
                                f"says features.k={cfg.features.k}")
            models.append(model)
            priors.append(pri)
            sources.append(folder / MODEL_FILE)
    assert cfg is not None
    kind = kinds.pop() if len(models) == 1 else "folds"
    log.info("loaded %d model(s) (%s), k=%d, k_p=%d, trained at %.4g frames/s after skipping",
             len(models), kind, cfg.features.k, min(p.k_p for p in priors),
             float(cfg.dataset.fps) / cfg.dataset.frame_skip)
    return Ensemble(models=models, priors=priors, cfg=cfg, k=cfg.features.k, sources=sources,
                    kind=kind, device=dev)


def prediction_decode(cfg: Config, mode: str | None = None,
                      overrides: Sequence[str] | None = None) -> DecodeConfig:
    """The decode section to predict with: the training config ``cfg``'s, with ``mode``
    (``decode.mode``) and ``decode.key=value`` overrides (the ``--set`` syntax) applied and
    validated like a config file. Only ``decode.*`` keys may change (the models were trained
    with the rest); ``mode`` together with a ``decode.mode`` override is refused."""
    from vrme.config import ConfigError, apply_overrides

    sets = list(overrides or [])
    for text in sets:
        key = text.split("=", 1)[0].strip()
        if not key.startswith("decode."):
            raise ConfigError(f"--set {text!r}: prediction changes decode.* keys only (the "
                              "models were trained with the others)")
        if mode is not None and key == "decode.mode":
            raise ConfigError(f"--set {text!r} and --decode-mode {mode}: give the mode once")
    if mode is not None:
        sets.insert(0, f"decode.mode={mode}")
    if not sets:
        return cfg.decode
    raw = cfg.model_dump(mode="json")
    raw.pop("source", None)
    apply_overrides(raw, sets)
    return config_from_mapping(raw, "prediction decode (" + ", ".join(sets) + ")").decode


# -- frame rates ---------------------------------------------------------------------------


def frame_skip_for(video_fps: float, train_rate: float) -> int:
    """Frame skip that brings a ``video_fps`` video closest to the models' training rate
    (frames/s after skipping): ``max(1, round(video_fps / train_rate))``."""
    if not video_fps or video_fps <= 0 or not math.isfinite(video_fps):
        raise DataError(f"frame rate {video_fps!r} is not usable (pass --fps)")
    return max(1, int(round(float(video_fps) / float(train_rate))))


_SAMM_VIDEO = re.compile(r"^\d{3}_\d+$")


def guess_fps(row: Any, default_fps: float, root: str | os.PathLike[str] | None = None) -> float:
    """Frame rate of one manifest row: the container's for a video file (when it records
    one); for a frame folder 200 when a part of its path contains 'samm' or the folder is named
    like a SAMM video ('006_1'), 30 when a part contains 'cas', else ``default_fps``. With
    ``root`` (the row's root) the whole absolute path counts, so that a video gets the same
    guess whichever folder it was found from (:func:`scan_videos`, :func:`spot_video`)."""
    if str(row["source"]) == "video" and float(row.get("fps") or 0) > 0:
        return float(row["fps"])
    path = Path(str(row["path"]))
    if root is not None:
        path = Path(root).absolute() / path
    parts = [p.lower() for p in path.parts]
    if any("samm" in p for p in parts) or _SAMM_VIDEO.match(str(row["video"])):
        return SAMM_FPS
    if any("cas" in p for p in parts):
        return CASME_FPS
    return float(default_fps)


# -- unseen videos --------------------------------------------------------------------------


def _scan_config(ens_cfg: Config, root: Path) -> Config:
    cfg = ens_cfg.model_copy(deep=True)
    cfg.datasets = None  # a model trained on several datasets predicts one test folder
    cfg.dataset = cfg.dataset.model_copy(update={"name": PREDICT_DATASET, "layout": "megc",
                                                 "root": root, "label_files": []})
    return cfg


def video_entry(path: str | os.PathLike[str], name: Any = str) -> Any:
    """Subject and video of an unlabelled video from its own path: the one rule of
    :func:`scan_videos` (``vrme predict``) and :func:`single_video_manifest` (``vrme spot``),
    so that both name a video alike and share its cached features. ``name`` maps each folder
    or file name to the one used (``str``, or a sanitiser).

    - a video file ``<folder>/<stem>.mp4``: subject ``<folder>``, video ``<stem>``;
    - a frame folder named ``color`` (CAS(ME)^3): video = its parent, subject folder = the
      parent's parent;
    - a folder named ``<sss>_<v>`` (SAMM): subject ``<sss>``;
    - any other frame folder: video = its name, subject folder = its parent.

    The subject of a frame folder is its subject folder's CAS(ME)^3 fold id (``spNO.28`` ->
    ``28``), as :func:`vrme.data.ingest.scan_unlabelled` names it. Returns a
    :class:`vrme.data.ingest.VideoEntry`."""
    from vrme.data.ingest import VideoEntry
    from vrme.data.labels import fold_id_casme3

    p = Path(path).absolute()
    if p.is_file():
        subject = name(p.parent.name or p.stem)
        return VideoEntry(subject, subject, name(p.stem), file=p)
    video_dir = p.parent if p.name == "color" else p
    video = name(video_dir.name)
    if re.fullmatch(r"\d+_\d+", video_dir.name):
        subject_dir = video_dir.name.split("_")[0]
        return VideoEntry(name(subject_dir), subject_dir, video, folder=p)
    subject_dir = video_dir.parent.name or video_dir.name
    return VideoEntry(name(fold_id_casme3(subject_dir)), subject_dir, video, folder=p)


def scan_videos(root: str | os.PathLike[str], ens: Ensemble, *,
                fps: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The videos of an unlabelled folder (either MEGC layout, frame folders or video files,
    found as :func:`vrme.data.ingest.scan_unlabelled` finds them, named by :func:`video_entry`) as
    a manifest, with each row's ``fps`` set by :func:`guess_fps` (``fps`` overrides it for
    frame folders). Returns ``(manifest, skipped)``; skipped lists what was left out and
    why."""
    from vrme.data.ingest import build_manifest, scan_unlabelled
    from vrme.data.labels import safe_name
    from vrme.schema import SKIPPED_COLUMNS

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    found, issues = scan_unlabelled(root)
    entries = [video_entry(e.folder if e.folder is not None else e.file) for e in found]
    for e in entries:
        if not (safe_name(e.subject) and safe_name(e.video)):
            raise DataError(f"{root}: unusable video name {e.subject}/{e.video}")
    manifest, more = build_manifest(entries, root, _scan_config(ens.cfg, root))
    issues = list(issues) + list(more)
    if len(manifest):
        manifest["fps"] = [
            float(fps) if fps and str(r["source"]) == "frames" else
            guess_fps(r, ens.cfg.dataset.fps, root) for r in manifest.to_dict(orient="records")
        ]
    skipped = pd.DataFrame([i.as_dict() for i in issues], columns=SKIPPED_COLUMNS)
    for r in skipped.itertuples(index=False):
        log.warning("%s %s/%s: %s (%s)", r.kind, r.subject, r.video, r.reason, r.action)
    if not len(manifest):
        raise DataError(f"{root}: no video found (frame folders or .mp4/.avi/.mov/.mkv files)")
    return manifest, skipped


def single_video_manifest(path: str | os.PathLike[str], ens: Ensemble,
                          fps: float | None = None) -> tuple[pd.DataFrame, Path]:
    """A one-row manifest for a video file or a folder of frames, and the root it is relative
    to. Subject and video names: :func:`video_entry` (names made safe for file names), the
    same as ``vrme predict`` gives the video, so both use one cached feature file."""
    from vrme.data.frames import VIDEO_EXTENSIONS
    from vrme.data.ingest import build_manifest

    p = Path(path).absolute()
    if p.is_file() and not p.name.lower().endswith(VIDEO_EXTENSIONS):
        raise DataError(f"{p}: not a video file ({', '.join(VIDEO_EXTENSIONS)}) or a folder "
                        "of frames")
    if not p.exists():
        raise DataError(f"{p} not found")
    entry = video_entry(p, _safe)
    root = p.parent
    manifest, issues = build_manifest([entry], root, _scan_config(ens.cfg, root))
    if not len(manifest):
        reason = issues[0].reason if issues else "unreadable"
        raise DataError(f"{p}: {reason}")
    if fps and str(manifest.loc[0, "source"]) == "frames":
        manifest.loc[0, "fps"] = float(fps)
    elif fps and str(manifest.loc[0, "source"]) == "video":
        manifest.loc[0, "fps"] = float(fps)
    else:
        manifest.loc[0, "fps"] = guess_fps(manifest.loc[0].to_dict(), ens.cfg.dataset.fps, root)
    return manifest, root


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "video"


def feature_config(ens_cfg: Config, frame_skip: int, root: str | os.PathLike[str],
                   cache_dir: str | os.PathLike[str], workers: int | None = None) -> Config:
    """The config that computes features of unseen videos with the models' parameters at
    ``frame_skip``: dataset ``predict`` under ``cache_dir`` (its ``run.out``)."""
    cfg = ens_cfg.model_copy(deep=True)
    cfg.datasets = None  # a model trained on several datasets predicts one test folder
    cfg.dataset = cfg.dataset.model_copy(update={"name": PREDICT_DATASET, "layout": "megc",
                                                 "root": Path(root), "frame_skip": int(frame_skip),
                                                 "label_files": []})
    cfg.run = cfg.run.model_copy(update={"out": Path(cache_dir).absolute()})
    if workers:  # videos side by side (the task runner's workers)
        cfg.orchestration = cfg.orchestration.model_copy(update={"max_workers": int(workers)})
    return cfg


@dataclass
class Predictions:
    """Intervals (columns :data:`vrme.decoding.decode.OUTPUT_COLUMNS`, original frame numbers), the
    per-frame ensemble outputs (:data:`vrme.training.train.SCORE_COLUMNS`), and one row per video
    (subject, video, fps, frame_skip, status, reason, n_intervals, features path)."""

    intervals: pd.DataFrame
    scores: pd.DataFrame
    videos: pd.DataFrame
    k_p: int


def feature_groups(ens: Ensemble, manifest: pd.DataFrame, root: str | os.PathLike[str],
                   cache_dir: str | os.PathLike[str] = PREDICT_CACHE,
                   workers: int | None = None) -> list[tuple[Config, list[dict[str, Any]]]]:
    """The videos of ``manifest`` grouped by the frame skip they are read at
    (:func:`frame_skip_for` their fps and the models' training rate), each group with the
    config that computes its features (:func:`feature_config`); in skip order. An orchestrator
    computes every group's landmarks and features with the same tasks as a benchmark, then
    :func:`predict_videos` finds them cached."""
    rows = manifest.to_dict(orient="records")
    skips = [frame_skip_for(float(r["fps"]), ens.train_rate) for r in rows]
    out = []
    for skip in sorted(set(skips)):
        fcfg = feature_config(ens.cfg, skip, root, cache_dir, workers)
        out.append((fcfg, [r for r, s in zip(rows, skips) if s == skip]))
    return out


def predict_videos(ens: Ensemble, manifest: pd.DataFrame, root: str | os.PathLike[str], *,
                   cache_dir: str | os.PathLike[str] = PREDICT_CACHE,
                   decode: DecodeConfig | None = None, workers: int | None = None,
                   progress: bool = True) -> Predictions:
    """Features (cached), model outputs and intervals of every video of ``manifest`` (rows as
    :func:`scan_videos` makes them: ``fps`` set per row).

    Each video's frame skip is :func:`frame_skip_for` its fps and the models' training rate;
    videos are grouped by skip and their features computed through
    :func:`vrme.features.flow.run_features` (alignment first). Videos without a face or too short
    for one window are reported in ``videos`` with status ``skipped`` and the reason; the
    others are decoded with ``decode`` (default: the training config's) and the ensemble's
    k_p (``Predictions.k_p`` is the k_p used: the mode's own in ``samm_test`` mode).
    """
    from vrme.decoding.decode import OUTPUT_COLUMNS, decode_params, empty_intervals
    from vrme.features.flow import feature_path, run_features
    from vrme.schema import read_video_features
    from vrme.training.train import SCORE_COLUMNS, decode_scores_table, scores_table

    dec = decode or ens.cfg.decode
    p_used, k_p_used = decode_params(dec, ens.k_p)
    log.info("decoding: mode %s, p=%g, k_p=%d (model's k_p %d)", dec.mode, p_used, k_p_used,
             ens.k_p)
    info: dict[tuple[str, str], dict[str, Any]] = {}
    groups = feature_groups(ens, manifest, root, cache_dir, workers)
    for fcfg, group in groups:
        for r in group:
            info[(str(r["subject"]), str(r["video"]))] = {
                "subject": str(r["subject"]), "video": str(r["video"]), "fps": float(r["fps"]),
                "first_frame": int(r["first_frame"]), "frame_skip": fcfg.dataset.frame_skip,
                "status": "pending", "reason": "", "n_intervals": 0, "features": None}
    for fcfg, group in groups:
        log.info("%d video(s) at frame skip %d: features under %s", len(group),
                 fcfg.dataset.frame_skip, fcfg.out_dir)
        for st in run_features(fcfg, group, root, progress=progress):
            rec = info[(st.subject, st.video)]
            if st.status == "skipped":
                rec.update(status="skipped", reason=st.reason)
            else:
                rec.update(status="ok", features=str(feature_path(fcfg, st.subject, st.video)))
    score_parts, interval_parts = [], []
    for key, rec in info.items():
        if rec["status"] != "ok":
            log.warning("%s/%s left out: %s", key[0], key[1], rec["reason"])
            continue
        feats = read_video_features(rec["features"])
        spot, logits = ens.predict(feats)
        if len(spot) == 0:
            rec.update(status="skipped", reason=f"no window (shorter than k={ens.k})")
            continue
        table = scores_table(key[0], key[1], spot, logits, feats.first_frame, feats.frame_skip)
        iv = decode_scores_table(table, ens.k_p, dec)
        rec["n_intervals"] = int(len(iv))
        score_parts.append(table)
        interval_parts.append(iv)
    intervals = (pd.concat([p for p in interval_parts if len(p)] or [empty_intervals()],
                           ignore_index=True)[OUTPUT_COLUMNS])
    scores = (pd.concat(score_parts, ignore_index=True)[SCORE_COLUMNS] if score_parts
              else pd.DataFrame(columns=SCORE_COLUMNS))
    return Predictions(intervals=intervals, scores=scores, videos=pd.DataFrame(info.values()),
                       k_p=k_p_used)


# -- MEGC submission ---------------------------------------------------------------------------


def megc_table(intervals: pd.DataFrame) -> pd.DataFrame:
    """The MEGC submission rows of decoded intervals: columns subject, video, onset, offset,
    emotion (integers, original frame numbers), ``others`` and neutral intervals left out,
    sorted by subject, video and onset."""
    keep = intervals[intervals["emotion"].astype(str).isin(MEGC_EMOTIONS)]
    out = pd.DataFrame({
        "subject": keep["subject"].astype(str).to_numpy(dtype=object),
        "video": keep["video"].astype(str).to_numpy(dtype=object),
        "onset": keep["onset"].astype("int64").to_numpy(),
        "offset": keep["offset"].astype("int64").to_numpy(),
        "emotion": keep["emotion"].astype(str).to_numpy(dtype=object),
    }, columns=MEGC_COLUMNS)
    return out.sort_values(["subject", "video", "onset", "offset"], kind="stable"
                           ).reset_index(drop=True)


def write_megc_csv(intervals: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the MEGC submission CSV of ``intervals`` (see :func:`megc_table`) atomically."""
    from vrme.io import write_text_atomic

    return write_text_atomic(path, megc_table(intervals).to_csv(index=False))


def check_megc_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a submission CSV and check its format: exactly the columns subject, video, onset,
    offset, emotion; integer frames with onset <= offset; emotions negative, positive or
    surprise only. Returns the table; raises :class:`DataError` naming the line at fault. A
    header without rows is valid (nothing spotted)."""
    import csv

    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    if not lines or [c.strip() for c in lines[0]] != MEGC_COLUMNS:
        raise DataError(f"{p}: line 1: header must be {','.join(MEGC_COLUMNS)}")
    rows = []
    for n, fields in enumerate(lines[1:], start=2):
        if not fields:
            continue
        if len(fields) != len(MEGC_COLUMNS):
            raise DataError(f"{p}: line {n}: {len(fields)} fields, expected 5")
        subject, video, onset, offset, emotion = (f.strip() for f in fields)
        if not subject or not video:
            raise DataError(f"{p}: line {n}: empty subject or video")
        if not re.fullmatch(r"-?\d+", onset) or not re.fullmatch(r"-?\d+", offset):
            raise DataError(f"{p}: line {n}: onset/offset {onset!r}/{offset!r} are not integers")
        if int(offset) < int(onset):
            raise DataError(f"{p}: line {n}: offset {offset} before onset {onset}")
        if emotion not in MEGC_EMOTIONS:
            raise DataError(f"{p}: line {n}: emotion {emotion!r} (a submission lists "
                            f"{', '.join(MEGC_EMOTIONS)} only)")
        rows.append((subject, video, int(onset), int(offset), emotion))
    return pd.DataFrame(rows, columns=MEGC_COLUMNS).astype({"onset": "int64", "offset": "int64"})


def predict_folder(ens: Ensemble, root: str | os.PathLike[str], out_csv: str | os.PathLike[str],
                   *, cache_dir: str | os.PathLike[str] = PREDICT_CACHE, fps: float | None = None,
                   decode: DecodeConfig | None = None, workers: int | None = None,
                   progress: bool = True) -> Predictions:
    """Scan an unlabelled MEGC-style folder, predict every video (decoded with ``decode``,
    default the training config's) and write the submission CSV ``out_csv``
    (:func:`write_megc_csv`); also ``<out_csv stem>_intervals.csv`` with every decoded
    interval (others included, apex and score) beside it."""
    from vrme.io import write_text_atomic

    manifest, _ = scan_videos(root, ens, fps=fps)
    pred = predict_videos(ens, manifest, root, cache_dir=cache_dir, decode=decode,
                          workers=workers, progress=progress)
    out_csv = Path(out_csv)
    write_megc_csv(pred.intervals, out_csv)
    write_text_atomic(out_csv.with_name(out_csv.stem + "_intervals.csv"),
                      pred.intervals.to_csv(index=False))
    return pred


# -- one video --------------------------------------------------------------------------------


@dataclass
class SpotResult:
    """One video's intervals (:data:`vrme.decoding.decode.OUTPUT_COLUMNS`, original frame numbers)
    and per-frame outputs (``scores``: SCORE_COLUMNS), with the frame rate, skip and k_p used.
    Unpacks as ``intervals, scores``."""

    intervals: pd.DataFrame
    scores: pd.DataFrame
    fps: float
    frame_skip: int
    k_p: int
    p: float
    video: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.intervals, self.scores))


def spot_video(path: str | os.PathLike[str], ens: Ensemble, *,
               cache_dir: str | os.PathLike[str] = PREDICT_CACHE, fps: float | None = None,
               decode: DecodeConfig | None = None, workers: int | None = None,
               progress: bool = True) -> SpotResult:
    """Spot micro-expressions in one video file (.mp4/.avi/...) or folder of frames.

    The frame rate is the container's (or ``fps``; a folder's is guessed, see
    :func:`guess_fps`); features go to ``cache_dir``. Raises :class:`UserError` when no face
    is found or the video is shorter than one window and a half.
    """
    manifest, root = single_video_manifest(path, ens, fps)
    pred = predict_videos(ens, manifest, root, cache_dir=cache_dir, decode=decode,
                          workers=workers, progress=progress)
    rec = pred.videos.iloc[0].to_dict()
    if rec["status"] != "ok":
        raise UserError(f"{path}: {rec['reason'] or 'no prediction'}")
    from vrme.decoding.decode import decode_params

    p_used, _ = decode_params(decode or ens.cfg.decode, ens.k_p)
    return SpotResult(intervals=pred.intervals, scores=pred.scores, fps=float(rec["fps"]),
                      frame_skip=int(rec["frame_skip"]), k_p=pred.k_p, p=p_used, video=rec)


def spot_plot_png(result: SpotResult, title: str = "") -> bytes:
    """The score curve of a :class:`SpotResult` with its intervals, smoothed curve and peak
    threshold, as PNG bytes (:data:`vrme.report.plots.SCORE_SIZE`)."""
    from vrme.decoding.decode import box_smooth, peak_threshold
    from vrme.report.plots import score_curve_png

    spot = result.scores["spot"].to_numpy(np.float64)
    smoothed = box_smooth(spot, 2 * result.k_p)
    return score_curve_png(result.scores["frame"].to_numpy(), spot, pred=result.intervals,
                           smoothed=smoothed, threshold=peak_threshold(smoothed, result.p),
                           title=title or f"{len(result.intervals)} interval(s); "
                                          f"{result.fps:g} fps, frame skip {result.frame_skip}, "
                                          f"k_p={result.k_p}")
