"""DQN throughput on Breakout at the paper's replay ratio (one update of 32 per 4 agent steps).

Side by side in one run, on the same embedded Ray (one learner in this process, one env
runner actor):
  study    this study's RLlib configuration (trial.dqn_config: Nature CNN on uint8 frames
           stored once, uniform replay, 1 env runner);
  example  RLlib's Atari DQN example's settings (rllib/examples/algorithms/dqn/atari_dqn.py:
           Rainbow parts, 64x64, 4 convs, prioritized replay, rollout 4 so one update per 4
           steps), with its frame stacking moved into the env because the example's
           connector stacking crashes the first update in RLlib 2.60;
  floor    4 / (one batch-32 update in plain PyTorch: online forward, target forward,
           Huber loss, backward, Adam step) with the learner's one torch thread;
  ale      random play through this study's env chain alone (no network, no Ray).
Each RLlib run's replay ratio is read from RLlib's own counters (module steps trained / 32
over env steps sampled after learning starts). Also: steps per second the recorder plays
with its batched forward, and bytes per stored replay transition. Last line: one JSON object.

    python benchmarks/dqn_throughput.py            # 3000 learning steps per configuration
    python benchmarks/dqn_throughput.py --quick    # 800
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from lookinside import config as cfg
from lookinside.studies.dqn_samdp import atari, module, recorder, trial
from lookinside.studies.dqn_samdp.config import DQNSamdpConfig

LEARNING_STARTS = 1000
TRAINED = ("learners", "default_policy", "num_module_steps_trained_lifetime")


def _get(result: dict, path) -> float:
    for key in path:
        result = result.get(key, {}) if isinstance(result, dict) else {}
    return float(result or 0)


def measure(algo, steps: int) -> dict:
    """Agent steps per second over `steps` steps after learning starts, and the replay
    ratio RLlib's counters show over them."""
    result = algo.train()
    while result["num_env_steps_sampled_lifetime"] < LEARNING_STARTS + 64:
        result = algo.train()
    sampled0, trained0 = result["num_env_steps_sampled_lifetime"], _get(result, TRAINED)
    start = time.perf_counter()
    while result["num_env_steps_sampled_lifetime"] < sampled0 + steps:
        result = algo.train()
    seconds = time.perf_counter() - start
    sampled = result["num_env_steps_sampled_lifetime"] - sampled0
    updates = (_get(result, TRAINED) - trained0) / 32
    return {"steps_per_s": sampled / seconds, "updates_per_step": updates / sampled, "steps": int(sampled)}


def study_config() -> DQNSamdpConfig:
    return cfg.build(DQNSamdpConfig, {"env_steps": 10**6, "learning_starts": LEARNING_STARTS,
                                      "replay_capacity": 100_000, "steps_per_iteration": 256, "record_at": (0,)})


def run_study(steps: int) -> tuple[dict, float]:
    algo = trial.dqn_config(study_config()).build_algo()
    try:
        out = measure(algo, steps)
        buffer = algo.local_replay_buffer
        return out, buffer.stored_bytes() / buffer.get_num_timesteps()
    finally:
        algo.stop()


def run_example(steps: int) -> dict:
    import gymnasium as gym
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack
    from ray.tune.registry import register_env

    def env_creator(env_config):
        import ale_py

        gym.register_envs(ale_py)
        return wrap_atari_for_new_api_stack(gym.make("ALE/Breakout-v5", **env_config), dim=64, framestack=4)

    register_env("bench-atari", env_creator)
    config = (
        DQNConfig()
        .environment("bench-atari", env_config={"frameskip": 1, "full_action_space": False,
                                                "repeat_action_probability": 0.0}, clip_rewards=True)
        .env_runners(rollout_fragment_length=4, num_env_runners=1)
        .learners(num_learners=0)
        .training(lr=6.25e-5, n_step=3, tau=1.0, train_batch_size=32, target_network_update_freq=32_000,
                  replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 100_000,
                                        "alpha": 0.5, "beta": 0.4},
                  num_steps_sampled_before_learning_starts=LEARNING_STARTS, noisy=True, num_atoms=51,
                  v_min=-10.0, v_max=10.0, double_q=True, dueling=True)
        .rl_module(model_config=DefaultModelConfig(vf_share_layers=True, conv_activation="relu",
                                                   conv_filters=[(16, 4, 2), (32, 4, 2), (64, 4, 2), (128, 4, 2)],
                                                   head_fcnet_hiddens=[256]))
        .reporting(min_sample_timesteps_per_iteration=256)
        .debugging(seed=0, log_level="ERROR", log_sys_usage=False)
    )
    algo = config.build_algo()
    try:
        return measure(algo, steps)
    finally:
        algo.stop()


class NatureDQN(torch.nn.Module):
    """The 2016 network in plain PyTorch, for the floor."""

    def __init__(self, actions: int = 4):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 32, 8, 4), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 4, 2), torch.nn.ReLU(),
            torch.nn.Conv2d(64, 64, 3, 1), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.Linear(3136, 512), torch.nn.ReLU(), torch.nn.Linear(512, actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.float() / 255.0)


def update_seconds(threads: int, repeats: int, device: str = "cpu") -> float:
    torch.set_num_threads(threads)
    online, target = NatureDQN().to(device), NatureDQN().to(device)
    opt = torch.optim.Adam(online.parameters(), lr=6.25e-5)
    obs = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, device=device)
    nxt = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, device=device)
    actions = torch.randint(0, 4, (32,), device=device)
    rewards = torch.randn(32, device=device)

    def step():
        q = online(obs).gather(1, actions[:, None])[:, 0]
        with torch.no_grad():
            target_q = rewards + 0.99 * target(nxt).max(dim=1).values
        loss = torch.nn.functional.huber_loss(q, target_q)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def ale_steps_per_second(steps: int) -> float:
    env = atari.make("Breakout")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def recorded_steps_per_second(games: int, max_steps: int) -> float:
    """The recorder on an untrained module of this study (8 games in lockstep)."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    torch.set_num_threads(1)
    c = study_config()
    rl = trial.dqn_config(c)
    env = atari.make("Breakout")
    import gymnasium as gym

    space = gym.spaces.Box(0, 255, (84, 84, c.frame_stack), np.uint8)
    spec = RLModuleSpec(module_class=module.NatureDQNModule, observation_space=space,
                        action_space=env.action_space, model_config=rl.model_config)
    m = spec.build()
    c = dataclasses.replace(c, record_games=games, record_envs=8, record_max_steps=max_steps, record_epsilon=0.05)
    start = time.perf_counter()
    rows = recorder.record(m, c, game="Breakout", seed=0, emit=lambda columns: None)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="800 learning steps per configuration (under 2 min)")
    args = parser.parse_args()
    steps = 800 if args.quick else 3000

    from lookinside import ray_setup

    trial.quiet_rllib()
    ray_setup.start_ray(None)
    study, bytes_per_step = run_study(steps)
    print(f"study:   {study['steps_per_s']:.1f} steps/s, {study['updates_per_step']:.3f} updates per step", flush=True)
    example = run_example(steps)
    print(f"example: {example['steps_per_s']:.1f} steps/s, {example['updates_per_step']:.3f} updates per step",
          flush=True)
    update = update_seconds(1, 20 if args.quick else 60)
    update2 = update_seconds(2, 20 if args.quick else 60)
    floor = 4 / update
    print(f"floor:   one update {update * 1e3:.1f} ms on 1 thread ({update2 * 1e3:.1f} ms on 2): {floor:.0f} steps/s",
          flush=True)
    ale = ale_steps_per_second(2000 if args.quick else 10_000)
    recorded = recorded_steps_per_second(8, 150 if args.quick else 500)
    figures = {
        "study_steps_per_s": round(study["steps_per_s"], 1),
        "example_steps_per_s": round(example["steps_per_s"], 1),
        "floor_steps_per_s": round(floor, 1),
        "study_vs_floor": round(study["steps_per_s"] / floor, 3),
        "study_vs_example": round(study["steps_per_s"] / example["steps_per_s"], 2),
        "study_updates_per_step": round(study["updates_per_step"], 4),
        "example_updates_per_step": round(example["updates_per_step"], 4),
        "update_ms_1_thread": round(update * 1e3, 2),
        "update_ms_2_threads": round(update2 * 1e3, 2),
        "ale_steps_per_s": round(ale, 1),
        "recorded_steps_per_s": round(recorded, 1),
        "bytes_per_stored_transition": round(bytes_per_step, 1),
        "measured_steps": study["steps"],
    }
    if torch.cuda.is_available():
        gpu = update_seconds(1, 200, device="cuda")
        figures.update(gpu_update_ms=round(gpu * 1e3, 3), gpu_floor_steps_per_s=round(4 / gpu, 1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
