"""Figures of the implicit regularisation study, drawn from its Arrow tables only.

width.png: final train and test error, then the three norms, against H (log scale), one
line per label-noise level, mean over seeds with the seeds' range shaded. curves.png: the
training loss and test error per epoch, a colour per optimiser and a line style per init, a
column per dropout rate. Titles name the preset, dataset, training-set size and seeds;
captions say what this run's numbers show.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report
from lookinside.studies.implicit_regularization import findings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

OPTIMIZER_COLOURS = {"sgd": "#1b9e77", "adagrad": "#7570b3", "path_sgd": "#d95f02"}
INIT_STYLES = {"balanced": "-", "unbalanced": "--"}
NORMS = {"l2_norm": "l2 norm of weights", "path_norm": "l2 path norm", "spectral_product": "product of spectral norms"}


def run_label(m: pd.DataFrame) -> str:
    preset = ", ".join(sorted(set(m["preset"].astype(str)))) if "preset" in m else "?"
    train = "all" if (m["train_size"] == 0).all() else "/".join(str(v) for v in sorted(set(m["train_size"])))
    return (f"preset {preset} · {', '.join(sorted(set(m['dataset'])))}, training examples {train} · "
            f"{m['seed'].nunique()} seed(s) · up to {m['epochs'].max()} epochs")


def draw(tables: Mapping[str, pa.Table], out: str) -> list:
    metrics = findings.frame(tables)
    drawn = []
    if (metrics["experiment"] == "width").any():
        drawn.append(_width(metrics[metrics["experiment"] == "width"], out))
    if (metrics["experiment"] == "path_sgd").any():
        drawn.append(_curves(metrics[metrics["experiment"] == "path_sgd"], out))
    return drawn


def _width(m: pd.DataFrame, out: str):
    last = findings.final_rows(m)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for noise, g in last.groupby("label_noise"):
        stats = g.groupby("hidden")[["train_error", "test_error", *NORMS]].agg(["mean", "min", "max"])
        h = stats.index.to_numpy()
        for column, style in (("train_error", ":"), ("test_error", "-")):
            line, = axes[0].plot(h, stats[column]["mean"], style, marker="o",
                                 label=f"{column.split('_')[0]}, {noise:.0%} label noise")
            axes[0].fill_between(h, stats[column]["min"], stats[column]["max"], color=line.get_color(), alpha=0.15)
        for column, colour in zip(NORMS, ("C0", "C1", "C2")):
            axes[1].plot(h, stats[column]["mean"], marker="o", color=colour, ls="-" if noise == 0 else "--",
                         label=f"{NORMS[column]}, {noise:.0%} noise")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden units H")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("error (fraction misclassified) at the last epoch")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("norm at the last epoch (unitless)")
    fig.suptitle(f"Width sweep: error and norms against H\n{run_label(m)}", fontsize=10)
    return report.save_figure(fig, out, "width.png", "Error and norms against the number of hidden units",
                              _width_caption(m))


def _width_caption(m: pd.DataFrame) -> str:
    table = findings.width_table(m)
    parts = []
    for noise in sorted(set(table.index.get_level_values(0))):
        found = findings.width_finding(table, noise)
        t = table.loc[noise]
        trend = "falls" if t["path_norm"].iloc[-1] < t["path_norm"].iloc[0] else "rises"
        path = f"the path norm {trend} from {t['path_norm'].iloc[0]:.3g} to {t['path_norm'].iloc[-1]:.3g}"
        if found is None:
            parts.append(f"with {noise:.0%} label noise no H reaches zero training error; {path}")
        else:
            parts.append(f"with {noise:.0%} label noise the test error is {found['smallest_test']:.3f} at "
                         f"H={found['smallest_h']} (the smallest H reaching zero training error) and "
                         f"{found['largest_test']:.3f} at H={found['largest_h']}; {path}")
    return "In this run, " + "; ".join(parts) + " (final epoch, mean over seeds; shading: range over seeds)."


def _curves(m: pd.DataFrame, out: str):
    dropouts = sorted(set(m["dropout"]))
    fig, axes = plt.subplots(2, len(dropouts), figsize=(5.5 * len(dropouts), 7), squeeze=False,
                             layout="constrained", sharex=True)
    for col, dropout in enumerate(dropouts):
        for (opt, init), g in m[m["dropout"] == dropout].groupby(["optimizer", "init"]):
            curve = g.groupby("epoch")[["train_loss", "test_error"]].mean()
            style = {"color": OPTIMIZER_COLOURS.get(opt, "k"), "ls": INIT_STYLES.get(init, ":"),
                     "label": f"{opt}, {init}"}
            axes[0, col].plot(curve.index, curve["train_loss"], **style)
            axes[1, col].plot(curve.index, curve["test_error"], **style)
        threshold = m["loss_threshold"].iloc[0]
        axes[0, col].axhline(threshold, color="0.5", lw=0.8, ls=":", label=f"threshold {threshold:g}")
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(f"dropout {dropout:g}", fontsize=9)
        axes[0, col].set_ylabel("training cross-entropy (nats)")
        axes[1, col].set_ylabel("test error (fraction)")
        axes[1, col].set_xlabel("epoch")
        axes[0, col].legend(fontsize=7)
    depth, hidden = m["depth"].iloc[0], m["hidden"].iloc[0]
    fig.suptitle(f"Training curves per optimiser and init ({depth} x {hidden} ReLU units)\n{run_label(m)}",
                 fontsize=10)
    speed = findings.epochs_to_threshold(m)["epochs_to_threshold"]
    said = "; ".join(f"{o} ({i}, dropout {d:g}) {'never' if not np.isfinite(v) else f'{v:.0f}'}"
                     for (o, i, d), v in speed.items())
    return report.save_figure(fig, out, "curves.png", "Training curves per optimiser and init",
                              f"Epochs to reach training loss {m['loss_threshold'].iloc[0]:g} in this run: {said} "
                              "(mean over seeds). Path-SGD's balanced and unbalanced curves coincide: its steps "
                              "do not see the rescaling.")
