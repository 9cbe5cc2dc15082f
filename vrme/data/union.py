"""The union of several datasets (a config with ``datasets:``, the MEGC protocol) as one.

Each dataset is ingested, aligned and featurised on its own (:meth:`vrme.config.Config.parts`);
:func:`write_union` then puts them together for the folds and the report:

- subjects are renamed ``<dataset>.<subject>`` (``casme3.1``, ``samm_lv.006``), so subjects of
  different datasets never merge and leave-one-subject-out runs over the union of subjects;
- ``<out>/ingest/manifest.parquet`` and ``labels.parquet`` hold every dataset's videos and
  events under those names (``labels.dataset`` names the dataset);
- the union's feature folder (:func:`vrme.features.flow.features_dir` of the union config) holds one
  hard link (a copy where links are impossible) per video to the dataset's own feature file,
  made again on every run, so a recomputed feature file is always the one linked.

Every video keeps its own frame skip and first frame (in its feature file), so intervals come
out in the dataset's original frame numbers and the report scores every dataset on its own and
pooled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vrme.catalog import labels_path, manifest_path
from vrme.config import Config
from vrme.errors import DataError

SEPARATOR = "."


def union_subject(dataset: str, subject: str) -> str:
    """The union's name of ``subject`` of ``dataset``: ``<dataset>.<subject>``."""
    return f"{dataset}{SEPARATOR}{subject}"


def dataset_of(subject: str, datasets: list[str]) -> str | None:
    """The dataset a union subject belongs to (the longest dataset name it starts with)."""
    best = None
    for d in datasets:
        if str(subject).startswith(d + SEPARATOR) and (best is None or len(d) > len(best)):
            best = d
    return best


def write_union(cfg: Config, keep: set[tuple[str, str, str]] | None = None
                ) -> tuple[Path, Path, Path]:
    """Write the union's manifest, labels and feature links from its datasets' ingested
    tables and feature files; returns (manifest, labels, features folder). ``keep``: the
    (dataset, subject, video) whose features exist (default: every video with a feature
    file)."""
    from vrme.features.flow import feature_path, features_dir
    from vrme.io import link_or_copy
    from vrme.schema import (LABELS_SCHEMA, MANIFEST_SCHEMA, read_labels, read_manifest,
                             write_table)

    if not cfg.datasets:
        raise DataError("write_union: the config names one dataset")
    manifests, labels = [], []
    out_feats = features_dir(cfg)
    for part in cfg.parts():
        name = part.dataset.name
        m_path, l_path = manifest_path(part), labels_path(part)
        if not m_path.is_file() or not l_path.is_file():
            raise DataError(f"dataset {name}: {part.ingest_dir} has no ingested tables")
        m, lab = read_manifest(m_path), read_labels(l_path)
        rows = []
        for r in m.to_dict(orient="records"):
            src = feature_path(part, str(r["subject"]), str(r["video"]))
            wanted = (keep is None and src.is_file()) or (
                keep is not None and (name, str(r["subject"]), str(r["video"])) in keep)
            if not wanted:
                continue
            new = union_subject(name, str(r["subject"]))
            link_or_copy(src, out_feats / new / f"{r['video']}.parquet")
            rows.append({**r, "subject": new})
        manifests.append(pd.DataFrame(rows, columns=m.columns))
        lab = lab.assign(subject=[union_subject(name, str(s)) for s in lab["subject"]],
                         dataset=name)
        labels.append(lab)
    manifest = pd.concat(manifests, ignore_index=True)
    events = pd.concat(labels, ignore_index=True)
    m_out = write_table(manifest, manifest_path(cfg), MANIFEST_SCHEMA)
    l_out = write_table(events, labels_path(cfg), LABELS_SCHEMA)
    return m_out, l_out, out_feats
