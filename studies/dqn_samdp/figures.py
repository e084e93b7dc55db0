"""Figures of dqn_samdp's training, drawn from its Arrow tables only.

Training curves: one column per game; top, the unclipped game score (mean over the last
100 finished games, per seed, with the mean over seeds); bottom, agent steps per second.
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


def _training(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    trials = tables["trials"]
    keys = report.finished_trials(trials, [f for f in ("game", "seed", "preset") if f in trials.column_names])
    return report.with_config(tables["training"], keys)


def _games(frame: pd.DataFrame) -> list[str]:
    present = set(frame["game"])
    return [g for g in GAME_ORDER if g in present] + sorted(present - set(GAME_ORDER))


def draw(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
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
        finals = []
        for seed, run in rows.groupby("seed"):
            top.plot(run["env_steps"], run["episode_return_mean"], lw=1, alpha=0.45, label=f"seed {seed}")
            bottom.plot(run["env_steps"], run["env_steps_per_second"], lw=1, alpha=0.7)
            scored = run.dropna(subset=["episode_return_mean"])
            if len(scored):
                finals.append(float(scored["episode_return_mean"].iloc[-1]))
        mean = rows.groupby("env_steps")["episode_return_mean"].mean()
        if rows["seed"].nunique() > 1:
            top.plot(mean.index, mean.values, color="k", lw=2, label="mean over seeds")
        top.set_title(game)
        top.set_ylabel("game score (unclipped, mean of last 100 games)")
        bottom.set_ylabel("agent steps / s")
        bottom.set_xlabel("agent steps (4 frames each)")
        top.legend(fontsize=7, frameon=False)
        games_played = int(rows.groupby("seed")["episodes"].max().sum())
        rate = float(np.nanmedian(rows["env_steps_per_second"]))
        reached = int(rows["env_steps"].max())
        if finals:
            notes.append(f"{game}: after {reached:,} steps the mean score over seeds is {np.mean(finals):.1f} "
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
    out = pd.DataFrame({"agent steps": last["env_steps"], "games": last["episodes"],
                        "final mean score": last["episode_return_mean"],
                        "median steps/s": training.groupby("trial_id")["env_steps_per_second"].median()})
    if "transitions" in tables and tables["transitions"].num_rows:
        out["recorded steps"] = tables["transitions"].to_pandas().groupby("trial_id").size()
    return pa.Table.from_pandas(out.rename_axis("trial_id").reset_index(), preserve_index=False)
