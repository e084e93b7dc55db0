"""The paper's findings as numbers, from a sweep's Arrow tables.

    python -m lookinside.studies.information_bottleneck.findings [--results ROOT] [--sweep ID]

Prints, per activation and training fraction: how far the last hidden layer's binned I(X;T)
falls from its peak by the end (compression) under each binning rule, how far its I(T;Y)
falls (overfitting), the final accuracies, and per layer the first logged epoch after the
gradient mean's peak at which the gradient std exceeds it (drift to diffusion).
"""

from __future__ import annotations

import argparse

import pandas as pd

from lookinside.report import load_sweep
from lookinside.studies.information_bottleneck import STUDY
from lookinside.studies.information_bottleneck.figures import finished_trials, with_keys


def _frame(tables, name: str) -> pd.DataFrame:
    return with_keys(tables[name], finished_trials(tables))


def compression(tables) -> pd.DataFrame:
    info = _frame(tables, "information")
    info = info[info["estimator"].str.startswith("bin") & (info["layer"] == info["layer"].max() - 1)]
    per_trial = info.sort_values("epoch").groupby(["activation", "train_fraction", "estimator", "trial_id"]).agg(
        peak=("i_xt", "max"), final=("i_xt", "last"), ty_peak=("i_ty", "max"), ty_final=("i_ty", "last"))
    per_trial["drop"] = per_trial["peak"] - per_trial["final"]
    per_trial["i_ty_drop"] = per_trial["ty_peak"] - per_trial["ty_final"]
    return per_trial.groupby(level=[0, 1, 2]).agg(
        mean_drop=("drop", "mean"), min_drop=("drop", "min"), max_drop=("drop", "max"),
        mean_i_ty_drop=("i_ty_drop", "mean"), seeds=("drop", "size")).round(3)


def accuracy(tables) -> pd.DataFrame:
    metrics = _frame(tables, "metrics")
    final = metrics[metrics["epoch"] == metrics["epoch"].max()]
    return final.groupby(["activation", "train_fraction"])[["train_acc", "test_acc"]].mean().round(3)


def snr_transition(tables) -> pd.DataFrame:
    grads = _frame(tables, "gradients")
    grads = grads[grads["train_fraction"] == grads["train_fraction"].max()]
    mean = grads.groupby(["activation", "layer", "epoch"])[["grad_mean_norm", "grad_std_norm"]].mean().reset_index()
    rows = []
    for (activation, layer), g in mean.groupby(["activation", "layer"]):
        peak = g.loc[g["grad_mean_norm"].idxmax(), "epoch"]
        after = g[(g["epoch"] > peak) & (g["grad_std_norm"] > g["grad_mean_norm"])]
        rows.append({"activation": activation, "layer": layer, "mean_peak_epoch": peak,
                     "std_exceeds_mean_epoch": after["epoch"].min() if len(after) else None})
    return pd.DataFrame(rows).set_index(["activation", "layer"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="./results")
    parser.add_argument("--sweep", default=None, help="sweep id (default: the latest)")
    args = parser.parse_args(argv)
    sweep_id, tables = load_sweep(STUDY, args.results, args.sweep)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", None)
    print(f"sweep {sweep_id}\n\nlast hidden layer, peak minus final (bits):\n{compression(tables)}")
    print(f"\nfinal accuracy:\n{accuracy(tables)}")
    print(f"\ngradient mean vs std (largest training fraction):\n{snr_transition(tables)}")


if __name__ == "__main__":
    main()
