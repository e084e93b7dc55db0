"""rllib_toy: RLlib DQN (new API stack) on CartPole-v1, one env runner, inside a Tune trial.

A toy that exercises the platform's RLlib path: a trial whose placement group is the DQN's
own (a bundle for the trial process, which holds the learner, and one per env runner);
RLlib checkpoints inside platform checkpoints; a retried trial that continues from the
RLlib state (its lifetime env-step counter goes on, not from 0); kept RLlib checkpoints as
artifacts. `crash_once_after` makes the first attempt kill its own process once, after its
first checkpoint, so that a test can watch the retry resume.

Draft for lookinside/studies/rllib_toy/__init__.py.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time

import pyarrow as pa

from lookinside.config import param
from lookinside.study import Preset, Study

# Result keys of Algorithm.train() (ray.rllib.utils.metrics, spelled out so that the driver
# does not import RLlib to load this module).
_ENV_RUNNERS = "env_runners"
_LIFETIME = "num_env_steps_sampled_lifetime"
_RETURN_MEAN = "episode_return_mean"


@dataclasses.dataclass(frozen=True)
class RLlibToyConfig:
    env_steps: int = param(2000, "env steps to train in all (RLlib's lifetime counter)", "lookinside",
                           low=1, high=10**9)
    checkpoint_every: int = param(
        400, "env steps between checkpoints (an RLlib checkpoint in the trial's checkpoint, and a "
        "kept copy as an artifact)", "lookinside", low=1, high=10**9)
    lr: float = param(1e-3, "Adam learning rate", "RLlib DQN default 5e-4", low=1e-7, high=1.0)
    seed: int = param(0, "seed of RLlib (env, exploration, network initialisation)", "lookinside",
                      low=0, high=2**31 - 1)
    steps_per_iteration: int = param(
        200, "env steps sampled per Algorithm.train() call (min_sample_timesteps_per_iteration); "
        "one row of `training` each", "RLlib default 1000", low=1, high=10**6)
    learning_starts: int = param(200, "env steps sampled before the first update",
                                 "RLlib DQN default 1000", low=0, high=10**9)
    replay_capacity: int = param(5000, "prioritized replay buffer capacity (env steps)",
                                 "RLlib DQN default 50000", low=32, high=10**7)
    hidden: int = param(32, "units of the encoder's and of the Q head's one hidden layer",
                        "RLlib default [256, 256] and [256]", low=1, high=4096)
    crash_once_after: int = param(
        0, "test hook: on a trial's first attempt only, once a checkpoint is saved and this many "
        "env steps have passed, the trial process exits with os._exit(1); 0 never", "lookinside",
        low=0, high=10**9)
    marker_dir: str | None = param(
        None, "test hook: a folder where each trial leaves a file at its first attempt "
        "(needed by crash_once_after)", "lookinside")


TABLES = {
    # One row per Algorithm.train() call; resumed_from is the lifetime env steps at which the
    # attempt that trained it started (0 for the first attempt).
    "training": pa.schema([
        ("trial_id", pa.string()), ("env_steps", pa.int64()), ("episode_return_mean", pa.float64()),
        ("env_steps_per_second", pa.float64()), ("resumed_from", pa.int64())]),
    # One row per kept RLlib checkpoint: Algorithm.from_checkpoint(uri) loads it.
    "checkpoints": pa.schema([
        ("trial_id", pa.string()), ("env_steps", pa.int64()), ("uri", pa.string())]),
}

PRESETS = {
    "smoke": Preset(
        "CI-sized: 2000 env steps of CartPole, a checkpoint every 400 (about 10 s of training "
        "after a few seconds of start-up on 2 cores)",
        {"env_steps": 2000, "checkpoint_every": 400},
        {"seed": [0]}),
}


def _quiet_rllib() -> None:
    """RLlib warns on every build that DQN runs on the new API stack, and that its own
    modules use a deprecated RLModule(config=...); neither is ours to fix. Importing RLlib
    resets its logger to WARNING, so this imports it first."""
    import ray.rllib  # noqa: F401

    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    logging.getLogger("ray._common.deprecation").setLevel(logging.ERROR)


def dqn_config(config: RLlibToyConfig, gpus: float = 0.0):
    """The RLlib DQNConfig of a trial: one env runner with one env, the learner in the trial
    process (num_learners=0), on a GPU when `gpus` > 0."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return (
        DQNConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=1, num_envs_per_env_runner=1, rollout_fragment_length=50)
        .learners(num_learners=0, num_gpus_per_learner=gpus)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[config.hidden],
                                                   head_fcnet_hiddens=[config.hidden]))
        .training(lr=config.lr, train_batch_size=32,
                  num_steps_sampled_before_learning_starts=config.learning_starts,
                  target_network_update_freq=200,
                  replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer",
                                        "capacity": config.replay_capacity, "alpha": 0.6, "beta": 0.4})
        .reporting(min_sample_timesteps_per_iteration=config.steps_per_iteration)
        # A failed env runner fails the trial, which Tune retries from its checkpoint (RLlib's
        # own actor restarts would also print a core_worker error at every build).
        .fault_tolerance(restart_failed_env_runners=False)
        # log_sys_usage off: without gputil it warns "Install gputil" at every build.
        .debugging(seed=config.seed, log_level="ERROR", log_sys_usage=False)
    )


def resources(config: RLlibToyConfig, options) -> list[dict]:
    """The DQN's own placement group: bundle 0 for the trial process and its learner, then
    one per env runner (RLlib places env runner i in bundle i; a single bundle fails with
    'placement group bundle index 1 is invalid')."""
    _quiet_rllib()
    c = dqn_config(config, gpus=options.gpus_per_trial)
    return [dict(b) for b in c.algo_class.default_resource_request(c).bundles]


def _first_attempt(config: RLlibToyConfig, trial_id: str) -> bool:
    """True on a trial's first attempt (no marker yet); leaves the marker."""
    if config.marker_dir is None:
        return False
    os.makedirs(config.marker_dir, exist_ok=True)
    marker = os.path.join(config.marker_dir, f"{trial_id}.attempted")
    first = not os.path.exists(marker)
    open(marker, "a").close()
    return first


def train(configs: list[RLlibToyConfig], session) -> None:
    if len(configs) != 1:
        raise ValueError(f"rllib_toy trains one member per trial, got {len(configs)}")
    config = configs[0]
    _quiet_rllib()
    crash_armed = config.crash_once_after > 0 and _first_attempt(config, session.trial_ids[0])
    algo = dqn_config(config, gpus=1.0 if session.device == "cuda" else 0.0).build_algo()
    try:
        if session.state is not None:
            algo.restore_from_path(os.path.join(session.state_dir, "algo"))
        # RLlib's own lifetime counter: 0 on a fresh build, the checkpoint's after a restore.
        resumed_from = int(algo.metrics.peek((_ENV_RUNNERS, _LIFETIME), default=0))
        steps, saved = resumed_from, False
        while steps < config.env_steps:
            start = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - start
            before, steps = steps, int(result[_LIFETIME])
            # No episode may end within an iteration (CartPole lasts up to 500 steps).
            ret = float(result[_ENV_RUNNERS].get(_RETURN_MEAN, math.nan))
            rate = (steps - before) / seconds
            session.report(env_steps=steps, episode_return_mean=ret, env_steps_per_second=rate)
            session.add_rows("training", 0, {
                "env_steps": [steps], "episode_return_mean": [ret],
                "env_steps_per_second": [rate], "resumed_from": [resumed_from]})
            if steps // config.checkpoint_every > before // config.checkpoint_every:
                # Kept copy and its row first, so that the checkpoint below holds the row.
                name = f"checkpoint-{steps:08d}"
                with session.artifact_dir(name) as path:
                    algo.save_to_path(path)
                session.add_rows("checkpoints", 0, {"env_steps": [steps], "uri": [session.artifact_uri(name)]})
                saved = session.checkpoint(
                    lambda steps=steps: {"env_steps": steps}, force=True,
                    files=lambda d: algo.save_to_path(os.path.join(d, "algo"))) or saved
            if crash_armed and saved and steps >= config.crash_once_after:
                os._exit(1)   # test hook: die like a lost node, without cleanup
    finally:
        algo.stop()


STUDY = Study(
    name="rllib_toy",
    title="RLlib DQN on CartPole-v1 (platform toy: resources, RLlib checkpoints, retries)",
    config=RLlibToyConfig,
    presets=PRESETS,
    train=train,
    tables=TABLES,
    figures=lambda tables, out: [],
    resources=resources,
)
