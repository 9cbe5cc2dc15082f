"""Synthetic micro-expression datasets in the exact on-disk layouts of CAS(ME)^3, SAMM-LV and
CAS(ME)^2.

The generator renders long 8-bit grayscale face videos from the astronaut photo shipped with
scikit-image (``skimage.data.astronaut()``). Each synthetic *subject* is that face with its own
scale, position, mirror flip, in-plane tilt, lighting, background and sensor noise. Facial
movements are smooth landmark-driven warps: the astronaut's 68 dlib landmarks are located once,
each action unit (AU) is a displacement field made of Gaussian radial basis functions around its
landmarks (normalised so that its largest displacement is 1 px), and a frame is

    background + warpAffine(remap(face, amplitude(t) * field), head pose(t)) * gain(t) + noise.

Events (frame numbers below are in the *original numbering*, i.e. the numbers in the jpg names,
onset..offset inclusive):

- micro-expressions (MEs): 0.2-0.5 s, raised-cosine rise to the apex and fall back, apex
  displacement 1.3-2.4 px; brow raise (AU 1+2) = surprise, brow lower (AU 4) = negative, lip-corner
  pull (AU 12) = positive, nose wrinkle (AU 9) / lip press (AU 24) / eye squint (AU 7) = others;
- macro-expressions: 0.5-4 s, 3.5-8 px, any of the same AUs;
- distractors that are never labelled: blinks, slow head drift, small head jerks, a slow global
  brightness flicker and per-frame Gaussian sensor noise.

MEs are kept at least 1 s apart from each other and from macro-expressions, and at least 0.5 s
from both ends of a video; blinks and jerks avoid MEs. Every random choice is drawn from numpy
Generators seeded by ``(seed, subject)`` and ``(seed, subject, video)``, so one video can be
regenerated alone and the same spec always gives byte-identical frames and spreadsheets.

Layouts written (DATASETS.md; each layout's folder and frame names and its spreadsheet writer
are declared by its module in ``vrme/data/layouts/``, :class:`vrme.data.layouts.Rendering`):

- ``casme3``: ``OUT/data/spNO.<i>/<video>/color/<n>.jpg`` (n from 0, not padded; videos ``a``,
  ``b``, ...), ``OUT/casme3_label.xlsx`` (sheet ``label``, header in row 1). As in the real part A
  spreadsheet, every row is a micro-expression: **macro-expressions are rendered but not
  labelled** in this layout; they are the movements a spotter must learn to ignore.
- ``samm-lv``: ``OUT/SAMM_longvideos/<sss>_<v>/<sss>_<v>_<nnnn>.jpg`` (n from 1, 4 digits),
  ``OUT/SAMM_LongVideos_V3_Release.xlsx`` (preamble rows 1-9, header row 10; MEs typed
  ``Micro - 1/2`` and macro-expressions typed ``Macro``) and ``OUT/SAMM_Micro_FACS_Codes_v2.xlsx``
  (sheet ``MICRO_ONLY``, preamble rows 1-13, header row 14; MEs only, with the emotion).
- ``casme2``: ``OUT/rawpic/s<NN>/<NN>_<code><name>/img<nnn>.jpg`` (n from 1, at least 3 digits;
  subject ``i`` in folder ``s<14+i>``, videos the release's stimulus codes ``0101``, ``0102``,
  ``0401``, ...), ``OUT/CAS(ME)^2code_final.xlsx`` (sheets ``CASFEcode_final``, no header row,
  every ME and macro-expression; ``naming rule1`` and ``naming rule2``).

Every layout also gets ``OUT/ground_truth.csv`` (STRS format: subject, video, onset, offset,
emotion; MEs only, emotion mapped to negative/positive/surprise/others, subject = fold id),
``OUT/synth_events.csv`` (every ME and macro-expression, with its AU and amplitude),
``OUT/synth_distractors.csv`` (blinks and head jerks) and, written last,
``OUT/synth_spec.json`` (the spec and counts; its presence marks a complete dataset).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrme.data import layouts as layouts
from vrme.progress import ProgressBar
from vrme.synth.face import SourceFace, astronaut_face
from vrme.synth.render import _render_video_job, _VideoJob, _VideoOutput
from vrme.synth.sheets import _csv_text, ground_truth_table
from vrme.synth.spec import (
    DISTRACTOR_COLUMNS,
    EVENT_COLUMNS,
    SynthError,
    SynthResult,
    SynthSpec,
    video_relpath,
)

# pandas and vrme.io (pyarrow) are imported where used: rendering workers never need them and
# start faster without.
if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd



_SERIAL_FRAME_BUDGET = 1000
"""Below this many 640 x 480-equivalent frames in all, videos render in this process (starting
worker processes would cost more than it saves)."""


log = logging.getLogger(__name__)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise SynthError(f"output {out_dir} exists and is not a folder")
    if any(out_dir.iterdir()):
        if not overwrite:
            raise SynthError(f"output folder {out_dir} is not empty; choose an empty or new "
                             "folder (or pass overwrite)")
        written = [n for lay in layouts.all_layouts() if lay.rendering is not None
                   for n in lay.rendering.outputs]
        for name in written + ["ground_truth.csv", "synth_events.csv",
                               "synth_distractors.csv", "synth_spec.json"]:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def generate_dataset(spec: SynthSpec, out_dir: str | os.PathLike[str], progress: bool = True,
                     overwrite: bool = False, source: SourceFace | None = None) -> SynthResult:
    """Render a whole synthetic dataset into ``out_dir`` in ``spec.layout``.

    Frames are written as they are rendered (one video at a time per worker, never held in
    memory), each video into a temporary folder renamed into place when complete; the
    spreadsheets, ``ground_truth.csv`` and ``synth_events.csv`` follow, and ``synth_spec.json``
    last. ``out_dir`` must be empty or absent unless ``overwrite`` (which replaces a previous
    synthetic dataset's files). ``source`` = the photo and landmarks to render from (default
    :func:`astronaut_face`; pass one to save loading dlib's model again). Returns a
    :class:`SynthResult` (frame numbers in original numbering).
    """
    import pandas as pd

    from vrme.io import write_json_atomic, write_text_atomic

    t0 = time.perf_counter()
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    source = source or astronaut_face()
    jobs = [_VideoJob(spec=spec, subject=s, video=v, out_dir=out, source=source)
            for s in range(1, spec.subjects + 1) for v in range(1, spec.videos + 1)]
    if spec.workers is None:
        cost = len(jobs) * spec.frames_per_video * spec.width * spec.height / (640 * 480)
        workers = 1 if cost < _SERIAL_FRAME_BUDGET else (os.cpu_count() or 1)
    else:
        workers = spec.workers
    workers = max(1, min(workers, len(jobs)))
    total = len(jobs) * spec.frames_per_video
    outputs: list[_VideoOutput] = []

    with ProgressBar(progress, f"synth {spec.layout}", total, unit="frames") as bar:
        advance = bar.advance
        if workers == 1:
            for job in jobs:
                outputs.append(_render_video_job(job, on_frame=lambda: advance(1)))
        else:
            for job in jobs:
                job.single_thread = True
            with ProcessPoolExecutor(max_workers=workers,
                                     mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_render_video_job, job) for job in jobs]
                for fut in as_completed(futures):
                    res = fut.result()
                    outputs.append(res)
                    advance(res.n_frames)
    outputs.sort(key=lambda o: (o.subject, o.video_index))

    events = pd.DataFrame([e for o in outputs for e in o.events], columns=EVENT_COLUMNS)
    distractors = pd.DataFrame([d for o in outputs for d in o.distractors],
                               columns=DISTRACTOR_COLUMNS)
    videos = pd.DataFrame([dict(subject=o.fold, subject_dir=o.subject_dir, video=o.video,
                                path=video_relpath(spec.layout, o.subject_dir, o.video),
                                n_frames=o.n_frames, first_frame=spec.first_frame)
                           for o in outputs])

    label_files = spec.rendering.write_labels(out, events, spec)
    gt_path = write_text_atomic(out / "ground_truth.csv", _csv_text(ground_truth_table(events)))
    write_text_atomic(out / "synth_events.csv", _csv_text(events))
    write_text_atomic(out / "synth_distractors.csv", _csv_text(distractors))
    elapsed = time.perf_counter() - t0
    summary = summarize(events, videos)
    write_json_atomic(out / "synth_spec.json", {"spec": spec.as_dict(), "summary": summary})
    log.info("synthetic %s dataset: %d videos, %d frames, %d MEs, %d macro-expressions in "
             "%.1f s -> %s", spec.layout, len(videos), int(videos["n_frames"].sum()),
             summary["micro"], summary["macro"], elapsed, out)
    return SynthResult(out_dir=out, spec=spec, events=events, distractors=distractors,
                       videos=videos, label_files=label_files, ground_truth=gt_path,
                       seconds=elapsed)


def summarize(events: pd.DataFrame, videos: pd.DataFrame) -> dict[str, Any]:
    """Counts of a generated dataset: videos, frames, MEs (total and per emotion), macros."""
    micro = events[events["type"] == "micro"]
    return {
        "videos": int(len(videos)),
        "frames": int(videos["n_frames"].sum()) if len(videos) else 0,
        "micro": int(len(micro)),
        "macro": int((events["type"] == "macro").sum()),
        "micro_per_emotion": {str(k): int(v) for k, v in
                              micro["emotion"].value_counts().sort_index().items()},
    }
