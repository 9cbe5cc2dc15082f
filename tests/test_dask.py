"""Scale-out: the benchmark's feature and fold tasks on a real Dask LocalCluster (2 worker
processes) reached through its scheduler address, as a lab would point vrme at its cluster."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def test_benchmark_on_dask_local_cluster(prefect_harness, tiny_synth_root, tmp_path, monkeypatch):
    from distributed import LocalCluster

    # Worker processes inherit the environment: they report to the same Prefect server.
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(tiny_config_text(
            tiny_synth_root, tmp_path / "work",
            f"orchestration: {{task_runner: dask, dask_address: '{cluster.scheduler_address}', "
            "retries: 0}\n"))
        from flows.benchmark import benchmark_flow

        state = benchmark_flow(config=str(cfg), return_state=True)
        assert state.is_completed(), state.message
        res = state.result()
        assert res["folds_trained"] == ["1", "2", "3"] and res["videos"] == {"computed": 3}
        # the work really went through the cluster: its scheduler ran the align, features and
        # fold tasks on its two workers
        sched = cluster.scheduler
        ran = {name: tp.state_counts.get("forgotten", 0) + tp.state_counts.get("memory", 0)
               for name, tp in sched.task_prefixes.items()}
        assert ran.get("align_task", 0) >= 3 and ran.get("features_task", 0) >= 3, ran
        assert ran.get("train_fold_task", 0) >= 3, ran
        workers = {ws.address: ws for ws in sched.workers.values()}
        assert len(workers) == 2
        # the same numbers as the threads runner on the same config (train.threads fixed)
        import json

        from flows.benchmark import benchmark_flow as flow_again

        ref_cfg = tmp_path / "threads.yaml"
        ref_cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "ref",
                                            "orchestration: {task_runner: threads, retries: 0}\n"))
        assert flow_again(config=str(ref_cfg), return_state=True).is_completed()
        ours = json.loads((tmp_path / "work/runs/tiny/report/metrics.json").read_text())
        ref = json.loads((tmp_path / "ref/runs/threads/report/metrics.json").read_text())
        assert ours["official"] == ref["official"] and ours["reference"] == ref["reference"]
