"""Typed, validated configuration for every vrme step.

A config is one YAML file (see ``configs/``) validated into :class:`Config`. Unknown keys and
wrong types fail with :class:`ConfigError`, whose message names the file and the key path.
``--set key.path=value`` overrides (values parsed as YAML) are applied to the raw mapping before
validation, so they are checked exactly like keys in the file.

Relative paths in a config (``dataset.root``, ``run.out``) are resolved against the current
working directory when the config is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from vrme.errors import UserError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EMOTION_CLASSES: tuple[str, ...] = ("negative", "positive", "surprise", "others")
"""The four emotion classes of the method, in class-index order (neutral is index 4)."""

CLASS_NAMES: tuple[str, ...] = EMOTION_CLASSES + ("neutral",)
"""All five per-frame classes, index = class id."""

Emotion = Literal["negative", "positive", "surprise", "others"]
Layout = Literal["casme3", "samm_lv", "megc", "videos"]

DEFAULT_EMOTION_MAPS: dict[str, dict[str, str]] = {
    "casme3": {
        "happy": "positive",
        "anger": "negative",
        "disgust": "negative",
        "fear": "negative",
        "sad": "negative",
        "surprise": "surprise",
        "others": "others",
    },
    "samm_lv": {
        "happiness": "positive",
        "anger": "negative",
        "contempt": "negative",
        "disgust": "negative",
        "fear": "negative",
        "sadness": "negative",
        "surprise": "surprise",
        "other": "others",
    },
}


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class DatasetConfig(_Strict):
    """Where a dataset sits and how its frames and labels are read."""

    name: str = Field(description="Short name used in cache paths, e.g. casme3, samm_lv, demo.")
    layout: Layout = Field(description="Folder/spreadsheet layout (DATASETS.md).")
    root: Path | None = Field(default=None, description="Dataset root; CLI --root overrides.")
    label_files: list[str] | None = Field(
        default=None,
        description="Spreadsheet names relative to root; default per layout "
        "(casme3: [casme3_label.xlsx]; samm_lv: [SAMM_LongVideos_V3_Release.xlsx, "
        "SAMM_Micro_FACS_Codes_v2.xlsx]).",
    )
    fps: float = Field(gt=0, description="Frame rate of the original videos (frames/s).")
    frame_skip: int = Field(ge=1, description="Keep every n-th frame (SAMM-LV 7, CAS(ME)^3 1).")
    emotion_map: dict[str, Emotion] | None = Field(
        default=None, description="Raw emotion (lower case) -> class; default per layout."
    )
    on_frame_gap: Literal["fill", "skip_video"] = Field(
        default="fill",
        description="Missing frame numbers: fill = repeat the previous frame (reported), "
        "skip_video = leave the video out (reported).",
    )
    drop_onset_zero: bool = Field(
        default=True, description="SAMM-LV: drop events whose onset is 0, as the reference does."
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        layout = data.get("layout")
        if data.get("label_files") is None:
            data["label_files"] = {
                "casme3": ["casme3_label.xlsx"],
                "samm_lv": ["SAMM_LongVideos_V3_Release.xlsx", "SAMM_Micro_FACS_Codes_v2.xlsx"],
            }.get(layout, [])
        if data.get("emotion_map") is None:
            data["emotion_map"] = dict(DEFAULT_EMOTION_MAPS.get(layout, {}))
        elif isinstance(data["emotion_map"], dict):
            data["emotion_map"] = {
                str(k).lower().strip(): v for k, v in data["emotion_map"].items()
            }
        return data


class SynthConfig(_Strict):
    """A synthetic dataset to generate when ``dataset.root`` does not exist yet."""

    subjects: int = Field(default=4, ge=1)
    videos: int = Field(default=2, ge=1, description="Videos per subject.")
    seconds: float = Field(default=20.0, gt=0, description="Length of every video.")
    fps: float = Field(default=30.0, gt=0)
    width: int = Field(default=640, ge=160)
    height: int = Field(default=480, ge=120)
    mes_per_video: int = Field(default=4, ge=0, description="Micro-expressions per video.")
    macros_per_video: int = Field(default=1, ge=0, description="Macro-expressions per video.")
    seed: int = 0


class FarnebackConfig(_Strict):
    """OpenCV ``calcOpticalFlowFarneback`` parameters (METHOD.md section 3)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 5
    poly_n: int = 7
    poly_sigma: float = 1.5


class AlignConfig(_Strict):
    """Face detection, landmarks and the eye-corner crop (METHOD.md section 3.1)."""

    crop_size: int = Field(default=320, ge=64, description="Side of the square face crop (px).")
    detector_upsample: int = Field(default=0, ge=0, description="dlib detector upsampling.")
    predictor: str = Field(
        default="auto",
        description="Path of shape_predictor_68_face_landmarks.dat; auto = the file shipped in "
        "the face-recognition-models package.",
    )


class FeatureConfig(_Strict):
    """Window ROI optical-flow features (METHOD.md sections 2-3)."""

    k: int = Field(ge=4, description="Window length in frames after skipping; stride k/2.")
    farneback: FarnebackConfig = Field(default_factory=FarnebackConfig)
    realign: bool = Field(default=True, description="Per-frame re-alignment by nose-ridge motion.")
    realign_max_iter: int = Field(default=3, ge=0)
    realign_threshold_px2: float = Field(default=1.0, gt=0)
    global_top_fraction: float = Field(
        default=0.7, gt=0, le=1,
        description="Fraction of largest nose-ridge vectors averaged into the global motion.",
    )
    roi_top_fraction: float = Field(
        default=0.3, gt=0, le=1,
        description="Fraction of largest vectors averaged over a whole region (eyebrows, "
        "mouth, eyelids).",
    )
    box_top_fraction: float = Field(
        default=0.2, gt=0, le=1,
        description="Fraction of largest vectors averaged over a small landmark box (left "
        "eyebrow, mouth, nose wings).",
    )
    brow_right_box_top_fraction: float = Field(
        default=0.3, gt=0, le=1,
        description="Same for the three right-eyebrow boxes (the reference uses 0.3 there).",
    )
    flow_impl: Literal["fast", "opencv"] = Field(
        default="fast",
        description="Farneback implementation: opencv = cv2.calcOpticalFlowFarneback on every "
        "frame pair, as the reference calls it (its numbers exactly); fast = vrme.farneback, the "
        "same algorithm with each window's first frame expanded once, compiled with numba (flows "
        "equal to float rounding, about 1e-5 px).",
    )
    missing_face: Literal["reuse", "zeros", "reference"] = Field(
        default="reuse",
        description="A window whose first frame has no detectable face: reuse = the nearest "
        "window's landmarks (flag 'reused'); zeros = all-zero features (flag 'none'); reference "
        "= the reference's rule: the window starts at its first frame with a face (detected "
        "frame by frame), the frames before it are zero columns (flag 'late'; no face in the "
        "window: all zeros, flag 'none').",
    )
    workers: int | None = Field(
        default=None, ge=1, description="Worker processes for features; default = CPU count."
    )
    bad_frame: Literal["fail", "repeat_previous"] = Field(
        default="repeat_previous",
        description="Bad frame (unreadable, or not the video's size): repeat the previous good "
        "frame (counted and reported), or fail = leave the video out (skipped, naming the file).",
    )

    @field_validator("k")
    @classmethod
    def _even_k(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even (the window stride is k/2), got {v}")
        return v


class ModelConfig(_Strict):
    """The slow-fast multitask network (METHOD.md section 6)."""

    backbone: Literal["mamba", "transformer", "gru"] = "mamba"
    in_channels: int = Field(default=36, ge=1)
    fast_channels: int = Field(default=128, ge=2)
    slow_channels: int = Field(default=256, ge=2)
    stages: int = Field(default=3, ge=1)
    blocks_per_stage: int = Field(default=4, ge=1)
    d_state: int = Field(default=64, ge=1)
    d_conv: int = Field(default=4, ge=1)
    expand: int = Field(default=2, ge=1)
    drop_path: float = Field(default=0.2, ge=0, lt=1)
    n_heads: int = Field(default=4, ge=1, description="Attention heads (transformer backbone).")
    n_classes: int = Field(default=5, ge=2)
    scan: Literal["auto", "cuda", "torch"] = Field(
        default="auto",
        description="Selective scan: cuda = mamba_ssm kernels, torch = vrme's pure-PyTorch scan, "
        "auto = cuda when mamba_ssm is installed and the model is on a GPU.",
    )
    dt_rank: int | None = Field(
        default=None, ge=1, description="Rank of the Mamba dt projection; null = ceil(channels/16)."
    )
    init: Literal["reference", "mamba"] = Field(
        default="reference",
        description="reference = the paper's init (every Linear, dt_proj included, re-drawn "
        "trunc-normal std 0.02 with zero bias); mamba = Mamba layers keep mamba_ssm's own init.",
    )


class TrainConfig(_Strict):
    """One leave-one-subject-out fold's training (METHOD.md section 7)."""

    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    ratio: float = Field(default=4.0, ge=0, description="ME-free windows per ME window.")
    seed: int = 100
    device: Literal["auto", "cpu", "cuda"] = "auto"
    scale_aug: tuple[float, float] = (0.9, 1.1)
    mse_weight: float = Field(default=0.9, ge=0)
    ce_weight: float = Field(default=0.1, ge=0)
    threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads per fold; default = torch's own."
    )
    train_videos: Literal["with_me", "all"] = Field(
        default="with_me",
        description="Training videos: with_me = only videos with at least one micro-expression "
        "(as the reference), all = every video of the training subjects.",
    )
    predict_batch_size: int = Field(
        default=256, ge=1, description="Windows per forward pass at inference."
    )
    shuffle_labels: bool = Field(
        default=False,
        description="Control experiment: move every training event to a random place in its "
        "video (seeded, same length and emotion). A model trained so should score near chance.",
    )


class PriorConfig(_Strict):
    """Priors (METHOD.md section 5)."""

    scope: Literal["fold", "global"] = Field(
        default="fold",
        description="fold = training subjects only (correct); global = all subjects, the "
        "reference's leaky behaviour, for comparison only.",
    )
    neutral_weight_factor: float = Field(default=6.0, ge=0)
    k_p: int | None = Field(default=None, ge=1, description="Fixed k_p instead of estimating it.")


class DecodeConfig(_Strict):
    """Interval decoding and recognition (METHOD.md section 8)."""

    p: float = Field(default=0.55, ge=0, le=1)
    interval_strategy: Literal[0, 1] = 1
    synergy_strategy: Literal[0, 1, 2] = 1
    onset_divisor: float = Field(default=1.5, gt=0)
    max_extension: int = Field(default=5, ge=1, description="Extension limit in units of k_p.")
    iou_threshold: float = Field(default=0.2, ge=0, le=1)
    neutral_intervals: Literal["drop", "keep"] = Field(
        default="drop",
        description="An interval whose majority vote is neutral: drop it (the reference's "
        "final numbers) or keep it with emotion 'neutral'.",
    )


class EvalConfig(_Strict):
    """Scoring (STRS.md)."""

    emotions: list[Emotion] | None = Field(
        default=None, description="Analysed emotions; null = every emotion in the ground truth."
    )


class FaultConfig(_Strict):
    """Test-only fault injection (never set in a real config)."""

    fail_folds: list[str] = Field(default_factory=list, description="Subjects whose fold fails.")
    kind: Literal["transient", "data"] = "transient"
    times: int = Field(default=1, ge=0, description="How many attempts fail before success.")
    marker_dir: Path | None = Field(
        default=None, description="Where attempt counters are kept; default run folder."
    )


class OrchestrationConfig(_Strict):
    """Prefect task runner, retries, timeouts."""

    task_runner: Literal["threads", "processes", "dask"] = "threads"
    max_workers: int | None = Field(default=None, ge=1)
    dask_address: str | None = Field(
        default=None, description="tcp://host:8786 of an existing Dask scheduler."
    )
    videos_per_task: int = Field(default=1, ge=1, description="Videos per align/features task.")
    retries: int = Field(default=2, ge=0)
    retry_delay_s: float = Field(default=10.0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, description="Per-task timeout.")
    fault: FaultConfig = Field(default_factory=FaultConfig)


class RunConfig(_Strict):
    """Where outputs go."""

    name: str | None = Field(default=None, description="Run name; default = config file stem.")
    out: Path | None = Field(
        default=None, description="Work folder; default data/work/<dataset.name>."
    )


class PaperNumbers(_Strict):
    strs: float
    spot_f1: float
    recog_f1: float


class Config(_Strict):
    """A whole vrme configuration."""

    dataset: DatasetConfig
    synth: SynthConfig | None = None
    align: AlignConfig = Field(default_factory=AlignConfig)
    features: FeatureConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    priors: PriorConfig = Field(default_factory=PriorConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    paper: dict[str, PaperNumbers] = Field(
        default_factory=dict, description="Published numbers to show beside a run (Table 3)."
    )
    source: str | None = Field(default=None, description="Set by the loader: the file read.")

    # -- derived locations -------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        """The work folder holding ingest/, landmarks/, features/ and runs/."""
        return Path(self.run.out) if self.run.out else Path("data/work") / self.dataset.name

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        return Path(self.source).stem if self.source else self.dataset.name

    @property
    def ingest_dir(self) -> Path:
        return self.out_dir / "ingest"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "runs" / self.run_name

    def section_hash(self, *sections: str) -> str:
        """Short content hash of the named config sections (e.g. ``"align"``)."""
        payload = {s: _dump(getattr(self, s)) for s in sections}
        return stable_hash(payload)


def _dump(v: Any) -> Any:
    return v.model_dump(mode="json") if isinstance(v, BaseModel) else v


def stable_hash(payload: Any, length: int = 12) -> str:
    """Hex digest of a JSON-serialisable payload, independent of key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# -- loading -----------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw config mapping (in place) and return it."""
    for text in overrides or []:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text!r}: {where} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{loc}'")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key '{loc}'")
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{where}: key '{loc}': {err['msg']}{got_s}")
    return "\n".join(lines)


def config_from_mapping(raw: dict[str, Any], where: str = "<config>") -> Config:
    """Validate a raw mapping into a :class:`Config`; ``where`` names it in errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def load_config(
    path: str | os.PathLike[str],
    overrides: list[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Config:
    """Read, override and validate a YAML config.

    ``root`` and ``out`` (the CLI's ``--root``/``--out``) replace ``dataset.root`` and
    ``run.out``. Relative paths resolve against the current working directory.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    raw.pop("source", None)
    apply_overrides(raw, overrides)
    where = str(p) + (" (with --set " + ", ".join(overrides) + ")" if overrides else "")
    cfg = config_from_mapping(raw, where)
    cfg.source = str(p)
    if root is not None:
        cfg.dataset.root = Path(root)
    if out is not None:
        cfg.run.out = Path(out)
    if cfg.dataset.root is not None:
        cfg.dataset.root = Path(os.path.abspath(cfg.dataset.root))
    if cfg.run.out is not None:
        cfg.run.out = Path(os.path.abspath(cfg.run.out))
    else:
        cfg.run.out = Path(os.path.abspath(cfg.out_dir))
    return cfg
