"""The replay buffer stores each uint8 frame once and rebuilds, for every sampled transition,
the stacks RLlib's FrameStacking connector gave the env runner when it acted."""

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("ray.rllib")
pytest.importorskip("ale_py")

import gymnasium as gym  # noqa: E402
from ray.rllib.connectors.common.frame_stacking import FrameStacking  # noqa: E402
from ray.rllib.env.single_agent_episode import SingleAgentEpisode  # noqa: E402

from lookinside.studies.dqn_samdp import atari  # noqa: E402
from lookinside.studies.dqn_samdp.replay import FrameStackEpisodeReplayBuffer  # noqa: E402

SPACE = gym.spaces.Box(0, 255, (84, 84, 1), np.uint8)
ACTIONS = gym.spaces.Discrete(4)


def episode(frames, terminated=True):
    ep = SingleAgentEpisode(observations=[frames[0]], observation_space=SPACE, action_space=ACTIONS)
    for t, frame in enumerate(frames[1:]):
        ep.add_env_step(frame, t % 4, float(t), terminated=terminated and t == len(frames) - 2)
    return ep


def numbered(n):
    """n frames, frame t filled with t + 1 (so that a stack shows which frames it holds)."""
    return [np.full((84, 84, 1), t + 1, np.uint8) for t in range(n)]


def test_sampled_stacks_are_the_env_runners_stacks():
    frames = numbered(12)
    connector = FrameStacking(num_frames=4)
    acting = []   # what the env runner's connector gives the module at each step t
    for t in range(len(frames)):
        batch = connector(rl_module=None, batch={}, episodes=[episode(frames[:t + 1], terminated=False)],
                          explore=True, shared_data={})
        acting.append(next(iter(batch["obs"].values()))[0])
    assert acting[1][0, 0].tolist() == [0, 0, 1, 2]                # zeros before the first frame
    buffer = FrameStackEpisodeReplayBuffer(capacity=1000, num_frames=4)
    ep = episode(frames)
    ep.to_numpy()
    buffer.add([ep])
    seen = set()
    for _ in range(20):
        for e in buffer.sample(num_items=32, n_step=1, sample_episodes=True):
            t = e.t_started
            obs, next_obs = e.get_observations()
            np.testing.assert_array_equal(obs, acting[t])
            np.testing.assert_array_equal(next_obs, acting[t + 1])
            assert e.get_actions()[0] == t % 4 and e.get_rewards()[0] == float(t)
            assert e.is_terminated == (t == len(frames) - 2)
            seen.add(t)
    assert seen == set(range(len(frames) - 1))


def test_a_stored_transition_costs_under_10_kB():
    """Nature DQN's 1M-step replay must fit in under 10 GB (RLlib's float32 stacks: 113 kB a
    step, 113 GB). Measured with tracemalloc (numpy reports its buffers to it) over 2,000 real
    Breakout steps in 4 episodes: 7,354 bytes a step (7,056 of them the 84x84 frame)."""
    env = atari.make("Breakout")
    episodes = []
    rng = np.random.default_rng(0)
    for e in range(4):
        obs, _ = env.reset(seed=e)
        frames = [obs]
        for _ in range(500):
            obs, *_ = env.step(int(rng.integers(4)))
            frames.append(obs)
        ep = episode(frames)
        ep.to_numpy()
        episodes.append(ep)
    buffer = FrameStackEpisodeReplayBuffer(capacity=100_000, num_frames=4)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    buffer.add(episodes)
    del episodes
    per_step = (tracemalloc.get_traced_memory()[0] - before) / buffer.get_num_timesteps()
    tracemalloc.stop()
    assert buffer.get_num_timesteps() == 2000
    assert 84 * 84 <= per_step < 10_000, per_step
    assert 84 * 84 <= buffer.stored_bytes() / 2000 < 10_000
