"""Figures of the SAMDP builds (stage build), drawn from their Arrow tables only.

- samdp_map.png: one build's 2-D map of the recorded states, coloured by the DQN's value
  (max Q), by cluster, and by each game feature recorded (as Graying's Figures 2-4).
- samdp_graph.png: the same build's SAMDP over its map: a node per cluster at the mean map
  position of its states, sized by its states and coloured by v_SAMDP; an arrow per kept
  transition, as wide as its probability (Graying's SAMDP figures).
- samdp_scores.png: VMSE, entropy and inertia against k for each clustering method (mean
  over the builds' seeds, with their range), as Graying's comparison of methods.
The shown build is the spatio-temporal one (else any) whose k is nearest the middle of the
sweep's k values, seed 0 first; its title names it.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import pandas as pd
import pyarrow as pa

from lookinside import report
from lookinside.study import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

METHOD_NAMES = {"spatio_temporal": "spatio-temporal K-means", "kmeans": "K-means"}
FEATURE_NAMES = {"ball_x": "ball x (px)", "ball_y": "ball y (px)", "paddle_x": "paddle x (px)",
                 "bricks_remaining": "bricks standing", "tunnel_open": "tunnel open",
                 "player_x": "player x (px)", "player_y": "player y (px)", "oxygen": "oxygen (0-64)",
                 "divers_collected": "divers collected"}


def _builds(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    trials = tables["trials"]
    fields = [f for f in ("stage", "k", "method", "seed", "embedding", "preset", "source_sweep")
              if f in trials.column_names]
    keys = report.finished_trials(trials, fields)
    return keys[keys["stage"] == "build"] if "stage" in keys else keys.iloc[0:0]


def _chosen(builds: pd.DataFrame) -> pd.Series:
    ks = sorted(set(builds["k"]))
    middle = ks[len(ks) // 2]
    order = builds.assign(st=builds["method"] != "spatio_temporal", dk=(builds["k"] - middle).abs())
    return order.sort_values(["st", "dk", "seed", "trial_id"]).iloc[0]


def _label(build: pd.Series) -> str:
    return f"{METHOD_NAMES.get(build['method'], build['method'])}, k = {build['k']}, seed {build['seed']}"


def draw(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
    builds = _builds(tables)
    if builds.empty or not tables["embedding_2d"].num_rows:
        return []
    build = _chosen(builds)
    points = tables["embedding_2d"].filter(pa.compute.equal(tables["embedding_2d"]["trial_id"], build["trial_id"]))
    points = points.to_pandas()
    clusters = tables["samdp_clusters"].to_pandas()
    clusters = clusters[clusters["trial_id"] == build["trial_id"]]
    edges = tables["samdp_transitions"].to_pandas()
    edges = edges[(edges["trial_id"] == build["trial_id"]) & (edges["probability"] > 0)]
    return [_map(points, build, out), _graph(points, clusters, edges, build, out), *_scores(tables, builds, out)]


def _map(points: pd.DataFrame, build: pd.Series, out: str) -> Figure:
    recorded = [f for f in FEATURE_NAMES if f in points and points[f].notna().any()]
    features = [f for f in recorded if points[f].nunique() > 1]
    constant = [f"{FEATURE_NAMES[f]} {points[f].dropna().iloc[0]}" for f in recorded if f not in features]
    panels = ["value", "cluster", *features]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, panels):
        shown = points[points[name].notna()] if name in features else points
        colours = shown[name].astype(float)
        cmap = "tab20" if name == "cluster" else "viridis"
        ax.scatter(points["x"], points["y"], s=2, color="0.88", rasterized=True)
        sc = ax.scatter(shown["x"], shown["y"], c=colours, s=3, cmap=cmap, rasterized=True)
        ax.set_title({"value": "DQN value (max Q)", "cluster": "cluster"}.get(name, FEATURE_NAMES.get(name, name)),
                     fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        if name != "cluster":
            fig.colorbar(sc, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    games = points.groupby(["source_trial_id", "checkpoint_step", "trajectory"]).ngroups
    fig.suptitle(f"Map of {len(points):,} recorded states ({games} games; {build['embedding']} map; "
                 f"{_label(build)})", fontsize=10)
    caption = (f"{len(points):,} states of {games} games; {_label(build)}. The clusters explain "
               f"{_explained(points):.0%} of the value's variance across states; grey points lack the panel's "
               f"feature" + (f"; constant here, not drawn: {', '.join(constant)}" if constant else "") + ".")
    return report.save_figure(fig, out, "samdp_map.png", "Recorded states on the map", caption)


def _explained(points: pd.DataFrame) -> float:
    """Between-cluster share of the value's variance (1 - within / total)."""
    total = points["value"].var(ddof=0)
    within = points.groupby("cluster")["value"].transform(lambda v: v - v.mean()).pow(2).mean()
    return float(1 - within / total) if total > 0 else float("nan")


def _graph(points, clusters, edges, build, out) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
    ax.scatter(points["x"], points["y"], s=2, color="0.85", rasterized=True)
    pos = clusters.set_index("cluster")[["x", "y"]]
    for e in edges.itertuples():
        (x0, y0), (x1, y1) = pos.loc[e.source], pos.loc[e.target]
        ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "-|>", "lw": 0.5 + 3 * e.probability,
                                                        "color": "0.3", "alpha": 0.7, "shrinkA": 6, "shrinkB": 6})
    sizes = 30 + 400 * clusters["size"] / max(clusters["size"].max(), 1)
    sc = ax.scatter(clusters["x"], clusters["y"], s=sizes, c=clusters["v_samdp"], cmap="coolwarm",
                    edgecolor="k", zorder=3)
    for c in clusters.itertuples():
        ax.annotate(str(c.cluster), (c.x, c.y), fontsize=7, ha="center", va="center", zorder=4)
    fig.colorbar(sc, ax=ax, label="v_SAMDP (discounted clipped reward)")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(f"SAMDP over the map ({_label(build)}); arrow width ~ transition probability", fontsize=10)
    best = clusters.sort_values("v_samdp").iloc[-1]
    caption = (f"{len(edges)} kept transitions between {len(clusters)} clusters; the highest v_SAMDP "
               f"({best['v_samdp']:.3f}) is cluster {int(best['cluster'])} ({int(best['size'])} states, "
               f"mean stay {best['mean_duration']:.1f} steps); v_DQN there is {best['v_dqn']:.3f}.")
    return report.save_figure(fig, out, "samdp_graph.png", "The SAMDP", caption)


def _scores(tables, builds, out) -> list[Figure]:
    scores = tables["samdp_scores"].to_pandas().merge(builds, on="trial_id")
    if scores["k"].nunique() < 2:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    notes = []
    for method, rows in scores.groupby("method"):
        by_k = rows.groupby("k")
        for ax, name in zip(axes, ("vmse", "entropy", "inertia")):
            mean = by_k[name].mean()
            line, = ax.plot(mean.index, mean.values, marker="o", label=METHOD_NAMES.get(method, method))
            ax.fill_between(mean.index, by_k[name].min(), by_k[name].max(), color=line.get_color(), alpha=0.2)
    titles = {"vmse": "VMSE = |v_DQN - v_SAMDP| / |v_DQN|", "entropy": "entropy of P (nats, size-weighted)",
              "inertia": "inertia (within-cluster sum of squares)"}
    for ax, name in zip(axes, titles):
        ax.set_xlabel("k (clusters)")
        ax.set_ylabel(name)
        ax.set_title(titles[name], fontsize=9)
    axes[0].legend(fontsize=8, frameon=False)
    wide = scores.pivot_table(index="k", columns="method", values=["vmse", "entropy"], aggfunc="mean")
    if {"spatio_temporal", "kmeans"} <= set(scores["method"]):
        for name in ("vmse", "entropy"):
            lower = int((wide[name]["spatio_temporal"] < wide[name]["kmeans"]).sum())
            notes.append(f"spatio-temporal {name} is lower than K-means' at {lower} of {len(wide)} k")
    seeds = sorted(set(scores["seed"]))
    fig.suptitle(f"SAMDP consistency against k (mean over seeds {', '.join(map(str, seeds))}, band: range)",
                 fontsize=10)
    caption = ("; ".join(notes) or "one method only") + "."
    return [report.save_figure(fig, out, "samdp_scores.png", "SAMDP scores against k", caption)]
