"""dqn_samdp end to end: the smoke sweep trains Breakout with RLlib, checkpoints, records two
games mid-way through which its first attempt is killed, and resumes; a second sweep records
again from the first one's kept checkpoint. Then the tables, the recorder's Q-values against
RLlib's module, and the one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lookinside import results

pytest.importorskip("ray.rllib")
pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from lookinside.studies import dqn_samdp  # noqa: E402
from lookinside.studies.dqn_samdp import atari, module, trial  # noqa: E402

STUDY = "dqn_samdp"


def run(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "lookinside.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def sweep_ids(root) -> list[str]:
    return sorted(p.name for p in (pathlib.Path(root) / STUDY).glob("20*"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset, its first attempt killed (os._exit) at its first batch of recorded rows (the
    recorder hands rows over 256 at a time, or all of a recording that is shorter; the hook fires once
    64 are out, since two short games under a network whose training is not bit-reproducible can make
    fewer than 256 rows, and then no kill happened: a flaky attempt count, seen once in CI); then a
    recording-only sweep from its kept checkpoint, and SAMDP builds from its transitions."""
    tmp = tmp_path_factory.mktemp("dqn")
    root = str(tmp / "results")
    out = run("run", STUDY, "--preset", "smoke", "--results", root, "--max-failures", "1",
              "--set", "crash_after_rows=64", "--set", f"marker_dir={tmp / 'markers'}")
    assert out.returncode == 0, out.stderr[-3000:]
    (trained,) = sweep_ids(root)
    out2 = run("run", STUDY, "--preset", "smoke", "--results", root, "--set", "stage=record",
               "--set", f"source_sweep={trained}")
    assert out2.returncode == 0, out2.stderr[-3000:]
    (recorded,) = set(sweep_ids(root)) - {trained}
    out3 = run("run", STUDY, "--preset", "samdp_smoke", "--results", root, "--set", f"source_sweep={trained}")
    assert out3.returncode == 0, out3.stderr[-3000:]
    (built,) = set(sweep_ids(root)) - {trained, recorded}
    return {"root": root, "trained": trained, "recorded": recorded, "built": built, "stderr": out.stderr}


def load(smoke, table, sweep="trained"):
    return results.load(smoke["root"], STUDY, table, sweep_id=smoke[sweep])


def test_smoke_sweep_writes_its_tables_with_their_schemas(smoke):
    for table in ("training", "checkpoints", "transitions"):
        schema = dqn_samdp.TABLES[table]
        got = load(smoke, table).drop_columns(["sweep_id"])
        assert got.schema.equals(schema), table
    trials = load(smoke, "trials").to_pylist()
    assert [(t["status"], t["attempt"]) for t in trials] == [("TERMINATED", 2)]   # killed once, resumed
    training = load(smoke, "training").sort_by("env_steps").to_pylist()
    steps = [r["env_steps"] for r in training]
    assert steps == sorted(set(steps)) and steps[-1] >= 3000 and all(r["env_steps_per_second"] > 0 for r in training)
    (ckpt,) = load(smoke, "checkpoints").to_pylist()
    assert ckpt["env_steps"] == steps[-1] and pathlib.Path(ckpt["uri"], *trial._MODULE_PATH).is_dir()
    # Live metrics on the progress line.
    for metric in ("env_steps", "episode_return_mean", "env_steps_per_second"):
        assert metric in smoke["stderr"]


def test_killed_recording_resumes_without_losing_or_duplicating_a_row(smoke):
    """The first attempt died at its first batch of recorded rows, after the checkpoint at 3072 steps;
    the retry recorded again from that checkpoint. Every step of both games is there once,
    and the rows equal those recorded afresh from the kept checkpoint by another sweep."""
    rows = load(smoke, "transitions").to_pandas()
    assert not rows.duplicated(["trajectory", "step"]).any()
    assert sorted(set(rows["trajectory"])) == [0, 1]
    for _, game in rows.sort_values("step").groupby("trajectory"):
        assert game["step"].tolist() == list(range(len(game)))
        # Each game is whole: cut at record_max_steps (300), or over (no lives left).
        last = game.iloc[-1]
        assert len(game) == 300 or (last["terminated"] and last["lives"] == 0)
    again = load(smoke, "transitions", "recorded").to_pandas()
    (ckpt,) = load(smoke, "checkpoints").to_pylist()
    assert set(again["source_trial_id"]) == set(rows["trial_id"]) == set(rows["source_trial_id"])
    assert set(again["checkpoint_step"]) == set(rows["checkpoint_step"]) == {ckpt["env_steps"]}
    key = ["trajectory", "step"]
    a, b = rows.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    for column in ("action", "reward", "terminated", "lives", "value", "ball_x", "paddle_x", "bricks_remaining"):
        assert a[column].equals(b[column]), column
    np.testing.assert_array_equal(np.stack(a["embedding"]), np.stack(b["embedding"]))


def test_transitions_rows_describe_the_games(smoke):
    rows = load(smoke, "transitions").to_pandas()
    q = np.stack(rows["q_values"])
    assert q.shape == (len(rows), 4)                              # Breakout's 4 actions
    np.testing.assert_array_equal(rows["value"], q.max(axis=1))
    assert np.stack(rows["embedding"]).shape == (len(rows), 512)
    assert (np.stack(rows["embedding"]) < 0).any()               # before the ReLU
    assert set(rows["game"]) == {"Breakout"} and rows["action"].between(0, 3).all()
    assert rows["screen"].isna().all()                            # record_screens is off
    # Lives only fall within a game (Breakout starts with 5); each lost life is a terminated row.
    for _, game in rows.sort_values("step").groupby("trajectory"):
        lives = game["lives"].to_numpy()
        assert (np.diff(lives) <= 0).all()
        assert game["terminated"].sum() == 5 - lives[-1]
        # The RAM features are read before each action: a brick hit (reward > 0) shows as
        # fewer bricks in the next row.
        bricks = game["bricks_remaining"].to_numpy().astype(int)
        assert bricks[0] == 108
        np.testing.assert_array_equal(bricks[:-1] - bricks[1:] > 0, game["reward"].to_numpy()[:-1] > 0)
    assert rows["paddle_x"].notna().all() and rows["ball_x"].isna().any() == rows["ball_y"].isna().any()


def _observations(n=64, seed=3):
    """n frame stacks (n, 84, 84, 4) uint8 from random Breakout play, as the recorder builds them."""
    env = atari.make("Breakout")
    obs, _ = env.reset(seed=seed)
    stack = np.zeros((84, 84, 4), np.uint8)
    stack[..., -1] = obs[..., 0]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(stack.copy())
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            obs, _ = env.reset()
            stack[:] = 0
        stack = np.concatenate([stack[..., 1:], obs], axis=-1)
    return np.stack(out)


def test_recorder_q_values_equal_rllibs_and_the_embedding_gives_them(smoke):
    import torch

    (ckpt,) = load(smoke, "checkpoints").to_pylist()
    m = trial.load_module(ckpt["uri"])
    obs = torch.from_numpy(_observations())
    q, embedding = module.q_and_embedding(m, obs)
    with torch.no_grad():
        rllib_q = m.compute_q_values({"obs": obs})["qf_preds"]
    torch.testing.assert_close(q, rllib_q, rtol=0, atol=1e-6)
    # The embedding is the 512 layer's pre-ReLU output: ReLU then the last Linear give Q.
    last = m.af.net.mlp[2]
    with torch.no_grad():
        from_embedding = torch.relu(embedding) @ last.weight.T + last.bias
    torch.testing.assert_close(from_embedding, rllib_q, rtol=0, atol=1e-5)
    assert embedding.shape == (64, 512) and (embedding < 0).any()
    # RLlib's own greedy action (forward_inference) is the argmax of those Q-values.
    with torch.no_grad():
        actions = m.forward_inference({"obs": obs})["actions"]
    assert torch.equal(actions.long(), rllib_q.argmax(dim=1))


def test_report_draws_the_training_curves(smoke, tmp_path):
    out = run("report", STUDY, "--results", smoke["root"], "--out", str(tmp_path), "--sweep", smoke["trained"])
    assert out.returncode == 0, out.stderr
    assert (tmp_path / smoke["trained"] / "training.png").stat().st_size > 10_000
    assert "Breakout: " in (tmp_path / smoke["trained"] / "index.html").read_text()


def test_unknown_game_is_one_line_naming_the_valid_games(tmp_path):
    out = run("run", STUDY, "--preset", "smoke", "--results", str(tmp_path / "r"), "--set", "game=MsPacmann")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "MsPacmann" in out.stderr and "Breakout" in out.stderr and "Pacman" in out.stderr
    assert not (tmp_path / "r").exists()


def test_missing_source_sweep_or_checkpoint_is_one_line(smoke, tmp_path):
    out = run("run", STUDY, "--preset", "smoke", "--results", smoke["root"], "--set", "stage=record",
              "--set", "source_sweep=20990101-000000-beef")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "20990101" in out.stderr
    before = sweep_ids(smoke["root"])
    out = run("run", STUDY, "--preset", "smoke", "--results", smoke["root"], "--set", "stage=record",
              "--set", f"source_sweep={smoke['trained']}", "--set", "source_checkpoint=123")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "123" in out.stderr
    assert sweep_ids(smoke["root"]) == before                     # nothing written


def test_trial_resources_give_the_learner_the_gpu_fraction():
    from lookinside.planning import Resources
    from lookinside.studies.dqn_samdp.config import DQNSamdpConfig

    config = DQNSamdpConfig(num_env_runners=3, rollout_fragment_length=64)
    bundles = trial.resources(config, Resources(cpus_per_trial=1, gpus_per_trial=0.25))
    assert bundles[0].get("GPU") == 0.25 and bundles[1:] == [{"CPU": 1.0}] * 3


@pytest.mark.parametrize("runners,envs,rollout,per_update", [(1, 1, 64, 4), (3, 2, 32, 4), (4, 8, 4, 8)])
def test_replay_ratio_is_one_update_per_env_steps_per_update(runners, envs, rollout, per_update):
    """RLlib's own round-robin weights: each training step samples rollout x envs x runners
    steps and makes that / env_steps_per_update updates."""
    from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights

    from lookinside.studies.dqn_samdp.config import DQNSamdpConfig

    config = DQNSamdpConfig(num_env_runners=runners, envs_per_runner=envs, rollout_fragment_length=rollout,
                            env_steps_per_update=per_update)
    assert calculate_rr_weights(trial.dqn_config(config)) == [1, rollout * envs * runners // per_update]


def test_manifest_records_the_trial_bundles(smoke):
    manifest = json.loads((pathlib.Path(smoke["root"]) / STUDY / smoke["trained"] / "sweep.json").read_text())
    assert manifest["bundles"] == [[{"CPU": 1.0}, {"CPU": 1.0}]]   # the learner's, one env runner's


def test_samdp_builds_from_the_recorded_transitions(smoke):
    """samdp_smoke: k 4 and 6 x both methods, each build's map steps on two workers (the trial
    process and a task in its second bundle). Each build gives what build_samdp gives in one
    process on the same rows."""
    from lookinside.studies.dqn_samdp import samdp

    for table in ("embedding_2d", "samdp_clusters", "samdp_transitions", "samdp_scores"):
        got = load(smoke, table, "built").drop_columns(["sweep_id"])
        assert got.schema.equals(dqn_samdp.TABLES[table]), table
    trials = load(smoke, "trials", "built").to_pandas()
    assert sorted(zip(trials["k"], trials["method"])) == [(4, "kmeans"), (4, "spatio_temporal"),
                                                           (6, "kmeans"), (6, "spatio_temporal")]
    source = load(smoke, "transitions")
    points = load(smoke, "embedding_2d", "built").to_pandas()
    clusters = load(smoke, "samdp_clusters", "built").to_pandas()
    edges = load(smoke, "samdp_transitions", "built").to_pandas()
    for t in trials.itertuples():
        mine = points[points["trial_id"] == t.trial_id].sort_values(["trajectory", "step"])
        assert len(mine) == source.num_rows and mine["cluster"].between(0, t.k - 1).all()
        assert clusters[clusters["trial_id"] == t.trial_id]["size"].sum() == source.num_rows
        p = edges[edges["trial_id"] == t.trial_id].groupby("source")["probability"].sum()
        assert (((p - 1).abs() < 1e-9) | (p == 0)).all()          # each row of P: 1, or absorbing
        alone = samdp.build_samdp(source, t.k, t.method, seed=int(t.seed), fit_sample=2000, shards=4)
        rows = source.to_pandas()[["trajectory", "step"]].assign(cluster=alone.labels)
        rows = rows.sort_values(["trajectory", "step"])
        np.testing.assert_array_equal(mine["cluster"].to_numpy(), rows["cluster"].to_numpy())
    scores = load(smoke, "samdp_scores", "built").to_pandas()
    assert len(scores) == 4 and scores[["vmse", "entropy", "inertia", "intensity"]].notna().all().all()


def test_report_of_a_build_draws_the_map_graph_and_scores(smoke, tmp_path):
    out = run("report", STUDY, "--results", smoke["root"], "--out", str(tmp_path), "--sweep", smoke["built"])
    assert out.returncode == 0, out.stderr
    for name in ("samdp_map.png", "samdp_graph.png", "samdp_scores.png"):
        assert (tmp_path / smoke["built"] / name).stat().st_size > 10_000, name


def test_build_without_transitions_is_one_line(smoke):
    out = run("run", STUDY, "--preset", "samdp_smoke", "--results", smoke["root"],
              "--set", f"source_sweep={smoke['trained']}", "--set", "source_checkpoint=5")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "transitions" in out.stderr
    out = run("run", STUDY, "--preset", "samdp_smoke", "--results", smoke["root"])
    assert out.returncode == 2 and "source_sweep" in out.stderr
