"""``union``: the datasets of a multi-dataset config (``datasets:``, the MEGC protocol) seen as
one. Nothing is read from a union's own root: its videos and labels are those of its datasets,
each ingested, aligned and featurised by its own layout, then put together by
:mod:`vrme.data.union` (subjects named ``<dataset>.<subject>``)."""

from __future__ import annotations

from pathlib import Path

from vrme.data.layouts import Layout, register


def _scan(root: Path):  # noqa: ANN202 - never returns
    from vrme.errors import DataError

    raise DataError("a union of datasets has no folder of its own: list its datasets under "
                    "`datasets:` in the config; each is read with its own layout")


UNION = register(Layout(name="union", title="union of datasets", scan=_scan))
