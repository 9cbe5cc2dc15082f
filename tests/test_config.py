from pathlib import Path

import pytest

from vrme.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["casme3", "samm_lv", "demo"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.dataset.name == name
    assert cfg.features.k % 2 == 0


def test_paper_settings():
    casme = load_config(CONFIGS / "casme3.yaml")
    samm = load_config(CONFIGS / "samm_lv.yaml")
    assert (casme.dataset.frame_skip, casme.features.k, casme.train.ratio, casme.train.batch_size) == (1, 50, 4, 256)
    assert (samm.dataset.frame_skip, samm.features.k, samm.train.ratio, samm.train.batch_size) == (7, 30, 0.5, 32)
    for cfg in (casme, samm):
        assert cfg.train.epochs == 50 and cfg.train.lr == 3e-4 and cfg.train.seed == 100
        assert cfg.decode.p == 0.55 and cfg.decode.synergy_strategy == 1
        assert cfg.decode.interval_strategy == 1
    assert samm.dataset.emotion_map["contempt"] == "negative"
    assert casme.dataset.emotion_map["happy"] == "positive"


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text((CONFIGS / "demo.yaml").read_text() + "\ntrain_extra: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "bad.yaml" in str(exc.value) and "unknown key 'train_extra'" in str(exc.value)


def test_nested_unknown_key_and_wrong_type(tmp_path):
    p = tmp_path / "bad2.yaml"
    text = (CONFIGS / "demo.yaml").read_text().replace("epochs: 8", "epochs: eight\n  epoch: 3")
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "bad2.yaml" in msg and "'train.epoch'" in msg and "'train.epochs'" in msg


def test_overrides_apply_and_are_validated():
    cfg = load_config(CONFIGS / "demo.yaml", ["train.epochs=3", "model.backbone=gru",
                                              "features.farneback.levels=2"])
    assert cfg.train.epochs == 3 and cfg.model.backbone == "gru"
    assert cfg.features.farneback.levels == 2
    with pytest.raises(ConfigError, match="unknown key 'model.depth'"):
        load_config(CONFIGS / "demo.yaml", ["model.depth=3"])
    with pytest.raises(ConfigError, match="features.k"):
        load_config(CONFIGS / "demo.yaml", ["features.k=31"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(CONFIGS / "demo.yaml", ["train.epochs"])


def test_section_hash_tracks_parameters():
    a = load_config(CONFIGS / "demo.yaml")
    b = load_config(CONFIGS / "demo.yaml", ["features.farneback.winsize=9"])
    assert a.section_hash("align") == b.section_hash("align")
    assert a.section_hash("features") != b.section_hash("features")


def test_root_and_out_override(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", root=tmp_path / "r", out=tmp_path / "o")
    assert cfg.dataset.root == tmp_path / "r"
    assert cfg.ingest_dir == tmp_path / "o" / "ingest"
    assert cfg.run_dir == tmp_path / "o" / "runs" / "demo"
