"""The MEGC protocol across datasets: one config naming a CAS(ME)^3-layout and a SAMM-LV-layout
dataset (generated in their real layouts, read by their real adapters), leave-one-subject-out
over the union of their subjects, every dataset's STRS and the pooled one; then a final model
on all subjects predicting a composite test folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY_SYNTH

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> tuple[Path, Path]:
    from vrme.synth.generate import generate_dataset
    from vrme.synth.spec import SynthSpec

    base = tmp_path_factory.mktemp("megc")
    cas = base / "CASME_3"
    generate_dataset(SynthSpec(layout="casme3", **TINY_SYNTH), cas, progress=False)
    samm = base / "SAMMLV"
    spec = {**TINY_SYNTH, "subjects": 2, "fps": 200, "seconds": 4, "seed": 5}
    generate_dataset(SynthSpec(layout="samm-lv", **spec), samm, progress=False)
    return cas, samm


def megc_config(folder: Path, cas: Path, samm: Path) -> Path:
    cfg = folder / "megc.yaml"
    cfg.write_text(
        "datasets:\n"
        f"  - {{name: cas, layout: casme3, root: {cas}, fps: 30, frame_skip: 1}}\n"
        f"  - {{name: samm, layout: samm_lv, root: {samm}, fps: 200, frame_skip: 7}}\n"
        "features: {k: 16}\n"
        "model: {backbone: gru, fast_channels: 8, slow_channels: 16, stages: 1, "
        "blocks_per_stage: 1, d_state: 4}\n"
        "train: {epochs: 2, batch_size: 8, lr: 0.003, ratio: 1, device: cpu, threads: 1}\n"
        f"orchestration: {{retries: 0}}\nrun: {{out: {folder / 'work'}}}\n")
    return cfg


def test_loso_over_the_union_of_two_datasets(prefect_harness, two_datasets, tmp_path):
    from flows.benchmark import benchmark_flow
    from flows.final import predict_flow, train_final_flow
    from vrme.inference.predict import check_megc_csv

    cas, samm = two_datasets
    cfg = megc_config(tmp_path, cas, samm)
    state = benchmark_flow(config=str(cfg), return_state=True)
    assert state.is_completed(), state.message
    res = state.result()
    assert res["folds_trained"] == ["cas.1", "cas.2", "cas.3", "samm.001", "samm.002"]
    work = tmp_path / "work"
    # each dataset ingested on its own, by its own adapter, then the union
    assert (work / "ingest" / "cas" / "manifest.parquet").is_file()
    assert (work / "ingest" / "samm" / "manifest.parquet").is_file()
    labels = pd.read_parquet(work / "ingest" / "labels.parquet")
    assert set(labels["dataset"]) == {"cas", "samm"}
    metrics = json.loads((work / "runs/megc/report/metrics.json").read_text())
    per = metrics["per_dataset"]
    assert set(per) == {"cas", "samm"}
    assert per["cas"]["n_gt"] + per["samm"]["n_gt"] == metrics["n_ground_truth"]
    assert (per["cas"]["spot_tp"] + per["samm"]["spot_tp"]) == metrics["official"]["spot_tp"]
    assert "Per dataset" in (work / "runs/megc/report/report.md").read_text()
    # predictions in each dataset's original frame numbers: SAMM's every 7th from frame 1
    pred = pd.read_csv(work / "runs/megc/report/predictions.csv", dtype={"subject": str})
    samm_pred = pred[pred["subject"].str.startswith("samm.")]
    assert len(samm_pred) and ((samm_pred["onset"] - 1) % 7 == 0).all()
    # the per-dataset numbers are what vrme strs gives on the dataset's rows alone
    from vrme.metrics.strs import evaluate_strs

    gt = pd.read_csv(work / "runs/megc/report/ground_truth.csv", dtype={"subject": str})
    alone = evaluate_strs(samm_pred.reset_index(drop=True),
                          gt[gt["subject"].str.startswith("samm.")].reset_index(drop=True))
    assert alone.spot_tp == per["samm"]["spot_tp"] and alone.spot_fp == per["samm"]["spot_fp"]

    # train on all, predict a composite test set (a CAS-style and a SAMM-style video)
    final = train_final_flow(config=str(cfg), return_state=True)
    assert final.is_completed(), final.message
    model = final.result()["model_dir"]
    info = json.loads((Path(model) / "model.json").read_text())
    assert sorted(info["train_subjects"]) == ["cas.1", "cas.2", "cas.3", "samm.001",
                                              "samm.002"]
    test = tmp_path / "megc_test"
    test.mkdir()
    import shutil

    shutil.copytree(cas / "data", test / "CAS_Test" / "data")
    shutil.copytree(samm / "SAMM_longvideos", test / "SAMM_Test" / "SAMM_longvideos")
    out = tmp_path / "submission.csv"
    pred_state = predict_flow(model=[model], root=str(test), out=str(out),
                              cache=str(tmp_path / "cache"), return_state=True)
    assert pred_state.is_completed(), pred_state.message
    check_megc_csv(out)
    videos = pd.DataFrame(pred_state.result()["videos"])
    assert set(videos["frame_skip"]) == {1, 7}  # each video at the rate the model trained at


def test_datasets_at_different_rates_are_refused(tmp_path):
    from vrme.config import ConfigError, load_config

    p = tmp_path / "bad.yaml"
    p.write_text("datasets:\n  - {name: a, layout: casme3, fps: 30, frame_skip: 1}\n"
                 "  - {name: b, layout: samm_lv, fps: 200, frame_skip: 1}\nfeatures: {k: 16}\n")
    with pytest.raises(ConfigError, match="effective frame rates"):
        load_config(p)
    p.write_text("datasets:\n  - {name: a, layout: casme3, fps: 30}\n"
                 "  - {name: a, layout: samm_lv, fps: 200}\nfeatures: {k: 16}\n")
    with pytest.raises(ConfigError, match="its own name"):
        load_config(p)
