"""Plays games with a trained DQN module and records every step, as graying_the_box did.

`record_games` games run on `record_envs` envs in lockstep: each step stacks every env's
last frames into one batch, one forward pass gives the Q-values and the 512-d embedding
(module.q_and_embedding), and epsilon-greedy picks the actions.

A row describes state s_t of one game: the action taken there, the (unclipped) reward it
earned, `terminated` when it cost a life or ended the game (the original's DQN counts a
lost life as a termination), and `lives` left after it. A trajectory is one whole game,
all its lives: the original splits its record after every `num_lives` terminations
(Breakout 5, Seaquest 3, Pacman 3), which is a game; a game cut at `record_max_steps`
ends its trajectory there. The frame stack restarts from zeros after a lost life when the
model was trained that way (terminal_on_life_loss), so the network sees what it learned on.
Games are numbered in the order they start; with the same module and seed, the rows are
the same.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import torch

from lookinside.studies.dqn_samdp import atari, features
from lookinside.studies.dqn_samdp.module import q_and_embedding

FLUSH_ROWS = 256   # rows handed to the session at a time (it streams them to the store)


@dataclasses.dataclass
class _Game:
    env: atari.Lives
    frames: np.ndarray            # (84, 84, k) uint8, the newest last
    trajectory: int = -1          # -1: idle
    step: int = 0


def _push(stack: np.ndarray, frame: np.ndarray) -> None:
    stack[..., :-1] = stack[..., 1:]
    stack[..., -1] = frame[..., 0]


def record(module, config, *, game: str, seed: int, emit, stop=None) -> int:
    """Plays config.record_games games of `game` and hands rows to emit(columns: dict),
    FLUSH_ROWS at a time; returns the number of rows. `config`: the trial's config (its
    env, frame_stack and record_* fields). `stop(rows)` may end the recording early."""
    rng = np.random.default_rng([seed, 0x5EC0])
    env_seeds = np.random.SeedSequence([seed, 0xA7A]).generate_state(config.record_games)
    games = [_Game(atari.make(game, frame_skip=config.frame_skip, noop_max=config.noop_max,
                              terminal_on_life_loss=config.terminal_on_life_loss, clip_rewards=False,
                              max_frames=config.max_frames),
                   np.zeros((84, 84, config.frame_stack), np.uint8))
             for _ in range(min(config.record_envs, config.record_games))]
    started = 0
    rows: dict[str, list] = {}
    total = 0

    def start(g: _Game) -> None:
        nonlocal started
        obs, _ = g.env.reset(seed=int(env_seeds[started]))
        g.frames[:] = 0
        _push(g.frames, obs)
        g.trajectory, g.step, started = started, 0, started + 1

    for g in games:
        start(g)
    device = next(module.parameters()).device
    while any(g.trajectory >= 0 for g in games):
        live = [g for g in games if g.trajectory >= 0]
        obs = torch.from_numpy(np.stack([g.frames for g in live])).to(device)
        q, emb = q_and_embedding(module, obs)
        q, emb = q.float().cpu().numpy(), emb.float().cpu().numpy()
        greedy = q.argmax(axis=1)
        explore = rng.random(len(live)) < config.record_epsilon
        actions = np.where(explore, rng.integers(q.shape[1], size=len(live)), greedy)
        for i, g in enumerate(live):
            ram = g.env.ale.getRAM()
            screen = _png(g.env.ale.getScreenRGB()) if config.record_screens else None
            obs, _, terminated, truncated, info = g.env.step(int(actions[i]))
            game_over = "game_return" in info
            cut = g.step + 1 >= config.record_max_steps
            row = {"game": game, "trajectory": g.trajectory, "step": g.step, "action": int(actions[i]),
                   "reward": info["raw_reward"], "terminated": bool(terminated and not truncated),
                   "lives": info["lives"], "q_values": q[i], "value": q[i].max(), "embedding": emb[i],
                   "screen": screen, **features.features(game, ram)}
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
            g.step += 1
            if game_over or cut:
                if started < config.record_games:
                    start(g)
                else:
                    g.trajectory = -1
            elif terminated:  # a lost life: the same game goes on with a fresh stack
                obs, _ = g.env.reset()
                g.frames[:] = 0
                _push(g.frames, obs)
            else:
                _push(g.frames, obs)
        if len(rows["step"]) >= FLUSH_ROWS or not any(g.trajectory >= 0 for g in games):
            total += len(rows["step"])
            emit(_columns(rows))
            rows = {}
            if stop is not None and stop(total):
                break
    for g in games:
        g.env.close()
    return total


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", rgb[..., ::-1])
    return data.tobytes()


def _columns(rows: dict[str, list]) -> dict:
    q = rows.pop("q_values")
    lengths = np.array([len(x) for x in q])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    out = {"q_values": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(q), pa.float32())),
           "embedding": np.stack(rows.pop("embedding")).astype(np.float32),
           "value": np.asarray(rows.pop("value"), np.float32),
           "reward": np.asarray(rows.pop("reward"), np.float32),
           "screen": pa.array(rows.pop("screen"), pa.binary())}
    for name, tp in features.FEATURES.items():
        out[name] = pa.array(rows.pop(name), tp)
    out.update({k: np.asarray(v) for k, v in rows.items() if k != "game"})
    out["game"] = pa.array(rows["game"], pa.string())
    return out
