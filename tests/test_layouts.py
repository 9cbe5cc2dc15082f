"""The layout registry: every module of vrme/data/layouts/ registers its layouts, the config accepts
exactly the registered ones, and a new layout is one module plus one config."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import textwrap

import pytest

import vrme.data.layouts as layouts
from tests.helpers import write_frames
from vrme.config import DEFAULT_EMOTION_MAPS, ConfigError, config_from_mapping, load_config
from vrme.data.ingest import ingest
from vrme.synth.spec import SynthError, SynthSpec


def _modules():
    return [importlib.import_module(f"vrme.data.layouts.{m.name}")
            for m in pkgutil.iter_modules(layouts.__path__) if not m.name.startswith("_")]


def test_every_module_registers_its_layouts():
    declared = []
    for module in _modules():
        mine = [v for v in vars(module).values() if isinstance(v, layouts.Layout)]
        assert mine, f"{module.__name__} declares no layout"
        for layout in mine:
            assert layouts.get(layout.name) is layout
        declared += [lay.name for lay in mine]
    assert sorted(set(declared)) == layouts.names()
    assert {"casme2", "casme3", "samm_lv", "megc", "videos"} <= set(layouts.names())
    assert layouts.synth_names() == ["casme2", "casme3", "samm-lv"]


@pytest.mark.parametrize("name", layouts.names())
def test_the_config_accepts_every_registered_layout(name):
    layout = layouts.get(name)
    cfg = config_from_mapping({"dataset": {"name": "x", "layout": name, "fps": 25,
                                           "frame_skip": 2}, "features": {"k": 10}})
    assert cfg.dataset.layout == name and (cfg.dataset.fps, cfg.dataset.frame_skip) == (25, 2)
    assert cfg.dataset.label_files == list(layout.label_files)
    assert cfg.dataset.emotion_map == dict(layout.emotion_map)
    if layout.labelled:
        assert DEFAULT_EMOTION_MAPS[name] == dict(layout.emotion_map)
        bare = config_from_mapping({"dataset": {"name": "x", "layout": name},
                                    "features": {"k": 10}})
        assert (bare.dataset.fps, bare.dataset.frame_skip) == (layout.fps, layout.frame_skip)
    else:  # no default frame rate for unlabelled folders: it must be given
        with pytest.raises(ConfigError, match="missing required key 'dataset.fps'"):
            config_from_mapping({"dataset": {"name": "x", "layout": name},
                                 "features": {"k": 10}})


def test_an_unknown_layout_lists_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"dataset": {"name": "x", "layout": "casme", "fps": 30,
                                         "frame_skip": 1}, "features": {"k": 10}})
    msg = str(exc.value)
    assert "key 'dataset.layout': got 'casme', which is not a layout; the layouts are " in msg
    assert all(n in msg for n in layouts.names()) and "vrme/data/layouts/" in msg
    with pytest.raises(layouts.UnknownLayout, match="the layouts are casme2, casme3"):
        layouts.get("casme")


def test_a_name_registered_twice_is_refused():
    twin = layouts.Layout(name="casme3", title="another", scan=lambda root: ([], []))
    with pytest.raises(ValueError, match="registered twice"):
        layouts.register(twin)


def test_synth_takes_the_registered_renderings():
    for name in layouts.synth_names():
        spec = SynthSpec(layout=name, seconds=1)
        assert spec.layout == name and spec.fps == layouts.rendered(name).rendering.fps
    with pytest.raises(SynthError, match="synth layout must be one of casme2, casme3, samm-lv"):
        SynthSpec(layout="megc")
    with pytest.raises(SynthError, match="casme2 allows 9 videos per subject"):
        SynthSpec(layout="casme2", videos=10)


TOY_MODULE = '''
"""A toy layout: ROOT/clips/<subject>/<video>/f<n>.png + toy.csv (subject, video, onset, offset,
emotion)."""
from pathlib import Path

from vrme.data.layouts import Layout, VideoEntry, register


def scan(root):
    entries = [VideoEntry(s.name, s.name, v.name, folder=v)
               for s in sorted((root / "clips").iterdir()) for v in sorted(s.iterdir())]
    return entries, []


def read_labels(paths, ds):
    import pandas as pd

    from vrme.data.labels import events_frame

    rows = pd.read_csv(paths[0], dtype=str).to_dict("records")
    return events_frame([dict(subject=r["subject"], subject_dir=r["subject"], video=r["video"],
                              onset=int(r["onset"]), apex=None, offset=int(r["offset"]),
                              type="micro", emotion_raw=r["emotion"],
                              emotion=ds.emotion_map.get(r["emotion"]), source_file=paths[0].name,
                              source_sheet="", source_row=i + 2)
                         for i, r in enumerate(rows)]), []


TOY = register(Layout(name="toy", title="toy", scan=scan, read_labels=read_labels,
                      label_files=("toy.csv",), label_roles=("the toy",),
                      emotion_map={"joy": "positive", "fear": "negative"}, fps=25.0,
                      frame_skip=1, root_folder="clips", frame_prefix=lambda video: "f",
                      label_folder=lambda s, v: f"clips/{s}/{v}"))
'''


def test_a_new_layout_is_one_module_and_one_config(tmp_path, monkeypatch):
    """Dropping a module into the package (here: a folder added to its path) is all the code a
    layout needs: the config accepts it and ingestion reads its root."""
    package = tmp_path / "more_layouts"
    package.mkdir()
    (package / "toy.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.setattr(layouts, "__path__", [*layouts.__path__, str(package)])
    monkeypatch.setattr(layouts, "_REGISTRY", dict(layouts._REGISTRY))
    monkeypatch.setattr(layouts, "_loaded", False)
    try:
        root = tmp_path / "toyset"
        for subject, video in (("ann", "v1"), ("bob", "v1")):
            write_frames(root / "clips" / subject / video, range(1, 21),
                         name=lambda n: f"f{n}.png")
        (root / "toy.csv").write_text("subject,video,onset,offset,emotion\n"
                                      "ann,v1,3,9,joy\nbob,v1,5,12,fear\nbob,v2,1,4,joy\n")
        config = tmp_path / "toy.yaml"
        config.write_text(f"dataset: {{name: toy, layout: toy, root: {root}}}\n"
                          f"features: {{k: 10}}\nrun: {{out: {tmp_path / 'work'}}}\n")
        cfg = load_config(config)
        assert "toy" in layouts.names()
        assert (cfg.dataset.fps, cfg.dataset.label_files) == (25.0, ["toy.csv"])
        res = ingest(cfg)
        assert list(res.manifest["subject"]) == ["ann", "bob"]
        assert (res.manifest["name_prefix"] == "f").all()
        assert list(res.labels["emotion"]) == ["positive", "negative"]
        missing = res.skipped[res.skipped["kind"] == "label"].iloc[0]
        assert missing["row"] == 4 and "no folder clips/bob/v2" in missing["reason"]
    finally:
        sys.modules.pop("vrme.data.layouts.toy", None)
