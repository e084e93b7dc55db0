"""Uniform experience replay that stores each 84x84 uint8 frame once.

RLlib's episode buffers store whatever observation the env returns. With frames stacked in
the env, every step holds 4 frames (and RLlib's float32 stacks 113 kB a step: 113 GB for
Nature DQN's 1M replay). Here the env returns one uint8 frame; the env runners stack the
last 4 for acting (RLlib's FrameStacking connector, zero frames before an episode's first);
and this buffer, a subclass of RLlib's EpisodeReplayBuffer that keeps its episodes as they
come, rebuilds the same stacks for the transitions it samples. About 7.1 kB per stored
step, so 1M steps fit in about 7 GB (tests/studies/dqn_samdp: bytes per stored transition).

Nature DQN samples uniformly (no prioritisation), as this buffer does.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer


def stack(frames: np.ndarray, t: int, k: int) -> np.ndarray:
    """Frames t-k+1..t of one episode (T+1, 84, 84, 1) as (84, 84, k), zeros before frame 0
    (as RLlib's FrameStacking connector fills them)."""
    lo = max(0, t - k + 1)
    out = np.zeros(frames.shape[1:-1] + (k,), frames.dtype)
    out[..., k - (t + 1 - lo):] = np.moveaxis(frames[lo:t + 1, ..., 0], 0, -1)
    return out


class FrameStackEpisodeReplayBuffer(EpisodeReplayBuffer):
    def __init__(self, *args, num_frames: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_frames = num_frames

    def add(self, episodes):
        # Env infos are not used by DQN's loss; dropping them saves ~0.5 kB a step.
        episodes = episodes if isinstance(episodes, list) else [episodes]
        for e in episodes:
            e.infos.data = [{} for _ in e.infos.data] if isinstance(e.infos.data, list) else e.infos.data
        super().add(episodes)

    def _frames(self, episode_id: str) -> tuple[np.ndarray, SingleAgentEpisode]:
        stored = self.episodes[self.episode_id_to_index[episode_id] - self._num_episodes_evicted]
        frames = stored.get_observations()
        if isinstance(frames, list):
            frames = np.stack(frames)
        return frames, stored

    def _sample_episodes(self, *args, n_step=None, **kwargs):
        if isinstance(n_step, tuple):
            raise ValueError("FrameStackEpisodeReplayBuffer samples a fixed n_step")
        n = n_step or 1
        sampled = super()._sample_episodes(*args, n_step=n, **kwargs)
        k, out, cache = self.num_frames, [], {}
        for e in sampled:
            if e.id_ not in cache:
                cache[e.id_] = self._frames(e.id_)
            frames, stored = cache[e.id_]
            t = e.t_started
            t_next = min(t + n, len(stored))
            space = stored.observation_space
            stacked_space = gym.spaces.Box(0, 255, space.shape[:-1] + (k,), space.dtype) if space else None
            out.append(SingleAgentEpisode(
                id_=e.id_, agent_id=e.agent_id, module_id=e.module_id,
                observation_space=stacked_space, action_space=e.action_space,
                observations=[stack(frames, t, k), stack(frames, t_next, k)],
                actions=list(e.get_actions()), rewards=list(e.get_rewards()), infos=[{}, {}],
                terminated=e.is_terminated, truncated=e.is_truncated,
                extra_model_outputs={key: list(e.get_extra_model_outputs(key)) for key in e.extra_model_outputs},
                t_started=t, len_lookback_buffer=0))
        return out

    def stored_bytes(self) -> int:
        """Bytes of the frames, actions and rewards held (numpy buffers and Python lists)."""
        total = 0
        for e in self.episodes:
            for buf in (e.observations, e.actions, e.rewards):
                data = buf.data
                total += data.nbytes if isinstance(data, np.ndarray) else sum(np.asarray(x).nbytes for x in data)
        return total
