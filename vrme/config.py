"""Typed, validated configuration for every vrme step.

A config is one UTF-8 YAML file (see ``configs/``) validated into :class:`Config`. Unknown keys,
a key written twice and wrong types fail with :class:`ConfigError`, whose one-line message names
the file and the key path. Types are strict: a count is a whole number (``true`` or ``3.0`` or
``"3"`` is not one), a number is a number (not text), a flag is ``true``/``false`` (not ``1``).
``--set key.path=value`` overrides (values parsed as YAML) are applied to the raw mapping before
validation, so they are checked exactly like keys in the file.

Relative paths in a config (``dataset.root``, ``run.out``) are resolved against the current
working directory when the config is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from vrme import catalog
from vrme.data import layouts as _layouts
from vrme.errors import UserError

EMOTION_CLASSES: tuple[str, ...] = ("negative", "positive", "surprise", "others")
"""The four emotion classes of the method, in class-index order (neutral is index 4)."""

CLASS_NAMES: tuple[str, ...] = EMOTION_CLASSES + ("neutral",)
"""All five per-frame classes, index = class id."""

Emotion = Literal["negative", "positive", "surprise", "others"]

DEFAULT_EMOTION_MAPS: dict[str, dict[str, str]] = {
    lay.name: dict(lay.emotion_map) for lay in _layouts.all_layouts() if lay.emotion_map
}
"""Each labelled layout's default ``dataset.emotion_map`` (declared in its module,
``vrme/data/layouts/``)."""


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the file and the key."""


def _whole_number(value: Any) -> Any:
    """A choice among whole numbers (``Literal[0, 1]``) takes an int, not ``true`` or ``1.0``
    (pydantic's Literal check compares by equality, and ``True == 1``)."""
    if type(value) is not int:
        raise ValueError(f"must be a whole number, not {_describe(value)}")
    return value


Choice01 = Annotated[Literal[0, 1], BeforeValidator(_whole_number)]
Choice012 = Annotated[Literal[0, 1, 2], BeforeValidator(_whole_number)]
StrictFloat = Annotated[float, Strict()]
"""A number: an int or a float, never a bool or text (``Strict`` float accepts ints)."""

class _Strict(BaseModel):
    """Strict types everywhere: ints, floats and bools are not converted from each other or
    from text (a YAML ``true`` is not 1, ``"3"`` is not 3, ``3.0`` is not a count); paths are
    the one exception (text is a path), declared with ``strict=False``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              strict=True)


class DatasetConfig(_Strict):
    """Where a dataset sits and how its frames and labels are read."""

    name: str = Field(description="Short name used in cache paths, e.g. casme3, samm_lv, demo.")
    layout: str = Field(description="Folder/spreadsheet layout: a layout registered by a module "
                        "of vrme/data/layouts/ (casme2, casme3, samm_lv, megc, videos; "
                        "DATASETS.md).")
    root: Path | None = Field(default=None, strict=False,
                              description="Dataset root; CLI --root overrides.")
    label_files: list[str] | None = Field(
        default=None,
        description="Spreadsheet names relative to root; default per layout "
        "(casme3: [casme3_label.xlsx]; samm_lv: [SAMM_LongVideos_V3_Release.xlsx, "
        "SAMM_Micro_FACS_Codes_v2.xlsx]; casme2: ['CAS(ME)^2code_final.xlsx']).",
    )
    fps: float = Field(gt=0, description="Frame rate of the original videos (frames/s); "
                       "default per labelled layout (CAS(ME)^3 and CAS(ME)^2 30, SAMM-LV 200).")
    frame_skip: int = Field(ge=1, description="Keep every n-th frame; default per labelled "
                            "layout (SAMM-LV 7, CAS(ME)^3 and CAS(ME)^2 1).")
    emotion_map: dict[str, Emotion] | None = Field(
        default=None, description="Raw emotion (lower case) -> class; default per layout."
    )
    on_frame_gap: Literal["fill", "skip_video"] = Field(
        default="fill",
        description="Missing frame numbers (a gap of at most max_frame_gap frames): fill = "
        "repeat the previous frame (reported), skip_video = leave the video out (reported).",
    )
    max_frame_gap: int = Field(
        default=10, ge=0,
        description="Longest run of missing frame numbers a video may have; a longer gap makes "
        "the video an error (left out, the missing range named in skipped.csv), never a fill.",
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
        layout = _layouts.find(data.get("layout"))  # None: unknown, refused by _known_layout
        if data.get("label_files") is None:
            data["label_files"] = list(layout.label_files) if layout else []
        if data.get("emotion_map") is None:
            data["emotion_map"] = dict(layout.emotion_map) if layout else {}
        elif isinstance(data["emotion_map"], dict):
            data["emotion_map"] = {
                str(k).lower().strip(): v for k, v in data["emotion_map"].items()
            }
        for key in ("fps", "frame_skip"):
            if key not in data and layout is not None and getattr(layout, key) is not None:
                data[key] = getattr(layout, key)
        return data

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, v: str) -> str:
        if _layouts.find(v) is None:
            raise ValueError(f"got {v!r}, which is not a layout; the layouts are "
                             f"{', '.join(_layouts.names())} (one module each in "
                             "vrme/data/layouts/; DATASETS.md)")
        return v


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
        "frame pair, as the reference calls it (its numbers exactly); fast = "
        "vrme.features.farneback, the same algorithm with each window's first frame expanded "
        "once, compiled with numba (flows equal to float rounding, about 1e-5 px).",
    )
    missing_face: Literal["reuse", "zeros", "reference"] = Field(
        default="reuse",
        description="A window whose first frame has no detectable face: reuse = the nearest "
        "window's landmarks (flag 'reused'); zeros = all-zero features (flag 'none'); reference "
        "= the reference's rule: the window starts at its first frame with a face (detected "
        "frame by frame), the frames before it are zero columns (flag 'late'; no face in the "
        "window: all zeros, flag 'none').",
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
    scan: Literal["auto", "cuda", "fused", "torch"] = Field(
        default="auto",
        description="Selective scan: cuda = mamba_ssm kernels, fused = vrme's C kernel for CPUs "
        "(compiled on first use; needs a C compiler), torch = vrme's pure-PyTorch scan, auto = "
        "cuda when mamba_ssm is installed and the model is on a GPU, else fused when it builds, "
        "else torch. fused and torch agree within float rounding.",
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
    scale_aug: tuple[StrictFloat, StrictFloat] = Field(default=(0.9, 1.1), strict=False)
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
    micro_batch: int | None = Field(
        default=None, ge=1,
        description="Windows per pass of the temporal blocks inside one training step (they "
        "are recomputed in backward a micro-batch at a time): bounds a step's activation memory "
        "for one more forward pass of the blocks. BatchNorm, heads and loss still see the whole "
        "batch, so the gradients are the whole batch's up to float rounding (which is why it "
        "is part of the fold's config hash). null = the whole batch at once.",
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


class SammTestDecodeConfig(_Strict):
    """``decode.mode: samm_test``: the reference's decoding of the MEGC SAMM test set
    (METHOD.md section 8); the defaults are the reference's."""

    p: float = Field(default=0.65, ge=0, le=1, description="Peak threshold factor of this "
                     "mode: mean + p * (max - mean) of the smoothed curve.")
    k_p: int | None = Field(
        default=6, ge=1, description="k_p of this mode (indices after frame skipping; smoothing "
        "width 2*k_p, peak distance, interval reach); null = the model's prior.",
    )
    low_threshold: float = Field(
        default=0.2, description="Each side stops at the first two consecutive smoothed scores "
        "below this level within k_p of the peak ...",
    )
    high_threshold: float = Field(
        default=0.8, description="... else below this level between k_p and 2*k_p from it; "
        "else the side is at 2*k_p.",
    )
    negative_penalty: float = Field(
        default=1.0, ge=0, description="Subtracted from the negative logit before the per-frame "
        "argmax (synergy_strategy 1 only).",
    )
    min_other_share: float = Field(
        default=0.2, ge=0, le=1, description="Vote: when more than this share of the frames "
        "inside are not 'negative', the most frequent of those frames' classes wins.",
    )

    @model_validator(mode="after")
    def _levels_ordered(self) -> "SammTestDecodeConfig":
        if self.low_threshold > self.high_threshold:
            raise ValueError(f"low_threshold {self.low_threshold} is above high_threshold "
                             f"{self.high_threshold}")
        return self


class DecodeConfig(_Strict):
    """Interval decoding and recognition (METHOD.md section 8)."""

    mode: Literal["loso", "samm_test"] = Field(
        default="loso", description="loso: the reference's decoding of its leave-one-subject-out "
        "benchmarks (p, extensible intervals on the raw scores, suppression); samm_test: its "
        "decoding of the MEGC SAMM test set (decode.samm_test: own p and k_p, fixed levels on "
        "the smoothed scores, no suppression, a vote wary of 'negative').",
    )
    p: float = Field(default=0.55, ge=0, le=1)
    interval_strategy: Choice01 = 1
    synergy_strategy: Choice012 = 1
    onset_divisor: float = Field(default=1.5, gt=0)
    max_extension: int = Field(default=5, ge=1, description="Extension limit in units of k_p.")
    iou_threshold: float = Field(default=0.2, ge=0, le=1)
    neutral_intervals: Literal["drop", "keep"] = Field(
        default="drop",
        description="An interval whose majority vote is neutral: drop it (the reference's "
        "final numbers) or keep it with emotion 'neutral'.",
    )
    samm_test: SammTestDecodeConfig = Field(default_factory=SammTestDecodeConfig)


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
        default=None, strict=False,
        description="Where attempt counters are kept; default run folder.",
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
        default=None, strict=False, description="Work folder; default data/work/<dataset.name>."
    )


class PaperNumbers(_Strict):
    strs: float
    spot_f1: float
    recog_f1: float


UNION_LAYOUT = "union"
"""The layout of the one dataset a multi-dataset config's folds see (vrme/data/layouts/union.py)."""

MAX_RATE_SPREAD = 1.1
"""Datasets of one config must run at effective frame rates (fps / frame_skip) within this
factor of each other: their windows then span the same time."""


class Config(_Strict):
    """A whole vrme configuration.

    One dataset (``dataset:``) or several (``datasets:``, the MEGC protocol: leave-one-subject-out
    over the union of their subjects). With ``datasets:``, ``dataset`` is the union
    (layout ``union``, named after the datasets joined by ``+`` unless ``union_name`` is set, at
    the first dataset's effective frame rate with frame skip 1): ingestion, alignment and
    features run per dataset (:meth:`parts`), folds and the report on the union.
    """

    dataset: DatasetConfig
    datasets: list[DatasetConfig] | None = Field(
        default=None, description="Several datasets, one benchmark (the MEGC protocol): each "
        "with its own name, root, layout, fps and frame skip; their effective frame rates "
        "(fps / frame_skip) must agree within 10%.")
    union_name: str | None = Field(
        default=None, description="Name of the union of `datasets` (cache paths, reports); "
        "default: their names joined by '+'.")
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
    # Set by load_config: where dataset.root and run.out came from ("config" = the config
    # file itself, "--root"/"--out" = the command line, "--set" = an override), and the root
    # the file itself names (the only place a synth: section may generate a dataset).
    _root_origin: str = PrivateAttr(default="config")
    _out_origin: str = PrivateAttr(default="config")
    _file_root: Path | None = PrivateAttr(default=None)
    # Set on the per-dataset configs of a multi-dataset config (:meth:`parts`): the union's name.
    _part_of: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _union(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("datasets") is None:
            return data
        data = dict(data)
        parts = data["datasets"]
        given = data.get("dataset")
        given_layout = (given.get("layout") if isinstance(given, dict)
                        else getattr(given, "layout", None))
        if given is not None and given_layout != UNION_LAYOUT:  # (a dumped config has both)
            raise ValueError("give either `dataset:` (one dataset) or `datasets:` (several), "
                             "not both")
        if given is not None:  # already the union (a dumped config, an assignment)
            return data
        if not isinstance(parts, list) or len(parts) < 2:
            raise ValueError("`datasets:` lists two or more datasets (use `dataset:` for one)")
        if data.get("synth") is not None:
            raise ValueError("a `synth:` section generates one dataset; with `datasets:` "
                             "generate each first (`vrme synth`) and list their roots")
        names = [p.get("name") if isinstance(p, dict) else getattr(p, "name", None)
                 for p in parts]
        data["dataset"] = {"name": data.get("union_name") or "+".join(str(n) for n in names),
                           "layout": UNION_LAYOUT, "fps": 1.0, "frame_skip": 1}
        return data

    @model_validator(mode="after")
    def _union_rates(self) -> "Config":
        if not self.datasets:
            return self
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets: every dataset needs its own name, got {names}")
        rates = [d.fps / d.frame_skip for d in self.datasets]
        if max(rates) / min(rates) > MAX_RATE_SPREAD:
            shown = ", ".join(f"{d.name} {d.fps:g}/{d.frame_skip} = {r:.1f}"
                              for d, r in zip(self.datasets, rates))
            raise ValueError(f"datasets run at effective frame rates ({shown} frames/s after "
                             "skipping) that differ by more than 10%: set their frame_skip so "
                             "that one window spans the same time in every dataset")
        if self.dataset.layout == UNION_LAYOUT and self.dataset.fps != rates[0]:
            self.dataset.fps = rates[0]
        return self

    def parts(self) -> list["Config"]:
        """The per-dataset configs: one per entry of ``datasets`` (the config itself for a
        single dataset). Each reads its own dataset and writes its own ingest tables
        (``<out>/ingest/<dataset>/``), landmarks and features; all share the work folder, run
        and every other section."""
        if not self.datasets:
            return [self]
        out = []
        for ds in self.datasets:
            part = self.model_copy(deep=True)
            part.datasets = None
            part.dataset = ds.model_copy(deep=True)
            part.run.out = self.out_dir  # one work folder and one run for all of them
            part.run.name = self.run_name
            part._part_of = self.dataset.name
            out.append(part)
        return out

    # -- derived locations -------------------------------------------------------------
    @property
    def part_of(self) -> str | None:
        """Name of the multi-dataset config this is one dataset of (:meth:`parts`), else None."""
        return self._part_of

    @property
    def out_dir(self) -> Path:
        """The work folder holding ingest/, landmarks/, features/ and runs/
        (:func:`vrme.catalog.out_dir`)."""
        return catalog.out_dir(self)

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        return Path(self.source).stem if self.source else self.dataset.name

    @property
    def ingest_dir(self) -> Path:
        """:func:`vrme.catalog.ingest_dir`."""
        return catalog.ingest_dir(self)

    @property
    def run_dir(self) -> Path:
        """:func:`vrme.catalog.run_dir`."""
        return catalog.run_dir(self)

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


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as a number (YAML 1.2; YAML 1.1 wants ``3.0e-4``
    and would read it as text)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: 'line L, column C: problem'."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(problem).split())}"


def _duplicate_keys(node: yaml.Node, path: str = "") -> list[str]:
    """Keys written twice in one mapping of a composed YAML document (PyYAML would silently keep
    the last), as 'key 'a.b' appears twice (lines 3 and 7)'."""
    out: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            here = f"{path}.{key}" if path and key is not None else (key or path)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    out.append(f"key '{here}' appears twice (lines {seen[key]} and {line})")
                else:
                    seen[key] = line
            out += _duplicate_keys(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _duplicate_keys(item, path)
    return out


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML text (strictly: a key written twice is an error); ConfigError on one line."""
    try:
        node = yaml.compose(text, Loader=_YamlLoader)
        dups = _duplicate_keys(node) if node is not None else []
        if dups:
            raise ConfigError(f"{where}: {'; '.join(dups)}: keep one")
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_error_line(exc)}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    value = parse_yaml(raw, f"--set {text!r}: value") if raw.strip() else None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw config mapping (in place) and return it.

    The same key given twice is an error (which one was meant?)."""
    given: dict[str, str] = {}
    for text in overrides or []:
        path, value = parse_override(text)
        dotted = ".".join(path)
        if dotted in given:
            raise ConfigError(f"--set {dotted} given twice ({given[dotted]!r} and {text!r}): "
                              "keep one")
        given[dotted] = text
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


def _describe(value: Any) -> str:
    """A YAML value as a user would recognise it in an error message."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a true/false value)"
    if value is None:
        return "null (empty)"
    if isinstance(value, str):
        return f"{value!r} (text)"
    if isinstance(value, int):
        return f"{value} (a whole number)"
    if isinstance(value, float):
        return f"{value!r} (a decimal number)"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _format_errors(exc: ValidationError, where: str) -> str:
    """pydantic's errors as one line: 'FILE: key 'a.b': must be a whole number, not true (a
    true/false value); unknown key 'c''."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        elif err["type"] in _EXPECTED:
            parts.append(f"key '{loc}': must be {_EXPECTED[err['type']]}, not {_describe(got)}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            got_s = "" if isinstance(got, dict) or "got " in msg else f" (got {got!r})"
            parts.append(f"key '{loc}': {msg}{got_s}")
    return f"{where}: " + "; ".join(parts)


REMOVED_KEYS: dict[tuple[str, str], str] = {
    ("features", "workers"): "videos run side by side as tasks: set orchestration.max_workers",
}
"""Keys earlier versions had, and what replaces them. A config file naming one is refused with
that advice; a config a run recorded (run.json, model.json) is read without it."""


def config_from_mapping(raw: dict[str, Any], where: str = "<config>",
                        recorded: bool = False) -> Config:
    """Validate a raw mapping into a :class:`Config`; ``where`` names it in errors.
    ``recorded``: the mapping is a config an earlier run recorded, whose removed keys
    (:data:`REMOVED_KEYS`, meaningless now) are dropped."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping, got {type(raw).__name__}")
    for (section, key), advice in REMOVED_KEYS.items():
        sec = raw.get(section)
        if isinstance(sec, dict) and key in sec:
            if not recorded:
                raise ConfigError(f"{where}: key '{section}.{key}' was removed ({advice})")
            raw = {**raw, section: {k: v for k, v in sec.items() if k != key}}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of a config file; ConfigError (one line) if it is missing, a folder, unreadable
    or not UTF-8 text."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "is not UTF-8): a config is a YAML text file"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{p}: not a text file (it holds NUL bytes): a config is a YAML text "
                          "file")
    return text


def load_config(
    path: str | os.PathLike[str],
    overrides: list[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Config:
    """Read, override and validate a YAML config.

    ``root`` and ``out`` (the CLI's ``--root``/``--out``) replace ``dataset.root`` and
    ``run.out``; giving one of them and also ``--set dataset.root``/``--set run.out`` is an
    error. Relative paths resolve against the current working directory. The config records
    where its root came from (see :func:`wants_synthesis`).
    """
    p = Path(path)
    raw = parse_yaml(read_config_text(p), str(p)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    raw.pop("source", None)
    file_dataset = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    file_root = file_dataset.get("root")
    set_keys = {str(t).split("=", 1)[0].strip() for t in overrides or []}
    for flag, value, key in (("--root", root, "dataset.root"), ("--out", out, "run.out")):
        if value is not None and key in set_keys:
            raise ConfigError(f"both {flag} and --set {key} given: keep one")
    apply_overrides(raw, overrides)
    where = str(p) + (" (with --set " + ", ".join(overrides) + ")" if overrides else "")
    cfg = config_from_mapping(raw, where)
    cfg.source = str(p)
    if cfg.datasets and root is not None:
        raise ConfigError(f"{where}: --root names one dataset's root; with `datasets:` set each "
                          "dataset's root in the config")
    for ds in cfg.datasets or []:
        if ds.root is not None:
            ds.root = Path(os.path.abspath(ds.root))
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
    if isinstance(file_root, str) and file_root:
        cfg._file_root = Path(os.path.abspath(file_root))
    if root is not None or "dataset.root" in set_keys:
        same = cfg._file_root is not None and cfg.dataset.root == cfg._file_root
        cfg._root_origin = "config" if same else ("--root" if root is not None else "--set")
    if out is not None or "run.out" in set_keys:
        cfg._out_origin = "--out" if out is not None else "--set"
    elif not (isinstance(raw.get("run"), dict) and raw["run"].get("out")):
        cfg._out_origin = "default"
    return cfg


# -- checks before anything runs ------------------------------------------------------------


def _origin_text(cfg: Config, origin: str, key: str) -> str:
    if origin == "default":
        return f"the default; set {key} or pass --out"
    if origin == "--set":
        return f"--set {key}"
    if origin == "config":
        return f"{key} in {cfg.source}" if cfg.source else key
    return origin


def wants_synthesis(cfg: Config) -> bool:
    """True if the config asks for its synthetic dataset to be generated now.

    The rule: a ``synth:`` section generates a dataset only into the ``dataset.root`` written
    in the config file itself, never into a path given by ``--root`` or ``--set dataset.root``
    (a typo there must not turn into a generated benchmark), and only while that folder does not
    exist, is empty, or holds a finished synthetic dataset (``synth_spec.json``; then nothing is
    regenerated). A folder holding anything else is never overwritten.
    """
    root = cfg.dataset.root
    if cfg.synth is None or root is None or cfg._root_origin != "config":
        return False
    if not root.exists():
        return True
    if not root.is_dir():
        return False
    return (root / "synth_spec.json").is_file() or not any(root.iterdir())


def check_dataset_root(cfg: Config, *, can_generate: bool = True) -> bool:
    """Check ``dataset.root`` before anything runs; return True if it will be generated.

    The root must be an existing folder, unless :func:`wants_synthesis` (then it is generated
    by the flow's synthesize step when ``can_generate``; a command that does not generate
    passes False and gets an error saying where it is generated). Raises :class:`ConfigError`
    naming the root and where it came from (``--root``, ``--set dataset.root`` or the file).
    """
    root = cfg.dataset.root
    if root is None:
        raise ConfigError(f"no dataset root: set dataset.root in {cfg.source or 'the config'} "
                          "or pass --root")
    what = _origin_text(cfg, cfg._root_origin, "dataset.root")
    if root.is_dir():
        if (cfg.synth is not None and cfg._root_origin == "config"
                and not wants_synthesis(cfg)):
            raise ConfigError(
                f"dataset root {root} ({what}) holds files but no finished synthetic dataset "
                "(no synth_spec.json), and the config's synth: section would generate one "
                "there: delete the folder to generate it again, or remove the synth: section "
                "to read the folder as a dataset")
        return False
    if root.exists():
        raise ConfigError(f"dataset root {root} ({what}) is not a folder")
    if wants_synthesis(cfg):
        if can_generate:
            return True
        raise ConfigError(
            f"dataset root {root} ({what}) does not exist yet: the config's synth: section "
            "generates it in `vrme run`, `vrme demo` or `vrme train-final` (or run "
            f"`vrme synth --out {root}`)")
    hint = ""
    if cfg.synth is not None:
        own = f" ({cfg._file_root})" if cfg._file_root is not None else ""
        hint = (f"; the config's synth: section generates a dataset only into the "
                f"dataset.root written in the config file{own}, never into a {what} path")
    raise ConfigError(f"dataset root {root} ({what}) does not exist{hint}")


def check_work_folder(cfg: Config) -> None:
    """Check before anything runs that the work folder (``run.out``) is, or can be created as,
    a folder vrme can write in (see :func:`check_writable_folder`)."""
    what = _origin_text(cfg, cfg._out_origin, "run.out")
    check_writable_folder(cfg.out_dir, f"work folder ({what})")


def check_writable_folder(folder: str | os.PathLike[str], what: str) -> None:
    """``folder`` is, or can be created as, a folder this process can write in: ConfigError if
    it (or a parent) is a file, :class:`vrme.io.WriteError` (exit code 1, like every failed
    write) if it is not writable. ``what`` names it in the message ('work folder (--out)').
    Writability is tried by creating and removing an empty file in the folder or its nearest
    existing parent (permission bits do not tell the whole story: an immutable folder, a
    read-only mount); nothing is created."""
    from vrme.io import WriteError

    out = Path(folder)
    noun, _, origin = what.partition(" (")
    label = f"{noun} {out}" + (f" ({origin}" if origin else "")
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        extra = "" if probe == out else f" ({probe} is a file)"
        raise ConfigError(f"{label} is a file, not a folder{extra}")
    try:
        fd, name = tempfile.mkstemp(prefix=".vrme-write-check-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise WriteError(exc.errno, f"{label} is not writable: cannot create a file in "
                                    f"{probe}: {exc.strerror or exc}") from None
