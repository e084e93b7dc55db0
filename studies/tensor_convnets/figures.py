"""Figures of the tensor_convnets study, drawn from its Arrow tables only.

pooling_geometry.png (pooling sec. 6, its table of accuracies): final test accuracy per task,
pooling and model, the mean over seeds as a bar and each seed as a dot. separation_rank.png
(survey sec. 4; pooling sec. 5): the median rank per partition for deep ConvACs under square
and mirror pooling, and the shallow ConvAC's rank against Z. depth_efficiency.png (depth): the
smallest shallow Z that matches a deep ConvAC's ranks, against r, per N. Titles name the preset
and seeds; captions are computed from the data.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import pyarrow as pa

from lookinside import report
from lookinside.studies.tensor_convnets import findings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

POOLING_COLOURS = {"square": "tab:blue", "mirror": "tab:orange", "custom": "tab:green"}
PARTITION_ORDER = ["left_right", "top_bottom", "odd_even", "random", "mirror_left_right", "mirror_top_bottom",
                   "mirror_odd_even"]


def draw(tables: Mapping[str, pa.Table], out: str) -> list:
    drawn = []
    acc = findings.frame(tables, "accuracy")
    if len(acc):
        drawn.append(_pooling(acc, out))
    ranks = findings.frame(tables, "separation_rank")
    if len(ranks):
        drawn.append(_ranks(ranks, out))
        eff = findings.depth_efficiency(ranks)
        if len(eff) and (ranks["model"] == "shallow").any():
            drawn.append(_efficiency(eff, ranks, out))
    return drawn


def _pooling(acc, out):
    test = acc[acc["split"] == "test"]
    last = test.sort_values("step").groupby("trial_id").tail(1)
    model_names = sorted(last["model"].unique())
    fig, axes = plt.subplots(1, len(model_names), figsize=(4.2 * len(model_names) + 1, 4), layout="constrained",
                             sharey=True, squeeze=False)
    tasks = ["closedness", "symmetry"]
    poolings = [p for p in POOLING_COLOURS if p in set(last["pooling"])]
    width = 0.8 / len(poolings)
    for ax, model in zip(axes[0], model_names):
        for j, pooling in enumerate(poolings):
            for i, task in enumerate(tasks):
                v = last[(last["model"] == model) & (last["pooling"] == pooling) & (last["task"] == task)]["accuracy"]
                if not len(v):
                    continue
                x = i + (j - (len(poolings) - 1) / 2) * width
                ax.bar(x, v.mean(), width * 0.9, color=POOLING_COLOURS[pooling], alpha=0.8,
                       label=f"{pooling} pooling" if i == 0 else None)
                ax.plot([x] * len(v), v, "k.", ms=4)
        ax.axhline(0.5, color="0.5", ls=":", lw=0.8)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("task")
    axes[0][0].set_ylabel("final test accuracy (fraction; dots: seeds)")
    axes[0][0].set_ylim(0.4, 1.08)
    axes[0][0].legend(fontsize=7, loc="upper center", ncol=2)
    sizes = f"{int(last['n_train'].iloc[0])} images generated, {int(last['iterations'].iloc[0])} steps, " \
            f"{int(last['side'].iloc[0])}x{int(last['side'].iloc[0])}"
    fig.suptitle(f"Pooling geometry: closedness and symmetry blobs ({sizes})\n{report.preset_and_seeds(last)}",
                 fontsize=10)
    margins = findings.geometry_margins(acc)
    caption = ("In this run square pooling beats mirror on closedness by " + ", ".join(
        f"{r.get('closedness', np.nan):+.3f} ({m})" for m, r in margins.iterrows()) +
        " and mirror beats square on symmetry by " + ", ".join(
        f"{r.get('symmetry', np.nan):+.3f} ({m})" for m, r in margins.iterrows()) +
        " (final test accuracy, mean over seeds).")
    return report.save_figure(fig, out, "pooling_geometry.png", "Pooling geometry (Cohen & Shashua 2017)", caption)


def _ranks(ranks, out):
    med = findings.median_ranks(ranks)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    deep = med[med.index.get_level_values("model") == "convac"]
    parts = [p for p in PARTITION_ORDER if p in med.columns]
    side = deep.index.get_level_values("side").max() if len(deep) else 0
    shown = deep[deep.index.get_level_values("side") == side]
    rs = sorted(shown.index.get_level_values("channels").unique())
    colours = plt.cm.viridis(np.linspace(0, 0.85, max(len(rs), 1)))
    for i, ((_, pooling, _, r), row) in enumerate(shown.iterrows()):
        x = np.arange(len(parts)) + (i - (len(shown) - 1) / 2) * 0.8 / max(len(shown), 1)
        axes[0].plot(x, row[parts].to_numpy(float), "o" if pooling == "square" else "s", ls="none",
                     mfc=colours[rs.index(r)] if pooling == "square" else "none", color=colours[rs.index(r)],
                     label=f"{pooling} pooling, r = {r}")
    if len(shown):
        axes[0].axhline(2 ** (side * side // 2), color="0.5", ls=":", lw=0.8,
                        label=f"largest possible, 2^{side * side // 2}")
    for x in np.arange(len(parts) - 1) + 0.5:
        axes[0].axvline(x, color="0.9", lw=0.8)
    axes[0].set_xticks(range(len(parts)), [p.replace("mirror_", "mirror\n") for p in parts], fontsize=7)
    axes[0].set_yscale("log", base=2)
    axes[0].set_xlabel("partition (I, J) of the input positions")
    axes[0].set_ylabel("separation rank (median over seeds)")
    axes[0].set_title(f"deep ConvACs at N = {side * side}: square (filled) and mirror (open) pooling", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    shallow = ranks[ranks["model"] == "shallow"]
    for (side, part), g in shallow.groupby(["side", "partition"]):
        if part.startswith("mirror_"):
            continue
        s = g.groupby("channels")["rank"].median()
        axes[1].plot(s.index, s.to_numpy(), marker=".", label=f"N={side * side}, {part}")
    if len(shallow):
        z = np.array(sorted(shallow["channels"].unique()), float)
        axes[1].plot(z, z, "k:", lw=1, label="rank = Z")
        axes[1].set_xscale("log", base=2)
        axes[1].set_yscale("log", base=2)
    axes[1].set_xlabel("shallow ConvAC channels Z")
    axes[1].set_ylabel("separation rank (median over seeds)")
    axes[1].set_title("shallow ConvAC (CP): rank against Z", fontsize=9)
    axes[1].legend(fontsize=6, ncol=2)
    tol = ", ".join(f"{t:g}" for t in sorted(ranks["tolerance"].unique()))
    fig.suptitle(f"Separation rank of random networks' grid tensors (tolerance {tol} x largest singular value)\n"
                 f"{report.preset_and_seeds(ranks)}", fontsize=10)
    over = shallow[shallow["rank"] > shallow["channels"]]
    caption = "In this run " + "; ".join(
        f"{pooling} r={r} N={side * side}: odd/even {row.get('odd_even', np.nan):.0f}, left/right "
        f"{row.get('left_right', np.nan):.0f}, mirror odd/even {row.get('mirror_odd_even', np.nan):.0f}, "
        f"mirror left/right {row.get('mirror_left_right', np.nan):.0f}"
        for (_, pooling, side, r), row in deep.iterrows()) + (
        f"; shallow ConvACs exceed rank Z in {len(over)} of {len(shallow)} measurements." if len(shallow) else ".")
    return report.save_figure(fig, out, "separation_rank.png", "Separation rank by partition and model", caption)


def _efficiency(eff, ranks, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    largest = ranks.loc[ranks["model"] == "shallow", "channels"].max()
    for side, g in eff.groupby("side"):
        g = g.sort_values("r")
        found = g[np.isfinite(g["smallest_z"])]
        line, = ax.plot(found["r"], found["smallest_z"], marker="o", label=f"N = {side * side}: smallest Z")
        ax.plot(g["r"], g["deep_max_rank"], ls=":", color=line.get_color(),
                label=f"N = {side * side}: the deep net's largest rank")
        missing = g[~np.isfinite(g["smallest_z"])]
        if len(missing):
            ax.plot(missing["r"], [largest] * len(missing), "^", color=line.get_color(), ms=9, mfc="none",
                    label=f"N = {side * side}: above Z = {largest} (the sweep's largest)")
    ax.set_yscale("log", base=2)
    ax.set_xticks(sorted(eff["r"].unique()))
    ax.set_xlabel("deep ConvAC channels r (square pooling)")
    zs = sorted(ranks.loc[ranks["model"] == "shallow", "channels"].unique())
    ax.set_ylabel(f"shallow channels Z, searched over {', '.join(map(str, zs))}\n(dotted: rank)", fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle("Depth efficiency: shallow channels needed to match a deep ConvAC's ranks\n"
                 f"{report.preset_and_seeds(ranks)}", fontsize=10)
    caption = "In this run the smallest matching Z is " + "; ".join(
        f"{'>' + str(largest) if not np.isfinite(row.smallest_z) else f'{row.smallest_z:.0f}'} at N={row.side ** 2}, "
        f"r={row.r:.0f}" for row in eff.sort_values(["side", "r"]).itertuples()) + "."
    return report.save_figure(fig, out, "depth_efficiency.png", "Depth efficiency (Cohen, Sharir & Shashua 2016)",
                              caption)
