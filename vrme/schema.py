"""Column types of the tables vrme writes, and readers/writers for them.

Frame numbers are always the numbers in the frame file names ("original numbering") unless a
name says ``position`` (0-based index into the video's frame sequence, gaps filled) or ``index``
(0-based index after frame skipping: index j is position j * frame_skip).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vrme.io import read_parquet_metadata, write_parquet_atomic

MANIFEST_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("subject", pa.string()),  # fold id: CAS(ME)^3 'spNO.1' -> '1'; SAMM '006'
        ("subject_dir", pa.string()),  # the subject as written on disk / in the spreadsheet
        ("video", pa.string()),
        ("source", pa.string()),  # 'frames' (a folder of images) or 'video' (.mp4/.avi)
        ("path", pa.string()),  # frame folder or video file, relative to the dataset root
        ("name_prefix", pa.string()),  # frame file name = prefix + number (+ padding) + suffix
        ("name_suffix", pa.string()),
        ("pad_width", pa.int16()),  # 0 = numbers are not zero-padded
        ("frame_files", pa.list_(pa.string())),  # only when names follow no single pattern
        ("first_frame", pa.int64()),
        ("last_frame", pa.int64()),
        ("n_frames", pa.int64()),  # positions first..last (gaps included)
        ("n_files", pa.int64()),  # frame files actually present
        ("missing_frames", pa.list_(pa.int64())),
        ("frame_numbering", pa.string()),  # 'contiguous' | 'gaps' | 'video'
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("labelled", pa.bool_()),
    ]
)

LABELS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("subject", pa.string()),
        ("video", pa.string()),
        ("event", pa.int32()),  # running number of the event within its video
        ("onset", pa.int64()),  # original frame numbers, inclusive
        ("apex", pa.int64()),  # null = not annotated (SAMM's -1)
        ("offset", pa.int64()),
        ("type", pa.string()),  # 'micro' | 'macro'
        ("emotion_raw", pa.string()),
        ("emotion", pa.string()),  # negative | positive | surprise | others; null for macro
        ("source_file", pa.string()),
        ("source_row", pa.int32()),  # 1-based spreadsheet row, as Excel shows it
    ]
)

SKIPPED_COLUMNS = ["kind", "file", "sheet", "row", "column", "subject", "video", "item", "reason",
                   "action"]
"""Columns of ``skipped.csv``: what was left out (or kept with a note, or ignored) and why.
``file``/``sheet``/``row``/``column`` locate a label cell (Excel row and column letter);
``item`` names the frame files, folder or frame range of a video or frames entry."""


def empty_table(schema: pa.Schema) -> pd.DataFrame:
    """An empty DataFrame with the columns of ``schema``."""
    return schema.empty_table().to_pandas()


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], schema: pa.Schema,
                metadata: dict[str, Any] | None = None) -> Path:
    """Write ``df`` to Parquet with exactly ``schema`` (columns in schema order)."""
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(f"cannot write {path}: columns missing {missing}")
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    return write_parquet_atomic(path, table, metadata)


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``manifest.parquet`` (one row per video)."""
    return pq.read_table(path, schema=MANIFEST_SCHEMA).to_pandas()


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``labels.parquet`` (one row per event); ``apex`` is a nullable Int64 column."""
    df = pq.read_table(path, schema=LABELS_SCHEMA).to_pandas()
    for col in ("onset", "apex", "offset"):
        df[col] = df[col].astype("Int64")
    return df


# -- window features ----------------------------------------------------------------------

ALIGN_FLAGS = ("detected", "reused", "late", "none")


def features_schema(n_values: int) -> pa.Schema:
    """One row per window; ``features`` is the 36 x k matrix flattened row-major."""
    return pa.schema(
        [
            ("window", pa.int32()),
            ("start_index", pa.int32()),  # first frame of the window, index after skipping
            ("start_frame", pa.int64()),  # the same frame in original numbering
            ("features", pa.list_(pa.float32(), n_values)),
            ("align", pa.string()),  # detected | reused | late | none
        ]
    )


@dataclass
class VideoFeatures:
    """The windows of one video.

    ``values`` has shape (n_windows, 36, k), float32. ``meta`` holds what the file's schema
    metadata records (parameters, versions, input fingerprint, frame numbering).
    """

    subject: str
    video: str
    values: np.ndarray
    start_index: np.ndarray
    start_frame: np.ndarray
    align: np.ndarray
    n_frames: int  # frames after skipping
    first_frame: int  # original number of index 0
    frame_skip: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.values.shape[2])

    def frame_number(self, index: np.ndarray | int) -> np.ndarray | int:
        """Original frame number of skipped index ``index``."""
        return self.first_frame + np.asarray(index) * self.frame_skip


def write_video_features(path: str | os.PathLike[str], feats: VideoFeatures) -> Path:
    """Write one video's windows atomically; ``feats.meta`` goes to the schema metadata."""
    n, rows, k = feats.values.shape
    flat = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(feats.values, dtype=np.float32).reshape(-1)), rows * k
    )
    table = pa.table(
        {
            "window": pa.array(np.arange(n, dtype=np.int32)),
            "start_index": pa.array(np.asarray(feats.start_index, dtype=np.int32)),
            "start_frame": pa.array(np.asarray(feats.start_frame, dtype=np.int64)),
            "features": flat,
            "align": pa.array([str(a) for a in feats.align], pa.string()),
        },
        schema=features_schema(rows * k),
    )
    meta = dict(feats.meta)
    meta.update(
        subject=feats.subject,
        video=feats.video,
        n_frames=int(feats.n_frames),
        first_frame=int(feats.first_frame),
        frame_skip=int(feats.frame_skip),
        rows=int(rows),
        k=int(k),
    )
    return write_parquet_atomic(path, table, {"vrme": meta})


def read_video_features(path: str | os.PathLike[str]) -> VideoFeatures:
    """Read one video's windows written by :func:`write_video_features`."""
    meta = read_parquet_metadata(path).get("vrme", {})
    table = pq.read_table(path)
    rows, k = int(meta["rows"]), int(meta["k"])
    col = table.column("features").combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False) if len(col) else np.zeros(0, np.float32)
    values = np.asarray(flat, dtype=np.float32).reshape(len(col), rows, k)
    return VideoFeatures(
        subject=str(meta["subject"]),
        video=str(meta["video"]),
        values=values,
        start_index=table.column("start_index").to_numpy(),
        start_frame=table.column("start_frame").to_numpy(),
        align=np.asarray(table.column("align").to_pylist(), dtype=object),
        n_frames=int(meta["n_frames"]),
        first_frame=int(meta["first_frame"]),
        frame_skip=int(meta["frame_skip"]),
        meta=meta,
    )
