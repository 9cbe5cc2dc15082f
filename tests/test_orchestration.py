"""The benchmark as Prefect flows, run for real under a temporary Prefect server.

Every test runs the real pipeline (synthetic JPEG frames, dlib, OpenCV, Parquet, torch) on the
tiny session dataset; only the work folder differs between tests.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY_SYNTH, tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def write_config(tmp_path: Path, root: Path, extra: str = "") -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(tiny_config_text(root, tmp_path / "work", extra))
    return p


def task_states(state) -> dict[str, str]:
    """Task run name -> state name, for the flow run that ended in ``state``."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


def run_benchmark(config: Path, **kw):
    from flows.benchmark import benchmark_flow

    return benchmark_flow(config=str(config), return_state=True, **kw)


def test_benchmark_completes_then_reruns_from_cache(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(tmp_path, tiny_synth_root,
                       "orchestration: {task_runner: threads, max_workers: 2, retries: 0}\n")
    first = run_benchmark(cfg)
    assert first.is_completed(), first.message
    res = first.result()
    assert res["folds_trained"] == ["1", "2", "3"] and not res["folds_failed"]
    work = tmp_path / "work"
    report = work / "runs" / "tiny" / "report"
    assert (report / "report.html").is_file() and (report / "metrics.json").is_file()
    assert len(list((work / "features").rglob("*.parquet"))) == 3
    states = task_states(first)
    assert Counter(n.split(" ")[0] for n in states) >= Counter(
        {"align": 3, "features": 3, "fold": 3})

    second = run_benchmark(cfg)
    assert second.is_completed(), second.message
    res2 = second.result()
    assert res2["folds_trained"] == [] and res2["folds_cached"] == ["1", "2", "3"]
    assert res2["videos"] == {"cached": 3}
    states2 = task_states(second)
    expensive = {n: s for n, s in states2.items()
                 if n.split(" ")[0] in ("align", "features", "fold") or n.startswith("ingest")
                 or n.startswith("synthesize")}
    assert len(expensive) == 11 and set(expensive.values()) == {"Cached"}, states2
    # identical numbers from the cache
    m1 = json.loads((report / "metrics.json").read_text())
    assert res2["report"]["metrics"]["official"] == m1["official"]

    # a deleted output is noticed (the files are the only record): fold 2 is made again from
    # its trained network, which is still valid (no training)
    fold2 = work / "runs" / "tiny" / "folds" / "2"
    (fold2 / "fold.json").unlink()
    third = run_benchmark(cfg)
    assert third.is_completed(), third.message
    assert third.result()["folds_decoded"] == ["2"] and third.result()["folds_trained"] == []
    assert (fold2 / "fold.json").is_file()
    # ... and a deleted trained network is trained again
    trained = json.loads((fold2 / "fold.json").read_text())["trained_dir"]
    (Path(trained) / "train.json").unlink()
    (fold2 / "fold.json").unlink()
    fourth = run_benchmark(cfg)
    assert fourth.result()["folds_trained"] == ["2"]
    assert json.loads((report / "metrics.json").read_text())["official"] == m1["official"]


def test_failed_fold_is_named_and_rerun_alone(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(
        tmp_path, tiny_synth_root,
        "orchestration: {task_runner: threads, max_workers: 2, retries: 2, retry_delay_s: 0,\n"
        "  fault: {fail_folds: ['2'], kind: data, times: 1}}\n")
    first = run_benchmark(cfg)
    assert first.is_failed()
    assert "fold(s) failed: 2" in first.message
    assert f"`vrme run --config {cfg} --folds 2`" in first.message
    run = tmp_path / "work" / "runs" / "tiny"
    # the report still ran on the folds that finished, and says it is incomplete
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["missing_folds"] == ["2"]
    assert "injected data fault" in (run / "folds" / "2" / "failed.json").read_text()
    # a data error is not retried
    assert (run / ".faults" / "fold-2.attempts").read_text() == "1"
    assert task_states(first)["fold 2"] == "Failed"

    second = run_benchmark(cfg)
    assert second.is_completed(), second.message
    res = second.result()
    assert res["folds_trained"] == ["2"] and res["folds_cached"] == ["1", "3"]
    states = task_states(second)
    assert states["fold 1"] == states["fold 3"] == "Cached" and states["fold 2"] == "Completed"
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["complete"] is True and not (run / "folds" / "2" / "failed.json").exists()


def test_transient_fault_is_retried_within_the_run(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(
        tmp_path, tiny_synth_root,
        "orchestration: {task_runner: threads, retries: 2, retry_delay_s: 0,\n"
        "  fault: {fail_folds: ['3'], kind: transient, times: 1}}\n")
    state = run_benchmark(cfg, folds=["3"])
    assert state.is_completed(), state.message
    run = tmp_path / "work" / "runs" / "tiny"
    assert (run / ".faults" / "fold-3.attempts").read_text() == "2"  # failed once, then passed
    assert state.result()["folds_trained"] == ["3"]


def test_named_folds_only_and_refresh(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    assert run_benchmark(cfg).is_completed()
    again = run_benchmark(cfg, folds=["1"])
    assert again.is_completed(), again.message
    assert again.result()["folds_trained"] == ["1"]
    assert again.result()["folds_cached"] == []  # only the named fold is touched
    states = task_states(again)
    assert states["fold 1"] == "Completed" and "fold 2" not in states
    refreshed = run_benchmark(cfg, refresh=True)
    assert refreshed.is_completed()
    assert refreshed.result()["folds_trained"] == ["1", "2", "3"]
    assert refreshed.result()["videos"] == {"computed": 3}


def test_unknown_fold_is_a_clear_error(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    state = run_benchmark(cfg, folds=["99"])
    assert state.is_failed() and "unknown fold(s) ['99']" in state.message


def test_video_status_tables_are_written(prefect_harness, tiny_synth_root, tmp_path):
    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    assert run_benchmark(cfg).is_completed()
    run = tmp_path / "work" / "runs" / "tiny"
    status = pd.read_csv(run / "features_status.csv", dtype=str)
    assert set(status["status"]) <= {"computed", "cached"} and len(status) == 3
    assert (run / "run.json").is_file() and (run / "manifest.parquet").is_file()
    machine = json.loads((run / "run.json").read_text())["machine"]
    assert machine["cores"] >= 1 and machine["torch"].startswith("2.")
    assert machine["train_threads"] == 1 and machine["torch_cpu_capability"]


def test_final_model_predict_and_spot_flows(prefect_harness, tiny_synth_root, tmp_path):
    from flows.final import predict_flow, spot_flow, train_final_flow
    from vrme.inference.predict import check_megc_csv

    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    state = train_final_flow(config=str(cfg), return_state=True)
    assert state.is_completed(), state.message
    model_dir = Path(state.result()["model_dir"])
    assert (model_dir / "model.pt").is_file() and (model_dir / "model.json").is_file()
    again = train_final_flow(config=str(cfg), return_state=True)
    assert [s for n, s in task_states(again).items() if n.startswith("train-final")] == ["Cached"]

    out_csv = tmp_path / "submission.csv"
    pred = predict_flow(model=[str(model_dir)], root=str(tiny_synth_root / "data"),
                        out=str(out_csv), cache=str(tmp_path / "cache"), return_state=True)
    assert pred.is_completed(), pred.message
    check_megc_csv(out_csv)
    assert len(pred.result()["videos"]) == 3

    plot = tmp_path / "spot.png"
    spot = spot_flow(video=str(tiny_synth_root / "data" / "spNO.1" / "a" / "color"),
                     model=[str(model_dir)], plot=str(plot), cache=str(tmp_path / "cache"),
                     return_state=True)
    assert spot.is_completed(), spot.message
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(spot.result()["intervals"], list)


def test_configs_a_b_a_each_get_their_own_numbers(prefect_harness, tiny_synth_root, tmp_path):
    """Default, then decode.p=0.6, then the default again: every run reports exactly its own
    config's numbers; the decoding change trains nothing and the return to A reuses all."""
    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    metrics = tmp_path / "work" / "runs" / "tiny" / "report" / "metrics.json"
    a1 = run_benchmark(cfg)
    assert a1.is_completed(), a1.message
    ma = json.loads(metrics.read_text())
    b = run_benchmark(cfg, overrides=["decode.p=0.6"])
    assert b.is_completed(), b.message
    assert b.result()["folds_trained"] == [] and b.result()["folds_decoded"] == ["1", "2", "3"]
    mb = json.loads(metrics.read_text())
    a2 = run_benchmark(cfg)
    assert a2.is_completed(), a2.message
    assert a2.result()["folds_trained"] == [] and a2.result()["folds_decoded"] == ["1", "2", "3"]
    assert json.loads(metrics.read_text())["official"] == ma["official"]
    b2 = run_benchmark(cfg, overrides=["decode.p=0.6"])
    assert json.loads(metrics.read_text())["official"] == mb["official"]
    assert b2.result()["folds_trained"] == []
    assert mb["fold_config_hash"] != ma["fold_config_hash"]


def test_decode_code_version_redecodes_and_train_version_retrains(
        prefect_harness, tiny_synth_root, tmp_path, monkeypatch):
    import vrme.decoding.decode
    import vrme.features.flow
    import vrme.training.train

    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    assert run_benchmark(cfg).is_completed()
    decode_mod = vrme.decoding.decode
    monkeypatch.setattr(decode_mod, "DECODE_VERSION", decode_mod.DECODE_VERSION + 1)
    res = run_benchmark(cfg).result()
    assert res["folds_decoded"] == ["1", "2", "3"] and res["videos"] == {"cached": 3}
    monkeypatch.setattr(vrme.training.train, "TRAIN_VERSION", vrme.training.train.TRAIN_VERSION + 1)
    res = run_benchmark(cfg).result()
    assert res["folds_trained"] == ["1", "2", "3"] and res["videos"] == {"cached": 3}
    flow_mod = vrme.features.flow
    monkeypatch.setattr(flow_mod, "FEATURES_VERSION", flow_mod.FEATURES_VERSION + 1)
    res = run_benchmark(cfg).result()
    assert res["videos"] == {"computed": 3} and res["folds_trained"] == ["1", "2", "3"]


def test_unwritable_fold_folder_fails_only_that_fold(prefect_harness, tiny_synth_root, tmp_path):
    """A file where fold 2's folder should be (as root, permission bits do not stop writes):
    folds 1 and 3 finish, the report and artifacts are built from them, the run ends Failed
    naming fold 2, its reason and the command that reruns it."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    run = tmp_path / "work" / "runs" / "tiny"
    (run / "folds").mkdir(parents=True)
    (run / "folds" / "2").write_text("not a folder")
    state = run_benchmark(cfg)
    assert state.is_failed()
    assert "fold(s) failed: 2" in state.message and "WriteError" in state.message
    assert f"vrme run --config {cfg} --folds 2" in state.message
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["completed_folds"] == ["1", "3"] and metrics["missing_folds"] == ["2"]
    assert "cannot create folder" in metrics["missing_reasons"]["2"]
    failures = json.loads((run / "failures.json").read_text())
    assert "WriteError" in failures["folds"]["2"]["message"]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    by_type = {a.type: a for a in arts}
    assert by_type["progress"].data == 100.0
    table = by_type["table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["subject"]: r["status"] for r in rows} == {
        "1": "trained", "2": "failed", "3": "trained"}
    assert "Incomplete run" in by_type["markdown"].data
    # fixed: the rerun makes fold 2 only
    (run / "folds" / "2").unlink()
    again = run_benchmark(cfg, folds=["2"])
    assert again.is_completed(), again.message
    assert again.result()["folds_trained"] == ["2"]
    assert "2" not in json.loads((run / "failures.json").read_text())["folds"]


def test_sweep_runs_children_and_a_decode_only_setting_trains_nothing(prefect_harness,
                                                                      tiny_synth_root, tmp_path):
    import pandas as pd
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    from flows.sweep import sweep_flow
    from vrme.report.plots import png_size

    cfg = write_config(tmp_path, tiny_synth_root, "orchestration: {retries: 0}\n")
    state = sweep_flow(config=str(cfg), grid=["decode.p=0.5,0.6"], control=True,
                       return_state=True)
    assert state.is_completed(), state.message
    rows = state.result()["rows"]
    assert [r["setting"] for r in rows] == ["decode.p=0.5", "decode.p=0.6",
                                            "train.shuffle_labels=true"]
    assert rows[0]["folds_trained"] == 3
    assert rows[1]["folds_trained"] == 0 and rows[1]["folds_decoded"] == 3  # decoding only
    assert rows[2]["folds_trained"] == 3  # the control trains its own models
    sweep_dir = tmp_path / "work" / "runs" / "tiny-sweep"
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert list(table["setting"]) == [r["setting"] for r in rows]
    assert png_size((sweep_dir / "plots" / "sweep.png").read_bytes()) == (1000, 420)
    assert "decode.p=0.6" in (sweep_dir / "sweep.md").read_text()
    for r in rows:
        assert (tmp_path / "work" / "runs" / r["run"] / "report" / "metrics.json").is_file()
    # the settings are child flow runs of the sweep's run
    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(state.state_details.flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id={"any_": [parent.id]}))
    assert sum(1 for t in task_runs if t.name.startswith("vrme-benchmark")) == 3


# -- the whole benchmark on a generated CAS(ME)^2 dataset -------------------------------------

def test_benchmark_flow_on_a_generated_casme2_dataset(prefect_harness, tmp_path):
    """The whole benchmark on a CAS(ME)^2-layout dataset that the config's synth: section
    generates (the real folder layout and headerless workbook, read by the real adapter)."""
    synth = {**TINY_SYNTH, "seconds": 8, "macros_per_video": 1}
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(
        tmp_path / "casme2", tmp_path / "work",
        "orchestration: {task_runner: threads, max_workers: 2, retries: 0}\n",
        layout="casme2", synth=synth))
    state = run_benchmark(cfg)
    assert state.is_completed(), state.message
    res = state.result()
    assert res["folds_trained"] == ["s15", "s16", "s17"] and not res["folds_failed"]
    assert (tmp_path / "casme2" / "rawpic" / "s17").is_dir()
    ingest_dir = tmp_path / "work" / "ingest"
    labels = pd.read_parquet(ingest_dir / "labels.parquet")
    assert set(labels["type"]) == {"micro", "macro"} and set(labels["subject"]) == {
        "s15", "s16", "s17"}
    assert pd.read_csv(ingest_dir / "skipped.csv").empty
    report = tmp_path / "work" / "runs" / "tiny" / "report"
    assert (report / "metrics.json").is_file() and (report / "report.html").is_file()
