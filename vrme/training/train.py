"""Training and testing one leave-one-subject-out fold (METHOD.md section 7).

A fold trains on the windows of every subject but one and predicts the held-out subject's
videos. Its folder receives:

- ``priors.json``: k_p and class weights from the training subjects (:mod:`vrme.training.priors`);
- ``model.pt``: ``{"state_dict", "model_config", "k", "priors", "fold", "config_hash"}``;
- ``scores.parquet``: per-frame spot score and class logits of every test video, one row per
  index after skipping, with its original frame number (columns ``SCORE_COLUMNS``);
- ``intervals.csv``: the decoded intervals (subject, video, onset, apex, offset, emotion, score;
  original frame numbers);
- ``fold.json``: written last, the done-marker: config hash, input fingerprint, timings and the
  loss of every epoch. A folder without it (or with other hashes) is not a finished fold.

Training and decoding are two records. The trained network and its per-frame scores
(``model.pt``, ``scores.parquet``) depend only on the training settings (:func:`train_hash`,
which includes :data:`TRAIN_VERSION`) and the training inputs; ``train.json`` next to them says
so. The intervals depend on the scores, k_p and the decode settings (:func:`decode_hash`, which
includes :data:`vrme.decoding.decode.DECODE_VERSION`). With ``models_dir`` (what a benchmark run
uses: ``<out>/models/<dataset>/<train-hash>/``) trained folds are kept per training hash, so a
change of decoding settings, or a return to a config run before, trains nothing: the fold is only
decoded again. The fold folder then holds links to the model and scores it was decoded from.

Memory: only the training windows the fold selects are loaded (every window containing an ME
frame and a seeded sample of ME-free ones); test videos are streamed one at a time.

Deliberate differences from the reference: priors from the training subjects only (see
:mod:`vrme.training.priors`); labels mapped with each video's real first frame
(:mod:`vrme.features.windows`); stitching per video (:mod:`vrme.decoding.decode`); no validation
pass on the held-out subject's labels (the reference prints one every 6 epochs; it never influences
the model, which is the last epoch's); the cross-entropy mean is over frames, as the reference's
one-hot targets make it (not over the summed weights, as class-index targets would); the scale
factor of the augmentation is drawn uniformly in ``train.scale_aug`` (the reference draws whole
percents).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from vrme import catalog
from vrme.catalog import (
    FOLD_FILE,
    INTERVALS_FILE,
    MODEL_FILE,
    PRIORS_FILE,
    SCORES_FILE,
    TRAIN_FILE,
    video_file,
)
from vrme.config import CLASS_NAMES, Config, DecodeConfig, ModelConfig, TrainConfig, stable_hash
from vrme.decoding.decode import OUTPUT_COLUMNS, decode_scores, empty_intervals
from vrme.errors import DataError
from vrme.features.windows import (
    TrainingSelection,
    VideoRef,
    events_to_index,
    micro_events,
    scan_video,
    select_training_windows,
    shuffle_events,
    video_targets,
)
from vrme.inference.scores import predict_video
from vrme.interrupt import check as check_interrupt
from vrme.io import (
    ensure_folder,
    link_or_copy,
    read_parquet_metadata,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from vrme.progress import ProgressBar
from vrme.schema import read_labels, read_manifest, read_video_features
from vrme.training.priors import Priors, estimate_priors

log = logging.getLogger(__name__)

TRAIN_VERSION = 3
"""Version of the training numerics (window selection, targets, model, optimisation, prediction).
Part of :func:`train_hash`: bump it with any change that changes a trained model or its scores,
and exactly the trained folds (and final models) recompute."""
LOGIT_COLUMNS = [f"logit_{c}" for c in CLASS_NAMES]
SCORE_COLUMNS = ["subject", "video", "index", "frame", "spot"] + LOGIT_COLUMNS
SCORES_SCHEMA = pa.schema(
    [("subject", pa.string()), ("video", pa.string()), ("index", pa.int32()),
     ("frame", pa.int64()), ("spot", pa.float32())]
    + [(c, pa.float32()) for c in LOGIT_COLUMNS]
)

ModelFactory = Callable[[ModelConfig, int], Any]


# -- inputs -------------------------------------------------------------------------------


def as_table(obj: pd.DataFrame | str | os.PathLike[str], kind: str) -> pd.DataFrame:
    """A manifest or labels table given as a DataFrame or a Parquet path (``kind`` says which)."""
    if isinstance(obj, pd.DataFrame):
        return obj
    path = Path(obj)
    if not path.is_file():
        raise DataError(f"{kind} file not found: {path}")
    return read_manifest(path) if kind == "manifest" else read_labels(path)


def subject_sort_key(subject: str) -> tuple:
    """Sort subjects numerically where they are numbers ('2' before '10')."""
    s = str(subject)
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


@dataclass
class FoldPlan:
    """What a fold will train and test on, decided from metadata and labels only.

    ``events`` are the training events in indices after skipping (shuffled when the config asks
    for the control experiment); ``test_videos`` are all of the held-out subject's videos.
    """

    fold: str
    train_subjects: list[str]
    train_videos: list[VideoRef]
    test_videos: list[VideoRef]
    events: dict[tuple[str, str], pd.DataFrame]
    selection: TrainingSelection
    priors: Priors
    input_fingerprint: str
    train_fingerprint: str = ""


def _video_refs(manifest: pd.DataFrame, features_dir: Path, cfg: Config
                ) -> tuple[dict[tuple[str, str], VideoRef], list[tuple[str, str]]]:
    """Feature-file metadata of every manifest video that has a feature file, and the
    (subject, video) pairs that have none."""
    refs, missing = {}, []
    for row in manifest.itertuples(index=False):
        if not video_file(features_dir, row.subject, row.video).is_file():
            missing.append((str(row.subject), str(row.video)))
            continue
        # A union of datasets mixes frame skips: each video's own (in its feature file) holds.
        skip = None if cfg.datasets else cfg.dataset.frame_skip
        ref = scan_video(features_dir, row.subject, row.video, k=cfg.features.k,
                         frame_skip=skip, first_frame=int(row.first_frame))
        refs[ref.key] = ref
    return refs, missing


def _events_by_video(ev: pd.DataFrame, refs: dict[tuple[str, str], VideoRef]
                     ) -> dict[tuple[str, str], pd.DataFrame]:
    out = {}
    for (subj, vid), grp in ev.groupby(["subject", "video"], sort=False):
        ref = refs.get((str(subj), str(vid)))
        if ref is None:
            log.warning("labels name video %s of subject %s, which is not in the manifest or "
                        "has no feature file; its %d events are ignored", vid, subj, len(grp))
            continue
        out[ref.key] = events_to_index(grp, ref.first_frame, ref.frame_skip)
    return out


FINAL_FOLD = "all"
"""The ``fold`` of a final model's plan (every subject trains, none is held out)."""


def plan_fold(cfg: Config, fold: str | None, manifest: pd.DataFrame | str | os.PathLike[str],
              labels: pd.DataFrame | str | os.PathLike[str],
              features_dir: str | os.PathLike[str]) -> FoldPlan:
    """Choose a fold's training windows and estimate its priors, without reading any values.

    The held-out subject's labels are validated but never used unless ``priors.scope`` is
    ``global`` (the reference's leaky behaviour, for comparison only): they cannot influence the
    selection, the class weights, the input fingerprint or, with the default scope, k_p.

    ``fold=None`` plans a final model: every subject trains, there is no test video, the
    priors come from every label (scope ``"all"``) and ``train.shuffle_labels`` is ignored.
    """
    final = fold is None
    where = "final model" if final else f"fold {fold}"
    manifest = as_table(manifest, "manifest")
    labels = as_table(labels, "labels")
    manifest = manifest.assign(subject=manifest["subject"].astype(str),
                               video=manifest["video"].astype(str))
    if not final:
        fold = str(fold)
        if fold not in set(manifest["subject"]):
            raise DataError(f"fold subject {fold!r} has no video in the manifest")
    refs, missing = _video_refs(manifest, Path(features_dir), cfg)
    ev_all = micro_events(labels.assign(subject=labels["subject"].astype(str),
                                        video=labels["video"].astype(str)))
    ev_train = ev_all if final else ev_all[ev_all["subject"] != fold]
    events = _events_by_video(ev_train, refs)
    shuffle = cfg.train.shuffle_labels and not final
    if final and cfg.train.shuffle_labels:
        log.warning("train.shuffle_labels is a control for leave-one-subject-out runs; the "
                    "final model is trained on the real labels")
    if shuffle:
        flat = pd.concat(list(events.values()), ignore_index=True) if events else None
        if flat is not None and len(flat):
            n_frames = {key: ref.n_frames for key, ref in refs.items()}
            flat = shuffle_events(flat, n_frames, cfg.train.seed)
            events = {(str(s), str(v)): g.reset_index(drop=True)
                      for (s, v), g in flat.groupby(["subject", "video"], sort=False)}

    train_videos = [r for key, r in refs.items() if final or key[0] != fold]
    if cfg.train.train_videos == "with_me":
        train_videos = [r for r in train_videos if r.key in events and len(events[r.key])]
    labelled = set(map(tuple, ev_train[["subject", "video"]].to_numpy().tolist()))
    needed = {key for key in missing if (not final and key[0] == fold)
              or cfg.train.train_videos == "all" or key in labelled}
    if needed:
        subj, vid = sorted(needed)[0]
        raise DataError(f"{where}: feature file missing for {len(needed)} video(s), e.g. "
                        f"{video_file(features_dir, subj, vid)}; run the features step first")
    train_videos.sort(key=lambda r: (subject_sort_key(r.subject), r.video))
    if not train_videos:
        raise DataError(f"{where}: no training video with a micro-expression")
    test_videos = [] if final else sorted((r for key, r in refs.items() if key[0] == fold),
                                          key=lambda r: r.video)
    train_subjects = sorted({r.subject for r in train_videos}, key=subject_sort_key)

    selection = select_training_windows(train_videos, events, cfg.train.ratio, cfg.train.seed,
                                        n_classes=cfg.model.n_classes)
    if cfg.priors.scope == "global":
        prior_events = _events_by_video(ev_all, refs)
    else:
        prior_events = events if not shuffle else _events_by_video(ev_train, refs)
    durations = np.concatenate(
        [(e["offset_index"] - e["onset_index"]).to_numpy(np.int64) for e in prior_events.values()]
    ) if prior_events else np.zeros(0, np.int64)
    prior_subjects = sorted({k[0] for k in prior_events}, key=subject_sort_key)
    priors = estimate_priors(durations, selection.class_counts, cfg.priors,
                             synergy_strategy=cfg.decode.synergy_strategy,
                             subjects=prior_subjects, frame_skip=cfg.dataset.frame_skip)
    if final:
        priors = dataclasses.replace(priors, scope="all")

    label_cols = ["subject", "video", "onset", "apex", "offset", "emotion"]
    used = {r.key for r in train_videos} | {r.key for r in test_videos}
    # What the trained network and its scores depend on: the features read and the training
    # labels. The labels behind k_p (all of them under scope global) matter to decoding only.
    train_fp = stable_hash({
        "features": [[r.subject, r.video, r.n_windows, r.meta] for key, r in sorted(refs.items())
                     if key in used],
        "labels": ev_train[label_cols].astype(str).to_numpy().tolist(),
    }, length=16)
    prior_labels = ev_all if cfg.priors.scope == "global" else ev_train
    fingerprint = stable_hash({
        "train": train_fp, "prior_labels": prior_labels[label_cols].astype(str).to_numpy().tolist(),
    }, length=16)
    return FoldPlan(fold=FINAL_FOLD if final else fold, train_subjects=train_subjects,
                    train_videos=train_videos, test_videos=test_videos, events=events,
                    selection=selection, priors=priors, input_fingerprint=fingerprint,
                    train_fingerprint=train_fp)


@dataclass
class TrainingWindows:
    """Training inputs ``x`` (n, 36, k) float32, spot targets (n, k) float32 and class targets
    (n, k) int64."""

    x: np.ndarray
    spot: np.ndarray
    cls: np.ndarray


def load_training_windows(plan: FoldPlan) -> TrainingWindows:
    """Read the selected windows of every training video (one file at a time)."""
    xs, ys, cs = [], [], []
    for ref, sel in zip(plan.selection.videos, plan.selection.windows):
        if not len(sel):
            continue
        feats = read_video_features(ref.path)
        spot_w, cls_w = video_targets(ref, plan.events.get(ref.key, _no_events()))
        xs.append(feats.values[sel])
        ys.append(spot_w[sel])
        cs.append(cls_w[sel])
    if not xs:
        raise DataError(f"fold {plan.fold}: no training window selected")
    return TrainingWindows(x=np.concatenate(xs).astype(np.float32),
                           spot=np.concatenate(ys).astype(np.float32),
                           cls=np.concatenate(cs).astype(np.int64))


def _no_events() -> pd.DataFrame:
    return pd.DataFrame({"onset_index": [], "offset_index": [], "class_id": []})


# -- torch ------------------------------------------------------------------------------


def resolve_device(setting: str):  # noqa: ANN201 - torch.device
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a DataError."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise DataError("train.device is 'cuda' but no CUDA device is available; use auto or cpu")
    return torch.device(setting)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def fit(model: Any, data: TrainingWindows, priors: Priors, tc: TrainConfig, device: Any,
        progress: bool = True, label: str = "") -> list[dict[str, float]]:
    """Train ``model`` in place on ``data``; returns one record per epoch (mean loss, MSE, CE,
    last learning rate).

    Loss = mse_weight x MSE(spot, target) + ce_weight x weighted CE(logits, class), both means
    over all frames of the batch. Adam with a OneCycle schedule over ``epochs`` x batches. Each
    batch's inputs are multiplied per window by a factor drawn in ``scale_aug``. Shuffling and
    augmentation use one generator seeded with ``train.seed``. With ``train.micro_batch`` the
    model runs its temporal blocks that many windows at a time inside each step
    (:func:`vrme.model.set_micro_batch`); the step itself is unchanged.
    """
    import torch

    if tc.micro_batch is not None:
        from vrme.model import set_micro_batch

        set_micro_batch(model, tc.micro_batch)
    gen = torch.Generator().manual_seed(tc.seed)
    x = torch.from_numpy(data.x)
    y = torch.from_numpy(data.spot)
    c = torch.from_numpy(data.cls)
    n = x.shape[0]
    steps = math.ceil(n / tc.batch_size)
    weights = torch.tensor(priors.class_weights, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, epochs=tc.epochs,
                                                steps_per_epoch=steps)
    lo, hi = tc.scale_aug
    history: list[dict[str, float]] = []
    with ProgressBar(progress, f"fold {label} training", tc.epochs, unit="epochs",
                     transient=True) as bar:
        for epoch in range(tc.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            scale = lo + (hi - lo) * torch.rand(n, generator=gen)
            tot = tot_mse = tot_ce = 0.0
            for b in range(steps):
                check_interrupt(f"training {label or 'a model'}")
                idx = perm[b * tc.batch_size:(b + 1) * tc.batch_size]
                xb = (x[idx] * scale[idx, None, None]).to(device)
                yb, cb = y[idx].to(device), c[idx].to(device)
                opt.zero_grad(set_to_none=True)
                spot, logits = model(xb)
                mse = torch.mean((spot.reshape(-1) - yb.reshape(-1)) ** 2)
                logp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
                cflat = cb.reshape(-1)
                ce = -(weights[cflat] * logp.gather(1, cflat[:, None])[:, 0]).mean()
                loss = tc.mse_weight * mse + tc.ce_weight * ce
                loss.backward()
                opt.step()
                sched.step()
                m = len(idx)
                tot += loss.item() * m
                tot_mse += mse.item() * m
                tot_ce += ce.item() * m
            rec = {"epoch": epoch + 1, "loss": tot / n, "mse": tot_mse / n, "ce": tot_ce / n,
                   "lr": float(sched.get_last_lr()[0])}
            history.append(rec)
            log.info("fold %s epoch %d/%d loss %.5f (mse %.5f, ce %.5f)", label, epoch + 1,
                     tc.epochs, rec["loss"], rec["mse"], rec["ce"])
            bar.advance(1, description=f"fold {label} loss {rec['loss']:.4f}")
    return history


# -- a whole fold ---------------------------------------------------------------------------


def train_params(cfg: Config) -> dict[str, Any]:
    """Every setting a trained fold (network and per-frame scores) depends on besides its
    inputs: the model and training sections (thread count and device excluded), the class
    weighting (the neutral weight, zero under synergy strategy 0), the window length, the frame
    skip and :data:`TRAIN_VERSION`. Decoding settings and k_p are not part of it."""
    train = cfg.train.model_dump(mode="json")
    train.pop("threads", None)
    train.pop("device", None)
    return {
        "model": cfg.model.model_dump(mode="json"),
        "train": train,
        "neutral_weight": (0.0 if cfg.decode.synergy_strategy == 0
                           else float(cfg.priors.neutral_weight_factor)),
        "k": int(cfg.features.k),
        "frame_skip": int(cfg.dataset.frame_skip),
        "version": TRAIN_VERSION,
        **({"datasets": [[d.name, d.fps, d.frame_skip] for d in cfg.datasets]}
           if cfg.datasets else {}),
    }


def train_hash(cfg: Config) -> str:
    """Short hash of :func:`train_params` (the folder of trained folds under ``models/``)."""
    return stable_hash(train_params(cfg), length=16)


def decode_params(cfg: Config) -> dict[str, Any]:
    """Every setting a fold's intervals depend on besides its scores: the decode section, how
    k_p is obtained (priors scope, a fixed k_p) and :data:`vrme.decoding.decode.DECODE_VERSION`."""
    from vrme.decoding.decode import DECODE_VERSION

    return {"decode": cfg.decode.model_dump(mode="json"),
            "k_p": {"scope": cfg.priors.scope, "fixed": cfg.priors.k_p},
            "version": DECODE_VERSION}


def decode_hash(cfg: Config) -> str:
    """Short hash of :func:`decode_params`."""
    return stable_hash(decode_params(cfg), length=16)


def fold_config_hash(cfg: Config) -> str:
    """Hash of every setting that changes a fold's outputs: :func:`train_hash` and
    :func:`decode_hash` (so the code versions of training and decoding are part of it)."""
    return stable_hash({"train": train_hash(cfg), "decode": decode_hash(cfg)}, length=16)


def models_dir(cfg: Config) -> Path:
    """Where a benchmark run keeps its trained folds: ``<out>/models/<dataset>/<train-hash>``
    (one sub-folder per fold)."""
    return catalog.models_dir(cfg, train_hash(cfg))


@dataclass
class FoldResult:
    """A finished fold: its folder, intervals (original frame numbers), priors and records."""

    fold: str
    fold_dir: Path
    intervals: pd.DataFrame
    priors: Priors
    history: list[dict[str, float]]
    timings: dict[str, float]
    config_hash: str
    input_fingerprint: str
    n_train_windows: int
    reused: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    how: str = "trained"
    """trained | decoded (training reused, intervals decoded again) | cached (nothing redone)."""


def scores_table(subject: str, video: str, spot: np.ndarray, logits: np.ndarray,
                 first_frame: int, frame_skip: int) -> pd.DataFrame:
    """One video's per-frame outputs as rows of ``scores.parquet`` (columns SCORE_COLUMNS)."""
    n = len(spot)
    idx = np.arange(n, dtype=np.int32)
    df = pd.DataFrame({
        "subject": [str(subject)] * n, "video": [str(video)] * n, "index": idx,
        "frame": first_frame + idx.astype(np.int64) * frame_skip,
        "spot": spot.astype(np.float32),
    })
    for j, col in enumerate(LOGIT_COLUMNS):
        df[col] = logits[:, j].astype(np.float32)
    return df


def decode_scores_table(scores: pd.DataFrame, k_p: int, cfg: DecodeConfig) -> pd.DataFrame:
    """Decode every video of a ``scores.parquet`` table (videos in table order).

    Index positions map back to original numbers through the table's ``frame`` column.
    Returns intervals with ``OUTPUT_COLUMNS``.
    """
    parts = []
    for (subj, vid), grp in scores.groupby(["subject", "video"], sort=False):
        grp = grp.sort_values("index")
        iv = decode_scores(grp["spot"].to_numpy(np.float64), grp[LOGIT_COLUMNS].to_numpy(),
                           k_p, cfg)
        frames = grp["frame"].to_numpy(np.int64)
        parts.append(pd.DataFrame({
            "subject": str(subj), "video": str(vid),
            "onset": frames[iv["onset_index"].to_numpy(np.int64)],
            "apex": frames[iv["apex_index"].to_numpy(np.int64)],
            "offset": frames[iv["offset_index"].to_numpy(np.int64)],
            "emotion": iv["emotion"].astype(object).to_numpy(),
            "score": iv["score"].to_numpy(np.float64),
        }, columns=OUTPUT_COLUMNS))
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_intervals()
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]


def intervals_csv(df: pd.DataFrame) -> str:
    """``intervals.csv`` text (columns OUTPUT_COLUMNS)."""
    return df[OUTPUT_COLUMNS].to_csv(index=False)


def read_intervals(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an ``intervals.csv`` (subject and video as strings)."""
    df = pd.read_csv(path, dtype={"subject": str, "video": str, "emotion": str})
    if df.empty:
        return empty_intervals()
    return df[OUTPUT_COLUMNS]


def read_fold_marker(fold_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fold's ``fold.json`` as a dict, or None when missing or unreadable."""
    return read_json_record(Path(fold_dir) / FOLD_FILE)


def fold_is_complete(fold_dir: str | os.PathLike[str], config_hash: str | None = None,
                     input_fingerprint: str | None = None) -> bool:
    """True when ``fold_dir`` holds a finished fold (its ``fold.json`` and every output file),
    made with the given config hash and input fingerprint when those are given."""
    marker = read_fold_marker(fold_dir)
    if not marker or marker.get("status") != "complete":
        return False
    if config_hash is not None and marker.get("config_hash") != config_hash:
        return False
    if input_fingerprint is not None and marker.get("input_fingerprint") != input_fingerprint:
        return False
    return all((Path(fold_dir) / f).is_file()
               for f in (MODEL_FILE, PRIORS_FILE, SCORES_FILE, INTERVALS_FILE))


def load_fold_result(fold_dir: str | os.PathLike[str]) -> FoldResult:
    """Read a finished fold back from its folder."""
    fold_dir = Path(fold_dir)
    marker = read_fold_marker(fold_dir)
    if not marker:
        raise DataError(f"{fold_dir}: no fold.json (the fold did not finish)")
    return FoldResult(
        fold=str(marker["fold"]), fold_dir=fold_dir,
        intervals=read_intervals(fold_dir / INTERVALS_FILE),
        priors=Priors.load(fold_dir / PRIORS_FILE), history=marker.get("history", []),
        timings=marker.get("timings", {}), config_hash=marker["config_hash"],
        input_fingerprint=marker["input_fingerprint"],
        n_train_windows=int(marker.get("n_train_windows", 0)), reused=True, info=marker,
        how=str(marker.get("how", "trained")),
    )


_TRAIN_LOCK = threading.Lock()
"""Serialises training within a process (see :func:`fit_plan`)."""


def fit_plan(cfg: Config, plan: FoldPlan, out_dir: Path, *, progress: bool = True,
             model_factory: ModelFactory | None = None) -> tuple[Any, list[dict[str, float]],
                                                                 Any, dict[str, float]]:
    """Train the network a plan describes and save ``priors.json`` and ``model.pt`` (state
    dict, model config, k, priors, fold, training hash) into ``out_dir``.

    Returns (model, loss history, device, timings with load_s and train_s; train_s counts
    training only, not the wait for another fold's training to end). Shared by the folds and
    the final model, so both train exactly the same way.
    """
    import torch

    if model_factory is None:
        from vrme.model import build_model as model_factory
    t0 = time.perf_counter()
    priors = plan.priors
    ensure_folder(out_dir)
    priors.save(out_dir / PRIORS_FILE)
    data = load_training_windows(plan)
    timings = {"load_s": time.perf_counter() - t0}
    what = "final model" if plan.fold == FINAL_FOLD else f"fold {plan.fold}"
    log.info("%s: %d training windows (%d with ME, %d ME-free of %d) from %d videos of %d "
             "subjects; k_p=%d; class weights %s", what, len(data.x), plan.selection.n_me,
             plan.selection.n_free, plan.selection.n_free_available, len(plan.train_videos),
             len(plan.train_subjects), priors.k_p, [round(w, 3) for w in priors.class_weights])
    device = resolve_device(cfg.train.device)
    # Model init and drop-path masks draw from torch's process-wide generator: folds trained
    # side by side in threads (the threads task runner) would interleave their draws and
    # change each other's numbers, so training holds a lock from seeding to the last step.
    t_wait = time.perf_counter()
    with _TRAIN_LOCK:
        timings["wait_s"] = time.perf_counter() - t_wait
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        timings["threads"] = float(torch.get_num_threads())
        seed_everything(cfg.train.seed)
        model = model_factory(cfg.model, cfg.features.k).to(device)
        t1 = time.perf_counter()
        history = fit(model, data, priors, cfg.train, device, progress=progress, label=plan.fold)
        timings["train_s"] = time.perf_counter() - t1
    del data
    # Serialised in memory first: torch reports a failed file write (a full disk) as a bare
    # RuntimeError, while write_bytes_atomic names the file.
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "model_config": cfg.model.model_dump(mode="json"), "k": cfg.features.k,
                "priors": priors.to_dict(), "fold": plan.fold,
                "train_hash": train_hash(cfg)}, buf)
    write_bytes_atomic(out_dir / MODEL_FILE, buf.getvalue())
    return model, history, device, timings


TRAINED_FILES = (MODEL_FILE, SCORES_FILE)
"""What a trained fold consists of (besides its record, ``train.json``)."""


def read_json_record(path: Path) -> dict[str, Any] | None:
    """A JSON record (``fold.json``, ``train.json``) as a dict, or None when missing or
    unreadable."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trained_fold_valid(trained_dir: str | os.PathLike[str], plan_hash: str,
                       train_fingerprint: str) -> dict[str, Any] | None:
    """The ``train.json`` of ``trained_dir`` when it records a finished training with this
    training hash and these inputs and its files exist; else None."""
    rec = read_json_record(Path(trained_dir) / TRAIN_FILE)
    if (not rec or rec.get("status") != "complete" or rec.get("train_hash") != plan_hash
            or rec.get("train_fingerprint") != train_fingerprint):
        return None
    if not all((Path(trained_dir) / f).is_file() for f in TRAINED_FILES):
        return None
    return rec


def _train_and_score(cfg: Config, plan: FoldPlan, trained_dir: Path, *, progress: bool,
                     model_factory: ModelFactory | None) -> dict[str, Any]:
    """Train a fold's network, predict every test video and write ``model.pt``,
    ``scores.parquet`` and, last, ``train.json`` into ``trained_dir``; returns the record."""
    import torch

    t0 = time.perf_counter()
    ensure_folder(trained_dir)
    (trained_dir / TRAIN_FILE).unlink(missing_ok=True)
    model, history, device, timings = fit_plan(cfg, plan, trained_dir, progress=progress,
                                               model_factory=model_factory)
    t2 = time.perf_counter()
    parts = []
    for ref in plan.test_videos:
        feats = read_video_features(ref.path)
        spot, logits = predict_video(model, feats, device, cfg.train.predict_batch_size)
        if len(spot) == 0:
            log.warning("fold %s: video %s has no window (too short for k=%d); no prediction",
                        plan.fold, ref.video, cfg.features.k)
            continue
        parts.append(scores_table(ref.subject, ref.video, spot, logits, ref.first_frame,
                                  ref.frame_skip))
    scores = (pd.concat(parts, ignore_index=True) if parts
              else SCORES_SCHEMA.empty_table().to_pandas())
    timings["predict_s"] = time.perf_counter() - t2
    th = train_hash(cfg)
    write_parquet_atomic(trained_dir / SCORES_FILE,
                         pa.Table.from_pandas(scores[SCORE_COLUMNS], schema=SCORES_SCHEMA,
                                              preserve_index=False),
                         {"vrme": {"fold": plan.fold, "train_hash": th,
                                   "frame_skip": cfg.dataset.frame_skip}})
    timings["trained_s"] = time.perf_counter() - t0
    record = {
        "status": "complete", "fold": plan.fold, "train_hash": th,
        "train_params": train_params(cfg), "train_fingerprint": plan.train_fingerprint,
        "train_subjects": plan.train_subjects, "test_videos": [r.video for r in plan.test_videos],
        "n_train_windows": int(plan.selection.n_me + plan.selection.n_free),
        "n_me_windows": plan.selection.n_me, "n_free_windows": plan.selection.n_free,
        "class_weights": list(plan.priors.class_weights), "device": str(device),
        "torch": torch.__version__, "timings": timings, "history": history,
    }
    write_json_atomic(trained_dir / TRAIN_FILE, record)
    log.info("fold %s trained in %.1f s (%.1f s training)", plan.fold, timings["trained_s"],
             timings["train_s"])
    return record


def train_fold(cfg: Config, fold: str, manifest: pd.DataFrame | str | os.PathLike[str],
               labels: pd.DataFrame | str | os.PathLike[str],
               features_dir: str | os.PathLike[str], fold_dir: str | os.PathLike[str],
               progress: bool = True, model_factory: ModelFactory | None = None,
               models_dir: str | os.PathLike[str] | None = None,
               reuse: bool = True) -> FoldResult:
    """Make the fold folder of one leave-one-subject-out fold: train on every subject but
    ``fold``, predict ``fold``'s videos, decode, and write the fold folder (see the module
    docstring). ``fold.json`` is removed first and written last.

    With ``reuse`` (default), what is still valid is not redone: a fold folder whose
    ``fold.json`` records these settings and inputs is returned as it is (``how="cached"``);
    a trained fold with this training hash and these training inputs is decoded again
    (``how="decoded"``). ``models_dir`` is where trained folds are kept (one sub-folder per
    fold; :func:`models_dir`); without it they are kept in the fold folder itself.

    ``model_factory(cfg.model, k)`` builds the network; default :func:`vrme.model.build_model`.
    Same config, seed and inputs on the CPU give identical outputs.
    """
    fold = str(fold)
    fold_dir = Path(fold_dir)
    t0 = time.perf_counter()
    plan = plan_fold(cfg, fold, manifest, labels, features_dir)
    config_hash = fold_config_hash(cfg)
    if reuse and fold_is_complete(fold_dir, config_hash, plan.input_fingerprint):
        res = load_fold_result(fold_dir)
        res.how = "cached"
        return res
    ensure_folder(fold_dir)
    (fold_dir / FOLD_FILE).unlink(missing_ok=True)
    trained_dir = Path(models_dir) / fold if models_dir is not None else fold_dir
    th = train_hash(cfg)
    record = trained_fold_valid(trained_dir, th, plan.train_fingerprint) if reuse else None
    how = "decoded" if record is not None else "trained"
    if record is None:
        record = _train_and_score(cfg, plan, trained_dir, progress=progress,
                                  model_factory=model_factory)
    else:
        log.info("fold %s: trained fold %s reused (same training settings and inputs); "
                 "decoding again", fold, trained_dir)
    if trained_dir != fold_dir:
        for name in TRAINED_FILES:
            link_or_copy(trained_dir / name, fold_dir / name)

    priors = plan.priors
    priors.save(fold_dir / PRIORS_FILE)
    t2 = time.perf_counter()
    scores, _ = read_scores(fold_dir)
    intervals = decode_scores_table(scores, priors.k_p, cfg.decode)
    write_text_atomic(fold_dir / INTERVALS_FILE, intervals_csv(intervals))
    timings = {k: v for k, v in record["timings"].items()}
    timings["decode_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    marker = {
        "status": "complete", "fold": fold, "how": how,
        "config_hash": config_hash, "input_fingerprint": plan.input_fingerprint,
        "train_hash": th, "decode_hash": decode_hash(cfg),
        "train_fingerprint": plan.train_fingerprint, "trained_dir": str(trained_dir),
        "train_subjects": plan.train_subjects, "test_videos": [r.video for r in plan.test_videos],
        "n_train_windows": record["n_train_windows"], "n_me_windows": record["n_me_windows"],
        "n_free_windows": record["n_free_windows"], "k_p": priors.k_p,
        "n_intervals": len(intervals), "device": record.get("device"),
        "torch": record.get("torch"), "timings": timings, "history": record.get("history", []),
    }
    write_json_atomic(fold_dir / FOLD_FILE, marker)
    log.info("fold %s done (%s) in %.1f s: %d intervals", fold, how, timings["total_s"],
             len(intervals))
    return FoldResult(fold=fold, fold_dir=fold_dir, intervals=intervals, priors=priors,
                      history=marker["history"], timings=timings, config_hash=config_hash,
                      input_fingerprint=plan.input_fingerprint,
                      n_train_windows=marker["n_train_windows"], reused=how != "trained",
                      info=marker, how=how)


def load_fold_model(fold_dir: str | os.PathLike[str], device: str = "cpu",
                    model_factory: ModelFactory | None = None) -> tuple[Any, Priors, int]:
    """Rebuild a fold's trained network from its ``model.pt``: ``(model, priors, k)``. The
    priors are the folder's ``priors.json`` when it has one (a fold folder: its k_p is the one
    its intervals were decoded with), else those saved in ``model.pt``."""
    import torch

    if model_factory is None:
        from vrme.model import build_model as model_factory
    blob = torch.load(Path(fold_dir) / MODEL_FILE, map_location=device, weights_only=True)
    model = model_factory(ModelConfig.model_validate(blob["model_config"]), int(blob["k"]))
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    priors_file = Path(fold_dir) / PRIORS_FILE
    priors = Priors.load(priors_file) if priors_file.is_file() else Priors.from_dict(blob["priors"])
    return model, priors, int(blob["k"])


def read_scores(fold_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A fold's ``scores.parquet`` and its metadata."""
    import pyarrow.parquet as pq

    path = Path(fold_dir) / SCORES_FILE
    df = pq.read_table(path).to_pandas()
    return df, read_parquet_metadata(path).get("vrme", {})
