"""A dqn_samdp trial: trains one DQN with RLlib and records it, or records another sweep's.

Training: RLlib's DQN (new API stack) with the learner in the trial process and
`num_env_runners` env runner actors in the trial's own placement group (Study.resources).
Every `checkpoint_every` agent steps the algorithm is saved as a kept artifact (a row of
`checkpoints`) and as the trial's checkpoint; a retried trial restores the last one and
RLlib's lifetime step counter goes on from there (the replay memory is not saved: it
refills for `learning_starts` steps). At each step of `record_at` the trial records games
with the module it has (recorder.py) between two checkpoints, so a retry never keeps half
a recording.

Recording only (source_sweep set, env_steps 0): reads the source sweep's `checkpoints`
and `trials` tables, loads each chosen checkpoint's RLModule, and records it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time

from lookinside.errors import UserError

STUDY = "dqn_samdp"
_LIFETIME = "num_env_steps_sampled_lifetime"
_RUNNERS = "env_runners"
_MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")


def quiet_rllib() -> None:
    """RLlib warns at every build about the new API stack and its own deprecated calls;
    importing it resets its logger, so import first."""
    import ray.rllib  # noqa: F401

    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    logging.getLogger("ray._common.deprecation").setLevel(logging.ERROR)


def _callbacks():
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class GameScores(RLlibCallback):
        """Logs each finished game's unclipped score over all its lives (RLlib's own
        episode return is per life and clipped when the env trains that way)."""

        def on_episode_end(self, *, episode, metrics_logger=None, **kwargs):
            info = episode.get_infos(-1)
            if "game_return" in info:   # reduced over each training iteration
                metrics_logger.log_value("game_return_sum", info["game_return"], reduce="sum")
                metrics_logger.log_value("game_return_max", info["game_return"], reduce="max")
                metrics_logger.log_value("games", 1, reduce="sum")

    return GameScores


def training_intensity(config) -> float:
    """RLlib's training_intensity for one update of batch_size per env_steps_per_update steps.
    RLlib 2.60 (dqn.calculate_rr_weights) divides by num_env_runners + 1 runners, counting a
    local runner that does not sample when remote ones exist: hence the N / (N + 1)."""
    n = config.num_env_runners
    return config.batch_size / config.env_steps_per_update * n / (n + 1)


def dqn_config(config, gpus: float = 0.0):
    """The RLlib DQNConfig of a trial. The replay ratio is exact: each training step samples
    rollout_fragment_length x envs x runners steps and makes that over env_steps_per_update
    updates (training_intensity / native ratio)."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.connectors.common.frame_stacking import FrameStacking
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from lookinside.studies.dqn_samdp import atari, module, replay

    k = config.frame_stack
    env_config = {"game": config.game, "frame_skip": config.frame_skip, "noop_max": config.noop_max,
                  "terminal_on_life_loss": config.terminal_on_life_loss, "clip_rewards": config.clip_rewards,
                  "max_frames": config.max_frames}
    return (
        DQNConfig()
        .environment(atari.RLlibAtari, env_config=env_config)
        .env_runners(num_env_runners=config.num_env_runners, num_envs_per_env_runner=config.envs_per_runner,
                     rollout_fragment_length=config.rollout_fragment_length,
                     env_to_module_connector=lambda env=None, spaces=None, device=None: FrameStacking(num_frames=k),
                     episode_lookback_horizon=k)
        .learners(num_learners=0, num_gpus_per_learner=gpus)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=module.NatureDQNModule),
                   model_config=DefaultModelConfig(conv_filters=module.NATURE_CONV, conv_activation="relu",
                                                   head_fcnet_hiddens=[module.EMBEDDING],
                                                   head_fcnet_activation="relu"))
        .training(lr=config.lr, gamma=config.gamma, train_batch_size=config.batch_size, grad_clip=config.grad_clip,
                  dueling=config.dueling, double_q=config.double_q, n_step=config.n_step,
                  training_intensity=training_intensity(config),
                  num_steps_sampled_before_learning_starts=config.learning_starts,
                  target_network_update_freq=config.target_update,
                  epsilon=[(0, config.epsilon_start), (config.epsilon_steps, config.epsilon_final)],
                  replay_buffer_config={"type": f"{replay.__name__}.FrameStackEpisodeReplayBuffer",
                                        "capacity": config.replay_capacity, "num_frames": k})
        .reporting(min_sample_timesteps_per_iteration=config.steps_per_iteration)
        .callbacks(_callbacks())
        # A failed env runner fails the trial, which Tune retries from its checkpoint.
        .fault_tolerance(restart_failed_env_runners=False)
        .debugging(seed=config.seed, log_level="ERROR", log_sys_usage=False)
    )


def resources(config, options) -> list[dict]:
    """The DQN's own placement group: bundle 0 for the trial process and its learner (with
    --gpus-per-trial), then one CPU per env runner (RLlib places runner i in bundle i)."""
    own = {"CPU": options.cpus_per_trial, **({"GPU": options.gpus_per_trial} if options.gpus_per_trial else {})}
    if config.stage == "record":
        return [own]
    if config.stage == "build":   # the trial process runs one worker's share, tasks the others
        return [own] + [{"CPU": 1.0}] * (config.workers - 1)
    quiet_rllib()
    c = dqn_config(config, gpus=options.gpus_per_trial)
    return [dict(b) for b in c.algo_class.default_resource_request(c).bundles]


# -- recording from another sweep -----------------------------------------------------------

# What a recording takes from the trial that trained the network: the game and how it saw it.
_ENV_FIELDS = ("game", "frame_skip", "frame_stack", "noop_max", "terminal_on_life_loss", "max_frames")


def _sources(config, load) -> list[tuple[str, int, str, dict]]:
    """(source trial, checkpoint steps, uri, its env fields) of each checkpoint a recording
    trial reads; `load(table, columns)` reads the source sweep. A UserError names what is
    missing."""
    ckpts = load("checkpoints", ["trial_id", "env_steps", "uri"]).to_pylist()
    trials = {r["trial_id"]: {k: r[k] for k in _ENV_FIELDS}
              for r in load("trials", ["trial_id", *_ENV_FIELDS]).to_pylist()}
    if config.source_trial is not None:
        if config.source_trial not in trials:
            raise UserError(f"sweep {config.source_sweep} has no trial {config.source_trial}; "
                            f"its trials: {', '.join(sorted(trials)) or 'none'}")
        ckpts = [c for c in ckpts if c["trial_id"] == config.source_trial]
    out = []
    for trial_id in sorted({c["trial_id"] for c in ckpts}):
        mine = sorted((c for c in ckpts if c["trial_id"] == trial_id), key=lambda c: c["env_steps"])
        if config.source_checkpoint >= 0:
            mine = [c for c in mine if c["env_steps"] == config.source_checkpoint]
            if not mine:
                raise UserError(f"trial {trial_id} of sweep {config.source_sweep} kept no checkpoint at "
                                f"{config.source_checkpoint} steps")
        c = mine[-1]
        out.append((trial_id, c["env_steps"], c["uri"], trials[trial_id]))
    if not out:
        raise UserError(f"sweep {config.source_sweep} kept no checkpoints")
    return out


def prepare(configs, store) -> None:
    """Record and build trials: their source sweep, trial and checkpoint exist (one line if not)."""
    from lookinside import results

    for config in configs:
        if config.stage == "train":
            continue
        store.require_sweep(STUDY, config.source_sweep)

        def load(table, columns, filter=None, c=config):
            return results.load(store.uri, STUDY, table, sweep_id=c.source_sweep, columns=columns, filter=filter)
        if config.stage == "record":
            _sources(config, load)
        else:
            _build_filter(config, load)


def load_module(uri: str):
    """The RLModule of a kept checkpoint (a local folder or an s3:// URI)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    if "://" in uri:
        import pyarrow.fs as pafs

        local = tempfile.mkdtemp(prefix="lookinside-ckpt-")
        fs, path = pafs.FileSystem.from_uri(uri)
        pafs.copy_files(path, local, source_filesystem=fs)
        uri = local
    return RLModule.from_checkpoint(os.path.join(uri, *_MODULE_PATH))


# -- the trial -------------------------------------------------------------------------------

def _record(session, config, module, *, game, source_trial_id, checkpoint_step, seed, stop=None) -> int:
    from lookinside.studies.dqn_samdp import recorder

    def emit(columns):
        n = len(columns["step"])
        session.add_rows("transitions", 0, {**columns, "source_trial_id": [source_trial_id] * n,
                                            "checkpoint_step": [checkpoint_step] * n})
    start = time.perf_counter()
    rows = recorder.record(module, config, game=game, seed=seed, emit=emit, stop=stop)
    session.report(recorded_steps_per_second=rows / max(time.perf_counter() - start, 1e-9))
    return rows


def train(configs, session) -> None:
    if len(configs) != 1:
        raise ValueError(f"dqn_samdp trains one DQN per trial, got {len(configs)}")
    config = configs[0]
    if config.stage == "build":
        return _build(config, session)
    quiet_rllib()
    if config.stage == "record":
        return _record_sources(config, session)
    import torch

    torch.set_num_threads(1)
    state = session.state or {"env_steps": 0, "recorded": [], "games": 0}
    crash = _crash_hook(config, session)
    algo = dqn_config(config, gpus=1.0 if session.device == "cuda" else 0.0).build_algo()
    try:
        if session.state is not None:
            algo.restore_from_path(os.path.join(session.state_dir, "algo"))
        steps = int(algo.metrics.peek((_RUNNERS, _LIFETIME), default=0))
        module = algo.get_module()
        pending = [s for s in sorted(set(config.record_at)) if s not in state["recorded"] and config.record_games]

        def save(files: bool) -> None:
            session.checkpoint(lambda: dict(state), force=True,
                               files=(lambda d: algo.save_to_path(os.path.join(d, "algo"))) if files else None)

        while True:
            if pending and steps >= pending[0]:
                # A recording between two checkpoints: a retry redoes it whole, or not at all.
                _record(session, config, module, game=config.game, source_trial_id=session.trial_ids[0],
                        checkpoint_step=state["checkpoint_step"], seed=config.seed + state["checkpoint_step"],
                        stop=crash)
                state["recorded"].append(pending.pop(0))
                save(files=True)
                continue
            if steps >= config.env_steps:
                break
            start = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - start
            before, steps = steps, int(result[_LIFETIME])
            runners = result.get(_RUNNERS, {})
            games = int(runners.get("games", 0) or 0)
            state["games"] += games
            mean = float(runners.get("game_return_sum", 0.0)) / games if games else math.nan
            rate = (steps - before) / seconds
            session.report(env_steps=steps, episode_return_mean=mean, env_steps_per_second=rate,
                           progress=min(1.0, steps / config.env_steps))
            session.add_rows("training", 0, {
                "env_steps": [steps], "episodes": [state["games"]], "episode_return_mean": [mean],
                "episode_return_max": [float(runners.get("game_return_max", math.nan)) if games else math.nan],
                "env_steps_per_second": [rate]})
            crossed = steps // config.checkpoint_every > before // config.checkpoint_every
            due = bool(pending) and steps >= pending[0]
            if crossed or due or steps >= config.env_steps:
                name = f"checkpoint-{steps:010d}"
                with session.artifact_dir(name) as path:
                    algo.save_to_path(path)
                session.add_rows("checkpoints", 0, {"env_steps": [steps], "uri": [session.artifact_uri(name)]})
                state.update(env_steps=steps, checkpoint_step=steps)
                save(files=True)
    finally:
        algo.stop()


def _record_sources(config, session) -> None:
    def load(table, columns):
        return session.load(STUDY, table, sweep_id=config.source_sweep, columns=columns)
    done = set(map(tuple, (session.state or {}).get("done", [])))
    for source_trial, steps, uri, env in _sources(config, load):
        if (source_trial, steps) in done:
            continue
        module = load_module(uri)
        _record(session, dataclasses.replace(config, **env), module, game=env["game"], source_trial_id=source_trial,
                checkpoint_step=steps, seed=config.seed + steps)
        done.add((source_trial, steps))
        session.checkpoint(lambda: {"done": sorted(done)}, force=True)


def _crash_hook(config, session):
    """Test hook (crash_after_rows > 0): on a trial's first attempt, the process exits with
    os._exit(1) once that many transitions rows are recorded, like a lost node."""
    if config.crash_after_rows <= 0 or config.marker_dir is None:
        return None
    os.makedirs(config.marker_dir, exist_ok=True)
    marker = os.path.join(config.marker_dir, f"{session.trial_ids[0]}.attempted")
    if os.path.exists(marker):
        return None
    open(marker, "a").close()

    def crash(rows: int) -> bool:
        if rows >= config.crash_after_rows:
            os._exit(1)
        return False
    return crash


# -- building SAMDPs -------------------------------------------------------------------------

def _build_filter(config, load):
    """The filter that picks a build's transitions from its source sweep: the source trial's
    (or every one's) rows at source_checkpoint (or at each trial's last recorded one). A
    UserError when there are none."""
    import pyarrow.compute as pc

    keys = load("transitions", ["source_trial_id", "checkpoint_step"]).group_by(
        ["source_trial_id", "checkpoint_step"]).aggregate([]).to_pylist()
    if config.source_trial is not None:
        keys = [r for r in keys if r["source_trial_id"] == config.source_trial]
    if config.source_checkpoint >= 0:
        keys = [r for r in keys if r["checkpoint_step"] == config.source_checkpoint]
    else:
        last = {}
        for r in keys:
            last[r["source_trial_id"]] = max(last.get(r["source_trial_id"], -1), r["checkpoint_step"])
        keys = [{"source_trial_id": t, "checkpoint_step": c} for t, c in sorted(last.items())]
    if not keys:
        raise UserError(f"sweep {config.source_sweep} recorded no transitions for trial "
                        f"{config.source_trial or 'any'} at checkpoint "
                        f"{'the last' if config.source_checkpoint < 0 else config.source_checkpoint}")
    chosen = None
    for r in keys:
        one = ((pc.field("source_trial_id") == r["source_trial_id"])
               & (pc.field("checkpoint_step") == r["checkpoint_step"]))
        chosen = one if chosen is None else chosen | one
    return chosen


def _build(config, session) -> None:
    import numpy as np
    import pyarrow as pa

    from lookinside.studies.dqn_samdp import features, samdp

    def load(table, columns, filter=None):
        return session.load(STUDY, table, sweep_id=config.source_sweep, columns=columns, filter=filter)
    columns = ["source_trial_id", "checkpoint_step", "trajectory", "step", "reward", "terminated", "value",
               "embedding", *features.FEATURES]
    table = load("transitions", columns, _build_filter(config, load))
    start = time.perf_counter()
    result = samdp.build_samdp(table, config.k, config.method, seed=config.seed, workers=config.workers,
                               shards=config.shards, embedding=config.embedding, pca_dims=config.pca_dims,
                               fit_sample=config.fit_sample, perplexity=config.perplexity, window=config.window,
                               gamma=config.gamma, coherence=config.coherence, trunc=config.trunc)
    session.report(states=table.num_rows, build_seconds=time.perf_counter() - start, **result.scores)
    keep = {c: table.column(c) for c in ["source_trial_id", "checkpoint_step", "trajectory", "step", "value",
                                           *features.FEATURES]}
    session.add_rows("embedding_2d", 0, {**keep, "x": result.xy[:, 0], "y": result.xy[:, 1],
                                         "cluster": result.labels})
    k = config.k
    session.add_rows("samdp_clusters", 0, {
        "cluster": np.arange(k), "size": result.sizes.astype(np.int64), "v_dqn": result.v_dqn,
        "v_samdp": result.v_samdp, "reward": result.r, "mean_duration": result.kbar,
        "x": _cluster_mean(result.xy[:, 0], result.labels, k), "y": _cluster_mean(result.xy[:, 1], result.labels, k),
        "policy": result.policy.astype(np.int64), "policy_correlation": result.policy_correlation})
    source, target = np.nonzero((result.counts > 0) | (result.P > 0))
    session.add_rows("samdp_transitions", 0, {
        "source": source, "target": target, "probability": result.P[source, target],
        "count": result.counts[source, target].astype(np.int64)})
    session.add_rows("samdp_scores", 0, {name: pa.array([float(result.scores[name])])
                                         for name in ("vmse", "entropy", "inertia", "intensity")})


def _cluster_mean(values, labels, k):
    import numpy as np

    counts = np.bincount(labels, minlength=k)
    return np.where(counts > 0, np.bincount(labels, values, minlength=k) / np.maximum(counts, 1), np.nan)
