"""Atari environments as the 2016 DQN saw them, one 84x84 grey uint8 frame per step.

The chain: ALE v5 with frameskip 1 and no sticky actions (ROMs ship in the ale-py wheel),
gymnasium's AtariPreprocessing (up to 30 no-ops at reset, action repeat 4 with the max of
the last two frames, grey, 84x84 by area interpolation, uint8), then `Lives` below.
Frames are not stacked here: the env runner stacks the last 4 through RLlib's FrameStacking
connector and the replay buffer stacks them when it samples (replay.py), so each frame is
stored once. A frame is (84, 84, 1) uint8, 7,056 bytes; the module casts it (module.py).
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np


@functools.cache
def games() -> tuple[str, ...]:
    """Every ALE game that ale-py registers (its wheel ships each one's ROM)."""
    import ale_py

    gym.register_envs(ale_py)
    return tuple(sorted(k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")))


def check_game(game: str) -> str:
    if game not in games():
        raise ValueError(f"unknown Atari game {game!r}; valid games (ALE ids, e.g. Pacman is ALE's "
                         f"Pacman, not MsPacman): {', '.join(games())}")
    return game


class Lives(gym.Wrapper):
    """Game bookkeeping on top of the preprocessed env.

    - terminal_on_life_loss (Nature DQN's training): a lost life ends the RL episode; the
      next reset() continues the same game with a no-op step instead of restarting it.
    - clip_rewards (Nature DQN): the reward passed on is sign(r); info["raw_reward"] keeps r.
    - info: "lives" (lives left), "life_lost", and, on the step that ends a game,
      "game_return" (the unclipped score of the whole game, all lives) and "game_steps".
    """

    def __init__(self, env: gym.Env, terminal_on_life_loss: bool, clip_rewards: bool):
        super().__init__(env)
        self.terminal_on_life_loss, self.clip_rewards = terminal_on_life_loss, clip_rewards
        self.ale = env.unwrapped.ale
        self._game_over, self._score, self._steps, self._lives = True, 0.0, 0, 0

    def reset(self, *, seed=None, options=None):
        if self._game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
            self._score, self._steps = 0.0, 0
        else:  # a new life of the same game
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
                self._score, self._steps = 0.0, 0
        self._game_over, self._lives = False, self.ale.lives()
        return obs, {**info, "lives": self._lives, "life_lost": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._score += float(reward)
        self._steps += 1
        lives = self.ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        info = {**info, "lives": lives, "life_lost": life_lost, "raw_reward": float(reward)}
        if terminated or truncated:
            self._game_over = True
            info.update(game_return=self._score, game_steps=self._steps)
        elif life_lost and self.terminal_on_life_loss:
            terminated = True
        if self.clip_rewards:
            reward = float(np.sign(reward))
        return obs, reward, terminated, truncated, info


def make(game: str, *, frame_skip: int = 4, noop_max: int = 30, terminal_on_life_loss: bool = True,
         clip_rewards: bool = True, max_frames: int = 108_000, render: bool = False) -> Lives:
    """One preprocessed Atari env; `max_frames` caps a game (Machado et al.: 30 minutes at
    60 Hz = 108,000 frames). render=True keeps RGB screens for `screen()`."""
    import ale_py

    gym.register_envs(ale_py)
    check_game(game)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False,
                   max_num_frames_per_episode=max_frames, render_mode="rgb_array" if render else None)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True,
                                          grayscale_newaxis=True, scale_obs=False)
    return Lives(env, terminal_on_life_loss, clip_rewards)


class RLlibAtari(gym.Wrapper):
    """The env class RLlib's env runners build: `.environment(RLlibAtari, env_config={...})`,
    with the keyword arguments of `make`."""

    def __init__(self, env_config: dict):
        super().__init__(make(**env_config))
