from pathlib import Path

import pytest

from tests.helpers import NOT_CLEAN_YAML
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
    assert (casme.dataset.frame_skip, casme.features.k, casme.train.ratio,
            casme.train.batch_size) == (1, 50, 4, 256)
    assert (samm.dataset.frame_skip, samm.features.k, samm.train.ratio,
            samm.train.batch_size) == (7, 30, 0.5, 32)
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


# -- strict types, strict YAML ----------------------------------------------------------------


@pytest.mark.parametrize("override, needle", [
    ("train.epochs=true", "key 'train.epochs': must be a whole number, not true"),
    ("train.epochs=3.0", "key 'train.epochs': must be a whole number, not 3.0"),
    ("train.epochs='3'", "key 'train.epochs': must be a whole number, not '3' (text)"),
    ("train.batch_size=false", "key 'train.batch_size': must be a whole number"),
    ("orchestration.retries=yes", "key 'orchestration.retries': must be a whole number"),
    ("features.realign=1", "key 'features.realign': must be true or false, not 1"),
    ("train.shuffle_labels='no'", "key 'train.shuffle_labels': must be true or false"),
    ("decode.p='0.5'", "key 'decode.p': must be a number, not '0.5' (text)"),
    ("decode.p=true", "key 'decode.p': must be a number, not true"),
    ("decode.interval_strategy=true", "key 'decode.interval_strategy': must be a whole number"),
    ("decode.synergy_strategy=1.0", "key 'decode.synergy_strategy': must be a whole number"),
    ("train.scale_aug=[0.9, true]", "key 'train.scale_aug.1': must be a number"),
    ("dataset.name=7", "key 'dataset.name': must be text, not 7"),
    ("synth.seed=false", "key 'synth.seed': must be a whole number"),
    ("dataset.max_frame_gap=-1", "key 'dataset.max_frame_gap'"),
])
def test_a_value_of_the_wrong_kind_is_refused(override, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(CONFIGS / "demo.yaml", [override])
    assert needle in str(exc.value) and "demo.yaml" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_numbers_are_read_as_numbers():
    cfg = load_config(CONFIGS / "demo.yaml", ["train.lr=3e-4", "decode.p=1", "train.ratio=2",
                                              "decode.interval_strategy=0"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)  # YAML 1.2 float
    assert cfg.decode.p == 1.0 and isinstance(cfg.decode.p, float)  # a whole number is a number
    assert cfg.decode.interval_strategy == 0




@pytest.mark.parametrize("content, needle", NOT_CLEAN_YAML)
def test_a_config_that_is_not_utf8_yaml_is_one_line(tmp_path, content, needle):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert needle in str(exc.value) and str(p) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_key_written_twice_is_refused(tmp_path):
    text = (CONFIGS / "demo.yaml").read_text()
    p = tmp_path / "twice.yaml"
    p.write_text(text.replace("  epochs: 8", "  epochs: 8\n  epochs: 80"))
    with pytest.raises(ConfigError, match=r"key 'train.epochs' appears twice \(lines \d+ and "):
        load_config(p)
    p.write_text(text + "\nfeatures:\n  k: 20\n")  # a whole section written twice
    with pytest.raises(ConfigError, match="key 'features' appears twice"):
        load_config(p)
    with pytest.raises(ConfigError, match="--set train.epochs given twice"):
        load_config(CONFIGS / "demo.yaml", ["train.epochs=3", "train.epochs=5"])
    with pytest.raises(ConfigError, match="both --root and --set dataset.root"):
        load_config(CONFIGS / "demo.yaml", ["dataset.root=/x"], root=tmp_path)
    with pytest.raises(ConfigError, match="both --out and --set run.out"):
        load_config(CONFIGS / "demo.yaml", ["run.out=/x"], out=tmp_path)


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_config(tmp_path)


# -- where a synthetic dataset may be generated -------------------------------------------------


def synth_config(tmp_path, root="gen"):
    p = tmp_path / "s.yaml"
    p.write_text((CONFIGS / "demo.yaml").read_text().replace(
        "root: data/synthetic/demo", f"root: {tmp_path / root}"))
    return p


def test_synthesis_only_into_the_config_files_own_root(tmp_path):
    from vrme.config import check_dataset_root, wants_synthesis

    p = synth_config(tmp_path)
    cfg = load_config(p)
    assert wants_synthesis(cfg) and check_dataset_root(cfg) is True
    with pytest.raises(ConfigError, match="does not exist yet: the config's synth: section "
                                          "generates it in `vrme run`"):
        check_dataset_root(cfg, can_generate=False)
    # the same folder given on the command line is still the config's own root
    assert wants_synthesis(load_config(p, root=tmp_path / "gen"))
    for cfg, what in [(load_config(p, root=tmp_path / "typo"), "(--root)"),
                      (load_config(p, [f"dataset.root={tmp_path / 'typo'}"]),
                       "(--set dataset.root)")]:
        assert not wants_synthesis(cfg)
        with pytest.raises(ConfigError) as exc:
            check_dataset_root(cfg)
        msg = str(exc.value)
        assert f"dataset root {tmp_path / 'typo'} {what} does not exist" in msg
        assert f"only into the dataset.root written in the config file ({tmp_path / 'gen'})" in msg


def test_synthesis_never_overwrites_a_folder_that_holds_something_else(tmp_path):
    from vrme.config import check_dataset_root, wants_synthesis

    p = synth_config(tmp_path)
    (tmp_path / "gen").mkdir()
    assert wants_synthesis(load_config(p))  # empty: generated
    (tmp_path / "gen" / "my_thesis.txt").write_text("precious")
    cfg = load_config(p)
    assert not wants_synthesis(cfg)
    with pytest.raises(ConfigError, match="holds files but no finished synthetic dataset"):
        check_dataset_root(cfg)
    (tmp_path / "gen" / "synth_spec.json").write_text("{}")
    assert wants_synthesis(load_config(p))  # finished: the synthesize step finds it present


def test_work_folder_checks(tmp_path):
    from vrme.config import check_work_folder

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"work folder .*file \(--out\) is a file"):
        check_work_folder(load_config(CONFIGS / "demo.yaml", out=tmp_path / "file"))
    with pytest.raises(ConfigError, match=r"is a file, not a folder \(.*file is a file\)"):
        check_work_folder(load_config(CONFIGS / "demo.yaml", out=tmp_path / "file" / "sub"))
    check_work_folder(load_config(CONFIGS / "demo.yaml", out=tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
