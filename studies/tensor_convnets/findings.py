"""The papers' findings as numbers, from a sweep's Arrow tables (also listed by `lookinside report
tensor_convnets --findings`).

pooling_geometry: the final test accuracy per task, pooling and model (mean and spread over
seeds), and the margins square - mirror on closedness and mirror - square on symmetry.
separation_rank: the median rank over seeds per model, pooling, channels, side and partition.
depth efficiency: for each deep ConvAC (side, r), the smallest shallow Z of the sweep whose
median ranks reach the deep net's on every partition (NaN when no Z of the sweep does).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report

KEY_FIELDS = ["experiment", "model", "task", "pooling", "channels", "depth", "side", "n_train", "iterations",
              "seed", "preset"]


def frame(tables: Mapping[str, pa.Table], table: str) -> pd.DataFrame:
    """A table's rows of finished trials, with their config fields."""
    return report.finished_rows(tables, table, KEY_FIELDS)


def last_accuracy(accuracy: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Each trial's last measured accuracy on `split` (its row)."""
    return accuracy[accuracy["split"] == split].sort_values("step").groupby("trial_id").tail(1)


def final_accuracy(accuracy: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per (task, pooling, model): mean, std and count over seeds of the last measured accuracy."""
    return last_accuracy(accuracy, split).groupby(["task", "pooling", "model"])["accuracy"].agg(
        ["mean", "std", "count"])


def geometry_margins(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per model: closedness square - mirror and symmetry mirror - square (mean test accuracies)."""
    m = final_accuracy(accuracy)["mean"].unstack("pooling")
    if not {"square", "mirror"} <= set(m.columns):
        return pd.DataFrame(columns=["closedness", "symmetry"])
    diff = (m["square"] - m["mirror"]).unstack("task")
    if "symmetry" in diff:
        diff["symmetry"] = -diff["symmetry"]
    return diff


def median_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Median rank over seeds: rows (model, pooling, side, channels), columns partition."""
    return ranks.groupby(["model", "pooling", "side", "channels", "partition"])["rank"].median().unstack("partition")


def depth_efficiency(ranks: pd.DataFrame) -> pd.DataFrame:
    """Per deep ConvAC with square pooling (side, r): its largest median rank over the partitions and the
    smallest shallow Z of the sweep whose median ranks reach its ranks on every partition."""
    med = median_ranks(ranks)
    rows = []
    if "convac" not in med.index.get_level_values("model"):
        return pd.DataFrame(columns=["side", "r", "deep_max_rank", "smallest_z"])
    deep = med.xs(("convac", "square"), level=("model", "pooling"))
    shallow = med.xs("shallow", level="model").droplevel("pooling") if "shallow" in med.index.get_level_values(
        "model") else pd.DataFrame()
    for (side, r), need in deep.iterrows():
        found = np.nan
        if len(shallow) and side in shallow.index.get_level_values("side"):
            for z, got in shallow.xs(side, level="side").sort_index().iterrows():
                cols = need.dropna().index.intersection(got.dropna().index)
                if (got[cols] >= need[cols]).all():
                    found = z
                    break
        rows.append({"side": side, "r": r, "deep_max_rank": need.max(), "smallest_z": found})
    return pd.DataFrame(rows)


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """trial_id with its final test accuracy (pooling_geometry) or its odd/even and left/right ranks."""
    acc = last_accuracy(tables["accuracy"].to_pandas())
    ranks = tables["separation_rank"].to_pandas()
    wide = ranks.pivot_table(index="trial_id", columns="partition", values="rank").reindex(
        columns=["left_right", "odd_even"]).add_prefix("rank_").reset_index()
    out = acc[["trial_id", "step", "accuracy"]].rename(columns={"step": "last_step", "accuracy": "test_accuracy"})
    out = out.merge(wide, on="trial_id", how="outer") if len(wide) else out
    return pa.Table.from_pandas(out, preserve_index=False)


def summary_lines(tables: Mapping[str, pa.Table]) -> list[str]:
    lines = []
    acc = frame(tables, "accuracy")
    if len(acc):
        final = final_accuracy(acc)
        lines.append("Pooling geometry: final test accuracy (mean over seeds) " + "; ".join(
            f"{task} {pooling} {model} {row['mean']:.3f}" for (task, pooling, model), row in final.iterrows()) + ".")
        margins = geometry_margins(acc)
        if len(margins):
            lines.append("Pooling geometry: closedness square - mirror, symmetry mirror - square: " + "; ".join(
                f"{model} {row.get('closedness', np.nan):+.3f}, {row.get('symmetry', np.nan):+.3f}"
                for model, row in margins.iterrows()) + ".")
    ranks = frame(tables, "separation_rank")
    if len(ranks):
        med = median_ranks(ranks)
        shown = [c for c in ("left_right", "top_bottom", "odd_even", "random", "mirror_left_right",
                             "mirror_odd_even") if c in med.columns]
        lines.append("Separation rank (median over seeds; " + ", ".join(shown) + "): " + "; ".join(
            f"{model} {pooling} N={side * side} {'Z' if model == 'shallow' else 'r'}={ch} " +
            "/".join(f"{row[c]:.0f}" for c in shown)
            for (model, pooling, side, ch), row in med.iterrows()) + ".")
        eff = depth_efficiency(ranks)
        if len(eff):
            lines.append("Depth efficiency: smallest shallow Z matching a deep square ConvAC: " + "; ".join(
                f"N={row.side * row.side:.0f} r={row.r:.0f} -> " +
                (f"Z={row.smallest_z:.0f}" if np.isfinite(row.smallest_z) else "none in the sweep") +
                f" (deep rank up to {row.deep_max_rank:.0f})" for row in eff.itertuples()) + ".")
    return lines or ["No rows from finished trials."]
