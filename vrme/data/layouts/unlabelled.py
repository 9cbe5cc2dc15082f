"""Unlabelled layouts: ``megc`` (the MEGC test sets, either folder style) and ``videos`` (a
folder of video files). Both read the same way: every folder holding numbered images is a video
and every .mp4/.avi/.mov/.mkv file is a video read through OpenCV; a frame folder's naming
pattern is the one most of its files follow. There are no labels, no default frame rate and
nothing to synthesise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from vrme.data.layouts import Layout, VideoEntry, register

if TYPE_CHECKING:  # pragma: no cover
    from vrme.data.labels import Issue


def scan_unlabelled(root: Path) -> tuple[list[VideoEntry], list[Issue]]:
    """Every folder under ``root`` that holds image files, and every video file, is a video.

    Subject and video names: a ``color`` folder is named by its parent (CAS(ME)^3 style); a
    folder named ``<sss>_<v>`` belongs to subject ``sss`` (SAMM style); otherwise the parent
    folder is the subject. A video file ``<parent>/<stem>.mp4`` is subject ``<parent>`` (or
    its stem at the root), video ``<stem>``.
    """
    from vrme.errors import DataError
    from vrme.data.frames import VIDEO_EXTENSIONS, natural_key
    from vrme.data.labels import fold_id_casme3

    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    entries: list[VideoEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort(key=natural_key)
        here = Path(dirpath)
        images = [f for f in filenames if f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp"))]
        if images:
            name = here.name if here != root else root.name
            parent = here.parent
            if name == "color":
                name, parent = parent.name, parent.parent
            if re.fullmatch(r"\d+_\d+", name):
                subject = name.split("_")[0]
            else:
                subject = parent.name if parent != root.parent and parent.name else name
            entries.append(VideoEntry(fold_id_casme3(subject), subject, name, folder=here))
        for f in sorted(filenames, key=natural_key):
            if f.lower().endswith(VIDEO_EXTENSIONS):
                p = here / f
                subject = here.name if here != root else p.stem
                entries.append(VideoEntry(subject, subject, p.stem, file=p))
    return entries, []


MEGC = register(Layout(name="megc", title="MEGC test set", scan=scan_unlabelled))
VIDEOS = register(Layout(name="videos", title="folder of videos", scan=scan_unlabelled))
