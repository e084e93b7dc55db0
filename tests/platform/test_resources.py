"""Per-trial resources: a trial that starts Ray tasks asks for bundles for them, and finishes
on the embedded local Ray and on a two-node cluster, whose CPUs size the packs."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from lookinside import planning, results

HERE = pathlib.Path(__file__).parent


def run(root, *args, env=None):
    env = {**os.environ, **(env or {}), "LOOKINSIDE_STUDIES": "tasks_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "tasks_study", "--preset", "smoke",
                           "--results", str(root), "--quiet", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def check(root, packs):
    trials = results.load(str(root), "tasks_study", "trials")
    assert sorted(trials["status"].to_pylist()) == ["TERMINATED"] * 6
    assert all(len(n) == 56 for n in trials["node"].to_pylist())          # Ray node ids (hex)
    tasks = results.load(str(root), "tasks_study", "tasks").to_pylist()
    assert len(tasks) == 12 and all(t["same_placement_group"] for t in tasks)
    assert sorted(t["value"] for t in tasks) == sorted((s + k) ** 2 for s in range(6) for k in range(2))
    (sweep_dir,) = [p for p in (root / "tasks_study").iterdir() if p.name[:2] == "20"]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(manifest["packs"]) == packs
    assert manifest["bundles"] == [[{"CPU": 1.0}, {"CPU": 1.0}]] * packs
    return trials


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a trial of this study needs 2 CPUs")
def test_tasks_run_in_the_trials_bundles_on_the_local_ray(tmp_path):
    out = run(tmp_path / "r")
    assert out.returncode == 0, out.stderr
    check(tmp_path / "r", packs=1)           # 2 CPUs here: one trial of 2 CPUs at a time, one pack


def test_two_node_cluster_runs_them_and_sizes_packs_from_its_cpus(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    # The nodes' workers import the study from the tests folder.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        out = run(tmp_path / "r", "--address", cluster.address)
        assert out.returncode == 0, out.stderr
        # 4 CPUs in the cluster: two trials of 2 CPUs at once, so two packs of three.
        trials = check(tmp_path / "r", packs=2)
        assert set(trials["node"].to_pylist()) <= {node.node_id for node in cluster.list_all_nodes()}
    finally:
        cluster.shutdown()


def test_slots_count_whole_trials():
    assert planning.slots([{"CPU": 1}, {"CPU": 1}], {"CPU": 5, "GPU": 0}) == 2
    assert planning.slots([{"CPU": 1, "GPU": 0.25}], {"CPU": 8, "GPU": 1}) == 4
    assert planning.slots([{"CPU": 3}], {"CPU": 2}) == 0
