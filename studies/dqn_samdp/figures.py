"""Figures of dqn_samdp's training, drawn from its Arrow tables only.

Training curves: one column per game; top, the unclipped game score (a game is all its
lives): per seed, the mean of the last 100 finished games as a line and each iteration's
games as dots, with the mean over seeds; bottom, agent steps per second.
The run (preset, seeds, steps) is in the title; the caption says what this run reached.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report
from lookinside.study import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

GAME_ORDER = ("Breakout", "Seaquest", "Pacman")
WINDOW = 100   # games in the running mean


def _training(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    trials = tables["trials"]
    fields = ("game", "seed", "preset", "learning_starts")
    keys = report.finished_trials(trials, [f for f in fields if f in trials.column_names])
    return report.with_config(tables["training"], keys)


def last_games_mean(run: pd.DataFrame, games: int = WINDOW) -> np.ndarray:
    """Per row of one trial's `training` (sorted by steps): the mean score of the last
    `games` finished games (fewer at the start; NaN before the first), from each row's
    games finished and their mean."""
    played = np.diff(run["episodes"].to_numpy(), prepend=0)
    score = np.nan_to_num(run["episode_return_mean"].to_numpy()) * played
    total_games, total_score = np.cumsum(played), np.cumsum(score)
    out = np.full(len(run), np.nan)
    for i in range(len(run)):
        j = np.searchsorted(total_games, total_games[i] - games, side="right")   # first row inside
        n = total_games[i] - (total_games[j - 1] if j else 0)
        if n:
            out[i] = (total_score[i] - (total_score[j - 1] if j else 0)) / n
    return out


def _games(frame: pd.DataFrame) -> list[str]:
    present = set(frame["game"])
    return [g for g in GAME_ORDER if g in present] + sorted(present - set(GAME_ORDER))


def draw(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
    from lookinside.studies.dqn_samdp import samdp_figures

    return _draw_training(tables, out) + samdp_figures.draw(tables, out)


def _draw_training(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
    frame = _training(tables)
    if frame.empty:
        return []
    games = _games(frame)
    fig, axes = plt.subplots(2, len(games), figsize=(4.2 * len(games), 5.6), squeeze=False, sharex="col",
                             height_ratios=[2, 1], layout="constrained")
    notes = []
    for col, game in enumerate(games):
        rows = frame[frame["game"] == game].sort_values("env_steps")
        top, bottom = axes[0, col], axes[1, col]
        finals, curves = [], []
        for seed, run in rows.groupby("seed"):
            run = run.sort_values("env_steps")
            curve = last_games_mean(run)
            top.plot(run["env_steps"], run["episode_return_mean"], ".", ms=4, alpha=0.35, color=f"C{len(curves)}")
            top.plot(run["env_steps"], curve, lw=1.2, color=f"C{len(curves)}", label=f"seed {seed}")
            bottom.plot(run["env_steps"], run["env_steps_per_second"], lw=1, color=f"C{len(curves)}")
            curves.append(pd.Series(curve, index=run["env_steps"].to_numpy()))
            if np.isfinite(curve).any():
                finals.append(float(curve[np.isfinite(curve)][-1]))
        if len(curves) > 1:
            mean = pd.concat(curves, axis=1).mean(axis=1)
            top.plot(mean.index, mean.values, color="k", lw=2, label="mean over seeds")
        if "learning_starts" in rows:
            for ax in (top, bottom):
                ax.axvline(rows["learning_starts"].min(), color="0.6", ls="--", lw=0.8)
            top.annotate("learning starts", (rows["learning_starts"].min(), 1), xycoords=("data", "axes fraction"),
                         xytext=(3, -10), textcoords="offset points", fontsize=7, color="0.4")
        top.set_title(game)
        top.set_ylabel(f"game score (points; line: mean of last {WINDOW} games,\ndots: games ending in one iteration)")
        bottom.set_ylabel("agent steps / s")
        bottom.set_xlabel("agent steps (4 frames each)")
        top.legend(fontsize=7, frameon=False)
        games_played = int(rows.groupby("seed")["episodes"].max().sum())
        rate = float(np.nanmedian(rows["env_steps_per_second"]))
        reached = int(rows["env_steps"].max())
        if finals:
            notes.append(f"{game}: after {reached:,} steps the mean score of the last {WINDOW} games is "
                         f"{np.mean(finals):.1f} over seeds "
                         f"(seeds {min(finals):.1f} to {max(finals):.1f}; {games_played} games played), "
                         f"at a median {rate:.0f} steps/s")
        else:
            notes.append(f"{game}: no game finished in {reached:,} steps ({rate:.0f} steps/s median)")
    preset = ", ".join(sorted(set(frame["preset"]))) if "preset" in frame else "?"
    seeds = sorted(set(frame["seed"]))
    fig.suptitle(f"DQN training (preset {preset}; seeds {', '.join(map(str, seeds))})", fontsize=11)
    return [report.save_figure(fig, out, "training.png", "Training curves per game", "; ".join(notes) + ".")]


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """Per trial: steps reached, games played, the last mean score, the median rate, and
    the recorded rows."""
    training = tables["training"].to_pandas()
    if training.empty:
        return pa.table({"trial_id": pa.array([], pa.string())})
    last = training.sort_values("env_steps").groupby("trial_id").last()
    recent = {t: last_games_mean(run.sort_values("env_steps"))[-1] for t, run in training.groupby("trial_id")}
    out = pd.DataFrame({"agent steps": last["env_steps"], "games": last["episodes"],
                        f"mean score, last {WINDOW} games": pd.Series(recent),
                        "median steps/s": training.groupby("trial_id")["env_steps_per_second"].median()})
    if "transitions" in tables and tables["transitions"].num_rows:
        out["recorded steps"] = tables["transitions"].to_pandas().groupby("trial_id").size()
    return pa.Table.from_pandas(out.rename_axis("trial_id").reset_index(), preserve_index=False)
