"""STRS, the Spot-Then-Recognize Score, computed exactly as the official MEGC evaluator does.

Rules (see ``docs/STRS.md``): predictions and ground truth are tables with the columns
``subject, video, onset, offset, emotion``; frame numbers are inclusive and in whatever numbering
both tables share (vrme writes original frame numbers). Only subjects that occur in the
predictions are scored, and within them only videos that occur in the ground truth. A prediction
claims every not-yet-claimed ground truth of its video with IoU >= 0.5 (predictions in table
order, ground truths in table order); recognition is scored one-vs-rest on the claimed pairs.

Two variants:

``official``
    The MEGC evaluator (github.com/genbing99/STRS-Metric), quirks included. The numbers are
    bit-identical to the official script's; the one freedom the official script leaves open is
    the order of the default emotion list (it iterates a Python ``set``, so its own last digit
    varies with the hash seed); we use the order of first appearance in the ground truth.
``reference``
    The paper code's own scoring, for comparison with published numbers only: "soft" matching
    (a prediction counts one TP per ground truth with IoU >= 0.5, a ground truth may be counted
    by several predictions), FN = ground truths - TP (may go negative), recognition pairs from a
    greedy best-IoU matching, classes negative/positive/surprise by default, and a class whose
    confusion matrix is degenerate is left out of the means instead of counting as zero.

Subjects and videos are compared as values, exactly as written: ``spNO.1``, ``1`` and ``001``
are three different subjects. Keep one style in both files.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from vrme.errors import DataError

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("subject", "video", "onset", "offset", "emotion")
"""Columns every STRS table must have (extra columns are ignored)."""

JSON_KEYS: tuple[str, ...] = (
    "strs",
    "spot_tp",
    "spot_fp",
    "spot_fn",
    "spot_precision",
    "spot_recall",
    "spot_f1",
    "analysis_precision",
    "analysis_recall",
    "analysis_f1",
    "analysis_uf1",
)
"""Keys of :meth:`StrsResult.to_dict` and of ``vrme strs --json``, in this order."""

REFERENCE_EMOTIONS: tuple[str, ...] = ("negative", "positive", "surprise")
"""Classes the paper code scores recognition on (its default for the reference variant)."""

Variant = Literal["official", "reference"]

_IOU_NUM, _IOU_DEN = 1, 2  # IoU threshold 0.5, compared exactly as 2 * inter >= union
_CHUNK_PAIRS = 4_000_000  # candidate (prediction, ground truth) pairs examined per batch

PAIR_COLUMNS: tuple[str, ...] = (
    "subject",
    "video",
    "pred_row",
    "gt_row",
    "pred_onset",
    "pred_offset",
    "gt_onset",
    "gt_offset",
    "iou",
    "pred_emotion",
    "gt_emotion",
    "analysed",
)


@dataclass(frozen=True)
class StrsResult:
    """Everything one STRS evaluation produces.

    Counts are numbers of intervals; ratios are in [0, 1] except that the reference variant's
    recall can exceed 1. A ratio is NaN where the evaluator itself yields NaN: the analysis F1
    is 2PR/(P+R) = 0/0 when no analysed emotion keeps a true positive (degenerate classes count
    as zero), and STRS inherits it. The official script crashes when there is no spotting true
    positive at all; we report that case as NaN too.

    ``pairs`` holds the (prediction, ground truth) pairs recognition was scored on, in the
    official iteration order, with columns :data:`PAIR_COLUMNS`: ``pred_row``/``gt_row`` are
    0-based positions in the input tables (CSV line = row + 2 in a file without blank lines),
    ``iou`` the interval IoU and ``analysed`` whether the ground-truth emotion is among
    ``emotions``. For the official variant these are exactly the spotting true positives; for
    the reference variant they are the greedy recognition pairs (its spotting TP count comes
    from soft matching instead).

    ``per_emotion`` has one row per analysed emotion: ``emotion, tp, fp, fn, precision, recall,
    f1, degenerate`` (a degenerate class is zeroed by ``official`` and left out by
    ``reference``).
    """

    strs: float
    spot_tp: int
    spot_fp: int
    spot_fn: int
    spot_precision: float
    spot_recall: float
    spot_f1: float
    analysis_precision: float
    analysis_recall: float
    analysis_f1: float
    analysis_uf1: float
    variant: str
    emotions: tuple[str, ...]
    pred_unscored: int
    gt_unscored: int
    pairs: pd.DataFrame = field(repr=False, compare=False)
    per_emotion: pd.DataFrame = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, int | float | None]:
        """The headline numbers under :data:`JSON_KEYS`; NaN becomes ``None`` (JSON ``null``)."""
        out: dict[str, int | float | None] = {}
        for key in JSON_KEYS:
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
            else:
                out[key] = value
        return out


# ----------------------------------------------------------------------------------------------
# Input


def read_strs_csv(path: str | os.PathLike[str], *, allow_negative: bool = True) -> pd.DataFrame:
    """Read and validate one STRS table (predictions or ground truth) from a CSV file.

    Every cell is read as text exactly as written (surrounding spaces removed; blank lines
    skipped), so subjects such as ``001`` keep their leading zeros and are compared as strings.
    ``onset``/``offset`` become int64 (inclusive frame numbers). Negative frame numbers are
    refused unless ``allow_negative`` (the official evaluator accepts them and its sample
    predictions have some; they are then logged as a warning naming the lines); ``vrme strs``
    refuses them unless ``--allow-negative``. Returns a DataFrame with the columns
    :data:`COLUMNS` (extra columns dropped) and a RangeIndex in file order.

    Raises :class:`~vrme.errors.DataError` naming the file, the line and the column for: a
    missing or unreadable file, an empty file or one without data rows, a missing column, a
    column named twice in the header, a row with too many fields, an empty cell (a row with too
    few fields has empty cells), a frame number that is not an integer or out of range, a
    negative frame number (unless allowed) and offset < onset. Several bad rows are reported in
    file order, in one line.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                             index_col=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        _data_lines(path)  # finds and reports the malformed row
        raise DataError(f"{path}: not a valid CSV table") from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}: the file is empty; expected a header line with the columns "
            f"{', '.join(COLUMNS)} and one row per interval"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a CSV file") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    header = _header_fields(path)
    seen: dict[str, int] = {}
    for j, name in enumerate(header, start=1):
        if name in COLUMNS and name in seen:
            raise DataError(f"{path}: line 1 (header): column {name!r} appears twice (fields "
                            f"{seen[name]} and {j}); keep one")
        seen.setdefault(name, j)
    df.columns = [str(c).strip() for c in df.columns]
    for col in df.columns:
        df[col] = df[col].str.strip()
    lines: list[int] | None = None

    def line_of(i: int) -> int:
        nonlocal lines
        if lines is None:  # only needed for an error message
            lines = _data_lines(path)
        return lines[i]

    out = validate_strs_table(df, str(path), line_of=line_of, allow_negative=allow_negative)
    negative = ((out["onset"] < 0) | (out["offset"] < 0)).to_numpy()
    if negative.any():
        rows = np.flatnonzero(negative)
        log.warning("%s: %d row(s) with a negative frame number (first: line %d); scored as "
                    "written, as the official evaluator does", path, len(rows), line_of(rows[0]))
    return out


def _header_fields(path: Path) -> list[str]:
    """The header line's field names (spaces trimmed)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for fields in csv.reader(fh):
            if fields and any(f.strip() for f in fields):
                return [f.strip() for f in fields]
    return []


def _data_lines(path: Path) -> list[int]:
    """Line number of each data row of a CSV file (header and blank lines skipped); raises
    DataError at the first row with more fields than the header."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        width: int | None = None
        lines: list[int] = []
        try:
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue
                if width is None:
                    width = len(fields)
                elif len(fields) > width:
                    raise DataError(
                        f"{path}: line {reader.line_num}: {len(fields)} fields, but the header "
                        f"has {width}"
                    )
                else:
                    lines.append(reader.line_num)
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: not a valid CSV row: {exc}") from None
    return lines


def csv_line_of(path: str | os.PathLike[str]) -> Callable[[int], int]:
    """``line_of(row)``: the file line of data row ``row`` of a CSV file (read when first
    needed)."""
    lines: list[int] = []

    def line_of(i: int) -> int:
        if not lines:
            lines.extend(_data_lines(Path(path)))
        return lines[i]

    return line_of


KNOWN_EMOTIONS: tuple[str, ...] = ("negative", "positive", "surprise", "others")
"""The emotion classes vrme and MEGC use; other values are scored but warned about."""


def input_warnings(
    pred: pd.DataFrame, gt: pd.DataFrame, emotions: Sequence[str] | None = None, *,
    pred_name: str = "predictions", gt_name: str = "ground truth",
    pred_line: Callable[[int], int] | None = None, gt_line: Callable[[int], int] | None = None,
) -> list[str]:
    """Warnings about validated STRS tables (as :func:`read_strs_csv` returns them) that score
    without an error but are probably not what was meant, in table order: an emotion outside
    :data:`KNOWN_EMOTIONS` (with a hint when only case or spaces differ), a row repeated
    exactly (every copy is one more interval: duplicated ground truth can give more true
    positives than predictions), one interval given two emotions, a predicted emotion that is
    neither analysed nor in the ground truth, an analysed emotion (``emotions``) that does not
    occur in the ground truth. Rows are named by ``*_line(row)`` or their 0-based position."""
    out: list[str] = []

    def at(line: Callable[[int], int] | None, rows: Sequence[int]) -> str:
        shown = [f"line {line(int(i))}" if line else f"row {int(i)}" for i in rows[:3]]
        return ", ".join(shown) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")

    for name, df, line in ((pred_name, pred, pred_line), (gt_name, gt, gt_line)):
        em = df["emotion"].astype(str)
        for value in pd.unique(em):
            if value in KNOWN_EMOTIONS:
                continue
            rows = np.flatnonzero((em == value).to_numpy())
            near = " ".join(value.split()).lower()
            hint = (f": it differs from {near!r} only in case or spaces, and emotions are "
                    "compared exactly as written" if near in KNOWN_EMOTIONS else
                    f" (vrme's classes: {', '.join(KNOWN_EMOTIONS)}); it is scored as a class "
                    "of its own")
            out.append(f"{name}: emotion {value!r} at {at(line, rows)}{hint}")
        dup = df.duplicated(subset=list(COLUMNS), keep="first").to_numpy()
        if dup.any():
            rows = np.flatnonzero(dup)
            first = df.loc[:, list(COLUMNS)].astype(str).agg("\x1f".join, axis=1)
            orig = int(np.flatnonzero((first == first.iat[rows[0]]).to_numpy())[0])
            out.append(f"{name}: {len(rows)} row(s) repeat an earlier row exactly (first: "
                       f"{at(line, [rows[0]])} repeats {at(line, [orig])}): every copy is scored "
                       "as one more interval")
        key = df.loc[:, ["subject", "video", "onset", "offset"]].astype(str).agg(
            "\x1f".join, axis=1)
        clash = df.assign(_k=key).groupby("_k", sort=False)["emotion"].transform("nunique") > 1
        if clash.any():
            rows = np.flatnonzero(clash.to_numpy())
            out.append(f"{name}: the same interval is given different emotions ({at(line, rows)}): "
                       "each row is scored as a separate interval")
    gt_em = [str(e) for e in pd.unique(gt["emotion"])]
    analysed = [str(e) for e in emotions] if emotions is not None else gt_em
    em = pred["emotion"].astype(str)
    for value in pd.unique(em):
        if value not in analysed and value not in gt_em and value in KNOWN_EMOTIONS:
            rows = np.flatnonzero((em == value).to_numpy())
            out.append(f"{pred_name}: emotion {value!r} at {at(pred_line, rows)} is not analysed "
                       f"({', '.join(analysed)}) and not in the ground truth: these predictions "
                       "can be spotted but never recognised")
    if emotions is not None:
        for value in analysed:
            if value not in gt_em:
                out.append(f"analysed emotion {value!r} does not occur in the ground truth: its "
                           "class is degenerate")
    return out


_MAX_REPORTED = 3
"""A table with bad rows: this many are named in the error (in file order), then a count."""


def validate_strs_table(
    df: pd.DataFrame, source: str, *, line_of: Callable[[int], int] | None = None,
    allow_negative: bool = True,
) -> pd.DataFrame:
    """Check one STRS table and return a clean copy (columns :data:`COLUMNS`, RangeIndex).

    ``source`` names the table in messages (a file path or ``"predictions"``). A row is
    reported as its file line ``line_of(row)`` when given, otherwise as its 0-based position.
    Subject, video and emotion values are kept as they are (any hashable value, compared for
    equality); onset/offset must be whole numbers and become int64. Raises
    :class:`~vrme.errors.DataError` on a missing column, no rows, an empty value, a non-integer
    or out-of-range frame, a negative frame (unless ``allow_negative``) or offset < onset;
    every bad row is counted and the first ones are named in file order, in one line.
    """

    def where(i: int) -> str:
        return f"line {line_of(i)}" if line_of is not None else f"row {i}"

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        head = "line 1 (header)" if line_of is not None else "header"
        found = ", ".join(map(str, df.columns)) or "none"
        raise DataError(
            f"{source}: {head}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} "
            f"(found: {found}; expected: {', '.join(COLUMNS)})"
        )
    if len(df) == 0:
        raise DataError(f"{source}: the table has a header but no rows")

    out = df.loc[:, list(COLUMNS)].reset_index(drop=True)
    problems: list[tuple[int, int, str]] = []  # (row, column order, text)
    total = 0

    def note(mask: np.ndarray, order: int, text: Callable[[int], str]) -> None:
        nonlocal total
        rows = np.flatnonzero(mask)
        total += len(rows)
        problems.extend((int(i), order, text(int(i))) for i in rows[:_MAX_REPORTED])

    for order, col in enumerate(COLUMNS):
        if col in ("onset", "offset"):
            continue
        values = out[col]
        empty = values.isna().to_numpy(dtype=bool, copy=True)
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            empty |= (values.astype(str).str.strip() == "").to_numpy(dtype=bool)
        note(empty, order, lambda i, c=col: f"column '{c}': empty value")
    frames: dict[str, pd.Series] = {}
    readable = np.ones(len(out), dtype=bool)
    for order, col in ((2, "onset"), (3, "offset")):
        converted, bad = _frames(out[col])
        for i, why in bad[:_MAX_REPORTED]:
            problems.append((i, order, f"column '{col}': {why}"))
        total += len(bad)
        readable[[i for i, _ in bad]] = False
        frames[col] = converted
    if not allow_negative:
        for order, col in ((2, "onset"), (3, "offset")):
            v = frames[col]
            note((v < 0).to_numpy() & readable, order, lambda i, c=col, v=v: (
                f"column '{c}': negative frame number {v.iat[i]}"))
    note((frames["offset"] < frames["onset"]).to_numpy() & readable, 3, lambda i: (
        f"column 'offset': offset {frames['offset'].iat[i]} is before onset "
        f"{frames['onset'].iat[i]} (frame numbers are inclusive, offset >= onset)"))
    if problems:
        problems.sort()
        named = "; ".join(f"{where(i)}, {text}" for i, _, text in problems[:_MAX_REPORTED])
        more = total - min(len(problems), _MAX_REPORTED)
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        if any("negative frame number" in text for _, _, text in problems):
            tail += ("; frame numbers start at 0 (the official evaluator accepts negative ones: "
                     "vrme strs --allow-negative scores them)")
        raise DataError(f"{source}: {named}{tail}")
    out["onset"], out["offset"] = frames["onset"], frames["offset"]
    return out


_INT_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")


def _frames(values: pd.Series) -> tuple[pd.Series, list[tuple[int, str]]]:
    """A frame-number column as int64 (bad cells 0) and its bad cells (row, reason), at most
    :data:`_MAX_REPORTED` of them named."""
    n = len(values)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype(np.int64), []
    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(arr) | (arr != np.floor(arr)) | (np.abs(arr) > 2.0**53)
        rows = np.flatnonzero(bad)
        out = np.where(bad, 0.0, arr).astype(np.int64)
        return (pd.Series(out, index=values.index),
                [(int(i), f"{values.iat[i]!r} is not an integer frame number") for i in rows])
    text = values.astype(str).str.strip()
    ok = text.str.match(_INT_TEXT).to_numpy(dtype=bool) & ~values.isna().to_numpy()
    bad: list[tuple[int, str]] = [
        (int(i), f"{values.iat[i]!r} is not an integer frame number") for i in np.flatnonzero(~ok)]
    digits = text.where(ok, "0").str.replace(r"\.0*$", "", regex=True)
    try:
        return digits.astype(np.int64), bad
    except (OverflowError, ValueError):
        big = [i for i in range(n) if ok[i] and abs(int(digits.iat[i])) >= 2**63]
        bad += [(i, f"{values.iat[i]!r} is out of range") for i in big]
        fixed = digits.copy()
        fixed.iloc[big] = "0"
        return fixed.astype(np.int64), sorted(bad)


# ----------------------------------------------------------------------------------------------
# Evaluation


def evaluate_strs(
    pred: pd.DataFrame,
    gt: pd.DataFrame,
    emotions: Sequence[str] | None = None,
    variant: Variant = "official",
) -> StrsResult:
    """Score predictions against ground truth with STRS.

    ``pred`` and ``gt`` are tables with the columns :data:`COLUMNS` (as returned by
    :func:`read_strs_csv`, or any DataFrame: it is validated the same way; rows are reported by
    0-based position). Onset/offset are inclusive frame numbers in the same numbering in both.
    ``emotions`` lists the analysed emotions, in the order the per-emotion means add them up;
    ``None`` means every emotion of the ground truth in order of first appearance for
    ``official``, and negative/positive/surprise for ``reference``. ``pred`` may have no rows
    (nothing is then scored, as in the official script); ``gt`` may not.

    Returns a :class:`StrsResult`. Raises :class:`~vrme.errors.DataError` on a malformed table
    and ``ValueError`` on an unknown variant or an empty emotion list.
    """
    if variant not in ("official", "reference"):
        raise ValueError(f"unknown STRS variant {variant!r}; use 'official' or 'reference'")
    pred = _validated(pred, "predictions", allow_empty=True)
    gt = _validated(gt, "ground truth", allow_empty=False)
    if emotions is None:
        if variant == "official":
            emotions = [e for e in pd.unique(gt["emotion"])]
        else:
            emotions = list(REFERENCE_EMOTIONS)
    emotions = tuple(emotions)
    if not emotions:
        raise ValueError("the list of analysed emotions is empty")

    ctx = _Context.build(pred, gt)
    _warn_subject_styles(pred, gt)

    if variant == "official":
        pair_p, pair_g = _claim_official(ctx)
        spot_tp = len(pair_p)
        spot_fp = int(ctx.n_pred_eval - np.unique(pair_p).size)
        spot_fn = int(ctx.n_gt_eval - spot_tp)
        spot_p, spot_r, spot_f1 = _prf(spot_tp, spot_fp, spot_fn)
    else:
        cand_p, cand_g, cand_iou = ctx.candidates()
        spot_tp = len(cand_p)
        spot_fp = int(ctx.n_pred_eval - np.unique(cand_p).size)
        spot_fn = int(ctx.n_gt_eval - spot_tp)
        spot_p, spot_r, spot_f1 = _prf(spot_tp, spot_fp, spot_fn, zero=0.0)
        pair_p, pair_g = _greedy_reference(cand_p, cand_g, cand_iou)

    pairs = _pairs_table(ctx, pred, gt, pair_p, pair_g, emotions)
    analysed = pairs[pairs["analysed"]]
    gt_em = analysed["gt_emotion"].to_numpy(dtype=object)
    pred_em = analysed["pred_emotion"].to_numpy(dtype=object)
    if variant == "official":
        ap, ar, af1, uf1, per_emotion = _analysis_official(gt_em, pred_em, emotions)
    else:
        ap, ar, af1, uf1, per_emotion = _analysis_reference(gt_em, pred_em, emotions)
    strs = float(spot_f1 * af1)
    if math.isnan(strs):
        log.warning(
            "STRS is undefined (NaN): no analysed emotion keeps a true positive (degenerate "
            "classes count as zero), so the analysis F1 is 0/0, as in the %s evaluator", variant
        )
    return StrsResult(
        strs=strs,
        spot_tp=int(spot_tp),
        spot_fp=spot_fp,
        spot_fn=spot_fn,
        spot_precision=float(spot_p),
        spot_recall=float(spot_r),
        spot_f1=float(spot_f1),
        analysis_precision=float(ap),
        analysis_recall=float(ar),
        analysis_f1=float(af1),
        analysis_uf1=float(uf1),
        variant=variant,
        emotions=emotions,
        pred_unscored=int(len(pred) - ctx.n_pred_eval),
        gt_unscored=int(len(gt) - ctx.n_gt_eval),
        pairs=pairs,
        per_emotion=per_emotion,
    )


def _validated(df: pd.DataFrame, source: str, *, allow_empty: bool) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    if allow_empty and len(df) == 0:
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            validate_strs_table(df, source)  # raises the missing-column error
        out = df.loc[:, list(COLUMNS)].reset_index(drop=True)
        return out.astype({"onset": np.int64, "offset": np.int64})
    return validate_strs_table(df, source)


@dataclass
class _Context:
    """Integer codes of both tables and the rows the official rules score."""

    key_p: np.ndarray  # (subject, video) code per prediction
    key_g: np.ndarray
    subj_p: np.ndarray
    on_p: np.ndarray
    off_p: np.ndarray
    on_g: np.ndarray
    off_g: np.ndarray
    eval_p: np.ndarray  # positions of scored predictions, ascending
    eval_g: np.ndarray
    subj_rank: np.ndarray  # per subject code: rank of first appearance in the predictions
    video_rank: np.ndarray  # per key code: position of first appearance in the ground truth

    @property
    def n_pred_eval(self) -> int:
        return int(self.eval_p.size)

    @property
    def n_gt_eval(self) -> int:
        return int(self.eval_g.size)

    @classmethod
    def build(cls, pred: pd.DataFrame, gt: pd.DataFrame) -> _Context:
        n_p = len(pred)
        subj, _ = pd.factorize(
            pd.concat([pred["subject"], gt["subject"]], ignore_index=True).astype(object)
        )
        video, video_uniques = pd.factorize(
            pd.concat([pred["video"], gt["video"]], ignore_index=True).astype(object)
        )
        subj = subj.astype(np.int64)
        key = subj * max(len(video_uniques), 1) + video.astype(np.int64)
        _, key = np.unique(key, return_inverse=True)  # compact codes
        key = key.astype(np.int64)
        subj_p, subj_g = subj[:n_p], subj[n_p:]
        key_p, key_g = key[:n_p], key[n_p:]
        n_subj = int(subj.max()) + 1 if subj.size else 0
        n_key = int(key.max()) + 1 if key.size else 0

        # Subjects are scored when they have predictions; their videos when they have ground truth.
        subj_rank = np.full(n_subj, np.iinfo(np.int64).max, dtype=np.int64)
        first_subj, first_pos = np.unique(subj_p, return_index=True)
        subj_rank[first_subj] = np.argsort(np.argsort(first_pos))
        has_pred = np.zeros(n_subj, dtype=bool)
        has_pred[subj_p] = True
        gt_key = np.zeros(n_key, dtype=bool)
        gt_key[key_g] = True
        eval_g = np.flatnonzero(has_pred[subj_g])
        eval_p = np.flatnonzero(gt_key[key_p])
        video_rank = np.full(n_key, np.iinfo(np.int64).max, dtype=np.int64)
        first_key, first_gpos = np.unique(key_g, return_index=True)
        video_rank[first_key] = first_gpos
        return cls(
            key_p=key_p,
            key_g=key_g,
            subj_p=subj_p,
            on_p=pred["onset"].to_numpy(np.int64),
            off_p=pred["offset"].to_numpy(np.int64),
            on_g=gt["onset"].to_numpy(np.int64),
            off_g=gt["offset"].to_numpy(np.int64),
            eval_p=eval_p,
            eval_g=eval_g,
            subj_rank=subj_rank,
            video_rank=video_rank,
        )

    def candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All scored (prediction, ground truth) pairs of one video with IoU >= 0.5.

        Returns prediction positions, ground-truth positions and IoUs, sorted by prediction then
        ground truth. Uses a sorted join instead of all pairs: IoU >= 0.5 needs the ground
        truth's onset within [onset - length, offset] of the prediction.
        """
        empty = np.zeros(0, dtype=np.int64)
        if self.eval_p.size == 0 or self.eval_g.size == 0:
            return empty, empty, np.zeros(0)
        g = self.eval_g
        onsets = np.unique(self.on_g[g])
        width = np.int64(onsets.size + 1)
        g_sorted = g[np.lexsort((self.on_g[g], self.key_g[g]))]
        g_comp = self.key_g[g_sorted] * width + np.searchsorted(onsets, self.on_g[g_sorted])

        p = self.eval_p
        length = self.off_p[p] - self.on_p[p] + 1
        lo_rank = np.searchsorted(onsets, self.on_p[p] - length, side="left")
        hi_rank = np.searchsorted(onsets, self.off_p[p], side="right")
        lo = np.searchsorted(g_comp, self.key_p[p] * width + lo_rank, side="left")
        hi = np.searchsorted(g_comp, self.key_p[p] * width + hi_rank, side="left")
        counts = hi - lo

        out_p, out_g, out_iou = [], [], []
        cum = np.cumsum(counts)
        start = 0
        while start < p.size:
            base = cum[start - 1] if start else 0
            stop = max(int(np.searchsorted(cum, base + _CHUNK_PAIRS, side="right")), start + 1)
            c = counts[start:stop]
            total = int(c.sum())
            if total:
                rows = np.repeat(np.arange(start, stop), c)
                within = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
                gi = g_sorted[lo[rows] + within]
                pi = p[rows]
                inter = np.minimum(self.off_p[pi], self.off_g[gi]) - np.maximum(
                    self.on_p[pi], self.on_g[gi]
                ) + 1
                union = (
                    (self.off_p[pi] - self.on_p[pi] + 1)
                    + (self.off_g[gi] - self.on_g[gi] + 1)
                    - inter
                )
                keep = (inter > 0) & (_IOU_DEN * inter >= _IOU_NUM * union)
                out_p.append(pi[keep])
                out_g.append(gi[keep])
                out_iou.append(inter[keep] / union[keep])
            start = stop
        if not out_p:
            return empty, empty, np.zeros(0)
        cp, cg, ci = np.concatenate(out_p), np.concatenate(out_g), np.concatenate(out_iou)
        order = np.lexsort((cg, cp))
        return cp[order], cg[order], ci[order]


def _claim_official(ctx: _Context) -> tuple[np.ndarray, np.ndarray]:
    """Official matching: each ground truth goes to the first prediction (table order) of its
    video that reaches IoU >= 0.5; one prediction may claim several. Returns pair positions."""
    cp, cg, _ = ctx.candidates()
    order = np.lexsort((cp, cg))
    _, first = np.unique(cg[order], return_index=True)
    chosen = order[first]
    return cp[chosen], cg[chosen]


def _greedy_reference(
    cp: np.ndarray, cg: np.ndarray, ciou: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Paper-code recognition pairs: each prediction looks only at its best-IoU ground truth
    (ties: the later row, as a stable sort reversed gives) and takes it unless an earlier
    prediction already did."""
    if cp.size == 0:
        return cp, cg
    order = np.lexsort((-cg, -ciou, cp))
    _, first = np.unique(cp[order], return_index=True)
    best_p, best_g = cp[order][first], cg[order][first]  # sorted by prediction
    _, first_g = np.unique(best_g, return_index=True)  # first occurrence = earliest prediction
    keep = np.sort(first_g)
    return best_p[keep], best_g[keep]


def _pairs_table(
    ctx: _Context,
    pred: pd.DataFrame,
    gt: pd.DataFrame,
    pair_p: np.ndarray,
    pair_g: np.ndarray,
    emotions: tuple[str, ...],
) -> pd.DataFrame:
    """Pairs as a DataFrame, in the official order: subject (first seen in predictions), video
    (first seen in ground truth), prediction row, ground-truth row."""
    order = np.lexsort(
        (pair_g, pair_p, ctx.video_rank[ctx.key_p[pair_p]], ctx.subj_rank[ctx.subj_p[pair_p]])
    )
    pp, gg = pair_p[order], pair_g[order]
    on_p, off_p, on_g, off_g = ctx.on_p[pp], ctx.off_p[pp], ctx.on_g[gg], ctx.off_g[gg]
    inter = np.minimum(off_p, off_g) - np.maximum(on_p, on_g) + 1
    union = (off_p - on_p + 1) + (off_g - on_g + 1) - inter
    gt_em = gt["emotion"].to_numpy(dtype=object)[gg]
    table = pd.DataFrame(
        {
            "subject": pred["subject"].to_numpy(dtype=object)[pp],
            "video": pred["video"].to_numpy(dtype=object)[pp],
            "pred_row": pp.astype(np.int64),
            "gt_row": gg.astype(np.int64),
            "pred_onset": on_p,
            "pred_offset": off_p,
            "gt_onset": on_g,
            "gt_offset": off_g,
            "iou": inter / np.maximum(union, 1),
            "pred_emotion": pred["emotion"].to_numpy(dtype=object)[pp],
            "gt_emotion": gt_em,
            "analysed": pd.Series(gt_em, dtype=object).isin(list(emotions)).to_numpy(dtype=bool),
        },
        columns=list(PAIR_COLUMNS),
    )
    return table


def _prf(tp: int, fp: int, fn: int, zero: float = 0) -> tuple[float, float, float]:
    """Precision, recall, F1, with ``zero`` for a 0 denominator. The official
    ``calculate_metrics`` gives the integer 0 there (the default); the paper's spotting ratios
    are floats throughout (``zero=0.0``). The two stay distinct so each variant's JSON output is
    byte-for-byte what its script prints."""
    precision = tp / (tp + fp) if tp + fp != 0 else zero
    recall = tp / (tp + fn) if tp + fn != 0 else zero
    f1 = 2 * precision * recall / (precision + recall) if precision + recall != 0 else zero
    return precision, recall, f1


def _one_vs_rest(
    gt_em: np.ndarray, pred_em: np.ndarray, emotion: str
) -> tuple[int, int, int, bool]:
    """TP, FP, FN of ``emotion`` against the rest, and whether the 2x2 matrix is degenerate
    (only one of the two values occurs in both vectors, or there are no pairs)."""
    g = gt_em == emotion
    p = pred_em == emotion
    n = int(g.size)
    tp = int(np.count_nonzero(g & p))
    fp = int(np.count_nonzero(~g & p))
    fn = int(np.count_nonzero(g & ~p))
    tn = n - tp - fp - fn
    return tp, fp, fn, n == 0 or tp == n or tn == n


def _analysis_official(
    gt_em: np.ndarray, pred_em: np.ndarray, emotions: tuple[str, ...]
) -> tuple[float, float, float, float, pd.DataFrame]:
    """Official recognition score over the analysed pairs: degenerate classes count as zeros;
    P and R are plain means over the emotions (in list order, as numpy sums them), the
    analysis F1 is 2PR/(P+R) (NaN when P + R = 0) and UF1 the mean per-emotion F1."""
    rows = []
    precisions: list[float] = []
    recalls: list[float] = []
    f1s: list[float] = []
    for emotion in emotions:
        tp, fp, fn, degenerate = _one_vs_rest(gt_em, pred_em, emotion)
        if degenerate:
            tp = fp = fn = 0
        precision, recall, f1 = _prf(tp, fp, fn)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
        rows.append((emotion, tp, fp, fn, float(precision), float(recall), float(f1), degenerate))
    p_all = np.mean(precisions)
    r_all = np.mean(recalls)
    f1_all = _safe_ratio(2 * p_all * r_all, p_all + r_all)
    uf1 = np.mean(f1s)
    return float(p_all), float(r_all), f1_all, float(uf1), _per_emotion_frame(rows)


def _analysis_reference(
    gt_em: np.ndarray, pred_em: np.ndarray, emotions: tuple[str, ...]
) -> tuple[float, float, float, float, pd.DataFrame]:
    """The paper's recognition score: degenerate classes are left out of every mean, an
    undefined precision or recall counts as 0, per-class F1 = 2TP/(2TP+FP+FN)."""
    rows = []
    precisions: list[float] = []
    recalls: list[float] = []
    f1s: list[float] = []
    for emotion in emotions:
        tp, fp, fn, degenerate = _one_vs_rest(gt_em, pred_em, emotion)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = (2 * tp) / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
        if not degenerate:
            precisions.append(precision)
            recalls.append(recall)
            f1s.append(f1)
        rows.append((emotion, tp, fp, fn, precision, recall, f1, degenerate))
    p_all = float(np.mean(precisions)) if precisions else math.nan
    r_all = float(np.mean(recalls)) if recalls else math.nan
    f1_all = _safe_ratio(2 * p_all * r_all, p_all + r_all)
    uf1 = float(np.mean(f1s)) if f1s else math.nan
    return p_all, r_all, f1_all, uf1, _per_emotion_frame(rows)


def _safe_ratio(num: float, den: float) -> float:
    """num / den in float64, NaN where the evaluators get NaN (0/0, or a NaN operand).

    Only used with num, den >= 0 where den = 0 implies num = 0, so 0/0 is the only zero case.
    """
    if den == 0 or math.isnan(den) or math.isnan(num):
        return math.nan
    return float(num / den)


def _per_emotion_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["emotion", "tp", "fp", "fn", "precision", "recall", "f1", "degenerate"]
    )


_TRAILING_NUMBER = re.compile(r"(\d+)\s*$")


def _warn_subject_styles(pred: pd.DataFrame, gt: pd.DataFrame) -> None:
    """Log a warning when prediction subjects look like ground-truth subjects written in
    another style (``001`` vs ``1`` vs ``spNO.1``): they are different values and go unscored."""
    gt_subjects = {str(s) for s in pd.unique(gt["subject"])}
    by_number: dict[int, str] = {}
    for s in gt_subjects:
        m = _TRAILING_NUMBER.search(s)
        if m:
            by_number.setdefault(int(m.group(1)), s)
    clashes = []
    for s in pd.unique(pred["subject"]):
        text = str(s)
        if text in gt_subjects:
            continue
        m = _TRAILING_NUMBER.search(text)
        if m and int(m.group(1)) in by_number:
            clashes.append(f"{text!r} (ground truth has {by_number[int(m.group(1))]!r})")
    if clashes:
        log.warning(
            "prediction subject(s) %s do not occur in the ground truth as written; subjects are "
            "compared exactly as written, so their rows are not scored. Use one style in both "
            "files.", ", ".join(clashes[:5]) + (" ..." if len(clashes) > 5 else "")
        )
