"""Deterministic spreadsheet bytes (fixed zip and document times) and the ground-truth table
of a generated dataset.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING, Any

from vrme.data import layouts as layouts
from vrme.synth.spec import GROUND_TRUTH_COLUMNS

# Fixed timestamp for every spreadsheet, so that the same spec gives byte-identical files.
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd



_FIXED_XLSX_TIME = "2020-01-01T00:00:00Z"


def xlsx_bytes(wb: Any) -> bytes:
    """Save an openpyxl workbook with fixed timestamps (byte-identical for identical content)."""
    wb.properties.creator = "vrme synth"
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                              lambda m: m.group(1) + _FIXED_XLSX_TIME + m.group(3), text)
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(item.filename, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = item.external_attr
            zout.writestr(info, data)
    return out.getvalue()


def ground_truth_table(events: pd.DataFrame) -> pd.DataFrame:
    """STRS ground truth from an events table: MEs only, columns subject (fold id), video,
    onset, offset (original numbering, inclusive), emotion (mapped class)."""
    micro = events[events["type"] == "micro"]
    return micro[GROUND_TRUTH_COLUMNS].reset_index(drop=True)


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")
