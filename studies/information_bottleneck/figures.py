"""Figures of the information bottleneck study, drawn from its Arrow tables only."""

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

ESTIMATOR_TITLES = {"bin_fixed": "binned, fixed range [-1, 1] (IDNNs)",
                    "bin_observed": "binned, observed range (Saxe et al.)",
                    "kde_upper": "KDE upper bound", "kde_lower": "KDE lower bound"}


def finished_trials(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    """The finished trials' ids with the config fields that figures group by."""
    return report.finished_trials(tables["trials"], ["activation", "train_fraction", "seed", "hidden"])


with_keys = report.with_config


def _main_fraction(keys: pd.DataFrame) -> float:
    """The information plane uses the largest training fraction of the sweep."""
    return float(keys["train_fraction"].max())


def information_plane(tables, out: str) -> list[Figure]:
    keys = finished_trials(tables)
    info = with_keys(tables["information"], keys)
    fraction = _main_fraction(keys)
    info = info[np.isclose(info["train_fraction"], fraction)]
    estimators = [e for e in ESTIMATOR_TITLES if e in set(info["estimator"])]
    activations = sorted(set(info["activation"]))
    if not estimators or not activations:
        return []
    mean = info.groupby(["estimator", "activation", "layer", "epoch"], as_index=False)[["i_xt", "i_ty"]].mean()
    fig, axes = plt.subplots(len(estimators), len(activations), squeeze=False, layout="constrained",
                             figsize=(4.2 * len(activations) + 1, 3.4 * len(estimators)))
    last_epoch = max(int(mean["epoch"].max()), 1)
    norm = matplotlib.colors.LogNorm(vmin=1, vmax=last_epoch + 1)
    for r, est in enumerate(estimators):
        for c, act in enumerate(activations):
            ax = axes[r][c]
            sub = mean[(mean["estimator"] == est) & (mean["activation"] == act)]
            n_seeds = keys[(keys["activation"] == act) & np.isclose(keys["train_fraction"], fraction)]["seed"].nunique()
            for layer, g in sub.groupby("layer"):
                g = g.sort_values("epoch")
                ax.plot(g["i_xt"], g["i_ty"], color="0.75", lw=0.8, zorder=1)
                sc = ax.scatter(g["i_xt"], g["i_ty"], c=g["epoch"] + 1, cmap="viridis", norm=norm, s=10, zorder=2)
                ax.annotate(f"T{layer}" if layer < sub["layer"].max() else "out",
                            (g["i_xt"].iloc[-1], g["i_ty"].iloc[-1]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax.set_title(f"{act}: {ESTIMATOR_TITLES[est]}\n(mean of {n_seeds} seeds)", fontsize=9)
            ax.set_xlabel("I(X;T) [bits]")
            ax.set_ylabel("I(T;Y) [bits]")
    fig.colorbar(sc, ax=axes, label="epoch + 1", shrink=0.6)
    return [report.save_figure(fig, out, "information_plane.png", "Information plane",
                   f"Each layer's I(X;T) against I(T;Y) over training (colour: epoch), averaged over "
                   f"seeds, training fraction {fraction:g}; one column per activation, one row per estimator. "
                   "Under tanh the layers first move right and up (fitting), then left (compression).",
                   bbox_inches=None)]


def compression(tables, out: str) -> list[Figure]:
    """The last hidden layer's I(X;T) against epoch: where the tanh vs ReLU dispute shows."""
    keys = finished_trials(tables)
    info = with_keys(tables["information"], keys)
    fraction = _main_fraction(keys)
    info = info[np.isclose(info["train_fraction"], fraction) & info["estimator"].str.startswith("bin")]
    if info.empty:
        return []
    last_hidden = int(info["layer"].max()) - 1
    info = info[info["layer"] == last_hidden]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, est in zip(axes, ["bin_fixed", "bin_observed"]):
        for act, g in info[info["estimator"] == est].groupby("activation"):
            per_seed = g.pivot_table(index="epoch", columns="seed", values="i_xt")
            x = per_seed.index.to_numpy() + 1
            m, s = per_seed.mean(1), per_seed.std(1).fillna(0)
            ax.plot(x, m, label=act)
            ax.fill_between(x, m - s, m + s, alpha=0.2)
        ax.set_xscale("log")
        ax.set_title(ESTIMATOR_TITLES[est], fontsize=9)
        ax.set_xlabel("epoch + 1")
        ax.legend()
    axes[0].set_ylabel(f"I(X;T{last_hidden}) [bits]")
    return [report.save_figure(fig, out, "compression.png", "Compression in the last hidden layer",
                   f"I(X;T{last_hidden}) against epoch, mean and std over seeds. The IB paper's compression "
                   "is the fall after the peak; Saxe et al. find it under tanh but not under ReLU.")]


def gradients(tables, out: str) -> list[Figure]:
    keys = finished_trials(tables)
    grads = with_keys(tables["gradients"], keys)
    grads = grads[np.isclose(grads["train_fraction"], _main_fraction(keys))]
    if grads.empty:
        return []
    activations = sorted(set(grads["activation"]))
    fig, axes = plt.subplots(1, len(activations), squeeze=False, figsize=(5 * len(activations), 3.8))
    mean = grads.groupby(["activation", "layer", "epoch"], as_index=False)[["grad_mean_norm", "grad_std_norm"]].mean()
    colours = plt.get_cmap("viridis")
    n_layers = int(mean["layer"].max())
    for ax, act in zip(axes[0], activations):
        for layer, g in mean[mean["activation"] == act].groupby("layer"):
            colour = colours((layer - 1) / max(n_layers - 1, 1))
            ax.plot(g["epoch"], g["grad_mean_norm"], color=colour, label=f"layer {layer} mean")
            ax.plot(g["epoch"], g["grad_std_norm"], color=colour, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{act}: gradient mean (solid) and std (dashed)", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("norm")
    axes[0][-1].legend(fontsize=6)
    return [report.save_figure(fig, out, "gradients.png", "Gradient signal and noise",
                   "Per layer, the norm of the mean and of the std of the gradients of the batches trained on "
                   "in each epoch (mean over seeds). Drift: mean above std; diffusion: std above mean.")]


def train_fractions(tables, out: str) -> list[Figure]:
    keys = finished_trials(tables)
    fractions = sorted(set(keys["train_fraction"]))
    if len(fractions) < 2:
        return []
    info = with_keys(tables["information"], keys)
    info = info[info["estimator"] == "bin_fixed"]
    act = "tanh" if "tanh" in set(info["activation"]) else sorted(set(info["activation"]))[0]
    info = info[info["activation"] == act]
    mean = info.groupby(["train_fraction", "layer", "epoch"], as_index=False)[["i_xt", "i_ty"]].mean()
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.4 * len(fractions), 3.8), sharey=True, squeeze=False)
    norm = matplotlib.colors.LogNorm(vmin=1, vmax=max(int(mean["epoch"].max()), 1) + 1)
    for ax, fraction in zip(axes[0], fractions):
        for _, g in mean[np.isclose(mean["train_fraction"], fraction)].groupby("layer"):
            g = g.sort_values("epoch")
            ax.plot(g["i_xt"], g["i_ty"], color="0.75", lw=0.8)
            ax.scatter(g["i_xt"], g["i_ty"], c=g["epoch"] + 1, norm=norm, cmap="viridis", s=8)
        ax.set_title(f"{act}, {fraction:.0%} training data", fontsize=9)
        ax.set_xlabel("I(X;T) [bits]")
    axes[0][0].set_ylabel("I(T;Y) [bits]")
    return [report.save_figure(fig, out, "train_fractions.png", "Training-set size",
                   "Information planes for each training fraction (binned, fixed range). With little "
                   "data, I(T;Y) falls during compression: overfitting.")]


def draw(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
    figures = []
    for make in (information_plane, compression, gradients, train_fractions):
        figures += make(tables, out)
    return figures


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """Per trial: final accuracies, and the last hidden layer's peak and final binned I(X;T)."""
    metrics = tables["metrics"].to_pandas()
    info = tables["information"].to_pandas()
    if metrics.empty:
        return pa.table({"trial_id": pa.array([], pa.string())})
    final = metrics.sort_values("epoch").groupby("trial_id").last()[["train_acc", "test_acc"]]
    hidden_last = int(info["layer"].max()) - 1 if not info.empty else 0
    rows = info[(info["layer"] == hidden_last) & (info["estimator"] == "bin_fixed")].sort_values("epoch")
    grouped = rows.groupby("trial_id")["i_xt"]
    out = final.join(pd.DataFrame({"peak_i_xt_last": grouped.max(), "final_i_xt_last": grouped.last()}))
    return pa.Table.from_pandas(out.reset_index(), preserve_index=False)

