"""RLlib through the platform: DQN (new API stack) on CartPole with one env runner in the
trial's own bundles, RLlib checkpoints kept as artifacts and inside the trial's checkpoint,
a killed trial resumed from that checkpoint, and env steps per second reported live."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from lookinside import results

pytest.importorskip("ray.rllib")
HERE = pathlib.Path(__file__).parent


def test_dqn_trial_is_killed_and_resumes_from_its_rllib_checkpoint(tmp_path):
    root = tmp_path / "results"
    env = {**os.environ, "LOOKINSIDE_STUDIES": "rllib_toy",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "rllib_toy", "--preset", "smoke",
                          "--results", str(root), "--set", "crash_once_after=800",
                          "--set", f"marker_dir={tmp_path / 'markers'}", "--max-failures", "1"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    trials = results.load(str(root), "rllib_toy", "trials")
    assert trials["status"].to_pylist() == ["TERMINATED"] and trials["attempt"].to_pylist() == [2]

    training = results.load(str(root), "rllib_toy", "training").sort_by("env_steps").to_pylist()
    steps = [r["env_steps"] for r in training]
    assert steps == sorted(set(steps)) and steps[-1] >= 2000            # each iteration once
    # The first attempt died after its checkpoint at 800 env steps; the retry restored RLlib's
    # state there, so its lifetime counter went on from 800 (not from 0).
    assert {r["resumed_from"] for r in training} == {0, 800}
    after = [r["env_steps"] for r in training if r["resumed_from"] == 800]
    assert max(r["env_steps"] for r in training if r["resumed_from"] == 0) == 800
    assert 800 < min(after) <= 1000
    assert all(r["env_steps_per_second"] > 0 for r in training)

    checkpoints = results.load(str(root), "rllib_toy", "checkpoints").sort_by("env_steps").to_pylist()
    assert [c["env_steps"] for c in checkpoints] == [400, 800, 1200, 1600, 2000]
    (trial_id,) = trials["trial_id"].to_pylist()
    kept = sorted(p.name for p in next((root / "rllib_toy").glob("20*/artifacts")).joinpath(trial_id).iterdir())
    assert kept == [f"checkpoint-{s:08d}" for s in (400, 800, 1200, 1600, 2000)]   # no leftovers
    for c in checkpoints:
        assert pathlib.Path(c["uri"]).is_dir() and any(pathlib.Path(c["uri"]).iterdir())

    # Live metrics: on the progress line, and in Tune's results.
    assert "env_steps_per_second" in out.stderr and "episode_return_mean" in out.stderr
    result_lines = next((root / "rllib_toy").glob("20*/pack00000/result.json")).read_text().splitlines()
    live = [json.loads(line)["live"] for line in result_lines if '"live"' in line]
    assert live and live[-1]["env_steps"] >= 2000
