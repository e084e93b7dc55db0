"""The paper's findings as numbers, from a sweep's Arrow tables (also listed by `lookinside report
gradient_failures --findings`).

parity: final test accuracy per d (mean over seeds), and a least-squares line of log2(gradient
variance) against d over d = 2..16 (slope, R^2). piecewise_linear: per formulation, the slope
of log(condition number) against log(n), and the first iteration at which the test loss falls
below a threshold. stocks: per k, end-to-end's per-example gradient variance over
decomposition's (mean over seeds). tuples: final accuracy and the gradient SNR at the
initialisation per k and method. flat_activation: final error per method.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report

KEY_FIELDS = ["experiment", "method", "d", "k", "curve_length", "iterations", "snr_batches", "seed",
              "preset"]


def frame(tables: Mapping[str, pa.Table], table: str) -> pd.DataFrame:
    """A table's rows of finished trials, with their config fields."""
    return report.finished_rows(tables, table, KEY_FIELDS)


def final_accuracy(metrics: pd.DataFrame, experiment: str, by: str | list[str]) -> pd.Series:
    m = metrics[metrics["experiment"] == experiment]
    last = m.sort_values("iteration").groupby("trial_id").tail(1)
    return last.groupby(by)["accuracy"].mean()


def variance_fit(variance: pd.DataFrame, low: int = 2, high: int = 16) -> dict:
    """Slope and R^2 of log2(mean variance over seeds) against d for low <= d <= high."""
    v = variance[(variance["experiment"] == "parity") & variance["d"].between(low, high)]
    mean = v.groupby("d")["variance"].mean()
    d, y = mean.index.to_numpy(float), np.log2(mean.to_numpy())
    if len(d) < 3:
        return {"slope": np.nan, "r2": np.nan, "points": len(d)}
    slope, intercept = np.polyfit(d, y, 1)
    residual = y - (slope * d + intercept)
    return {"slope": float(slope), "r2": float(1 - (residual ** 2).sum() / ((y - y.mean()) ** 2).sum()),
            "points": len(d)}


def condition_exponents(conditions: pd.DataFrame) -> dict[str, float]:
    """Per method: the slope of log(condition number) against log(n), over every trial's rows."""
    found = {}
    for method, g in conditions.groupby("method"):
        mean = g.groupby("n")["condition_number"].mean()
        found[method] = float(np.polyfit(np.log(mean.index.to_numpy(float)), np.log(mean.to_numpy()), 1)[0])
    return found


def iterations_to_loss(metrics: pd.DataFrame, threshold: float) -> dict[str, float]:
    """Per piecewise_linear method: the first measured iteration with test loss below threshold (inf: never)."""
    m = metrics[metrics["experiment"] == "piecewise_linear"]
    found = {}
    for method, g in m.groupby("method"):
        hit = g.loc[g["loss"] < threshold, "iteration"]
        found[method] = float(hit.min()) if len(hit) else np.inf
    return found


def stocks_ratio(variance: pd.DataFrame) -> pd.Series:
    """Per k: end-to-end's gradient variance over decomposition's (each the mean over seeds)."""
    v = variance[variance["experiment"] == "stocks"].groupby(["k", "method"])["variance"].mean().unstack()
    return v["end_to_end"] / v["decomposition"] if {"end_to_end", "decomposition"} <= set(v.columns) else pd.Series()


def tuples_accuracy(metrics: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per k (rows) and method (columns), the mean over seeds."""
    return final_accuracy(metrics, "tuples", ["k", "method"]).unstack()


def snr_resolution(snr_batches: int) -> float:
    """About one standard error of the SNR estimate when the signal is near zero: the unbiased
    ||mean g||^2 - noise / n has standard deviation sqrt(2 tr(S^2)) / n <= sqrt(2) noise / n for the
    batch gradients' covariance S (tr(S^2) <= (tr S)^2), i.e. an SNR of sqrt(2) / n."""
    return float(np.sqrt(2) / snr_batches)


def tuples_snr(snr: pd.DataFrame) -> pd.DataFrame:
    """Per k (rows) and method (columns): the mean SNR over seeds."""
    s = snr[snr["experiment"] == "tuples_snr"]
    return s.groupby(["k", "method"])["snr"].mean().unstack()


def flat_final(metrics: pd.DataFrame) -> pd.DataFrame:
    """flat_activation: per method, the final test squared error and level accuracy (means over seeds)."""
    m = metrics[metrics["experiment"] == "flat_activation"]
    last = m.sort_values("iteration").groupby("trial_id").tail(1)
    return last.groupby("method")[["iteration", "loss", "accuracy"]].mean()


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """trial_id with its last measured iteration, test loss and accuracy, for the report's trial table."""
    metrics = tables["metrics"].to_pandas()
    last = metrics.sort_values("iteration").groupby("trial_id").tail(1)
    out = last[["trial_id", "iteration", "loss", "accuracy"]].rename(
        columns={"iteration": "last_iteration", "loss": "test_loss", "accuracy": "test_accuracy"})
    return pa.Table.from_pandas(out, preserve_index=False)


CURVE_LOSS = 1e-3   # "a small loss" on the kinks' mean squared error (slopes are U[-1, 1])


def summary_lines(tables: Mapping[str, pa.Table]) -> list[str]:
    lines = []
    metrics, variance = frame(tables, "metrics"), frame(tables, "gradient_variance")
    if (metrics["experiment"] == "parity").any():
        acc = final_accuracy(metrics, "parity", "d")
        lines.append("Parity: final test accuracy " + ", ".join(f"d={int(d)} {a:.3f}" for d, a in acc.items()) + ".")
        fit = variance_fit(variance)
        lines.append(f"Parity: log2 gradient variance against d over d = 2..16 ({fit['points']} values of d): "
                     f"slope {fit['slope']:.2f}, R^2 {fit['r2']:.3f} (the bound's slope is -1).")
    conditions = frame(tables, "condition_numbers")
    if len(conditions):
        lines.append("Curves: condition number ~ n^a with a = " + ", ".join(
            f"{m} {a:.2f}" for m, a in condition_exponents(conditions).items()) +
            f"; largest whitened {conditions.loc[conditions['method'] == 'whitened', 'condition_number'].max():.3g}.")
    if (metrics["experiment"] == "piecewise_linear").any():
        speed = iterations_to_loss(metrics, CURVE_LOSS)
        lines.append(f"Curves: first iteration with test MSE < {CURVE_LOSS:g}: " + ", ".join(
            f"{m} {'never' if not np.isfinite(v) else f'{v:.0f}'}" for m, v in speed.items()) + ".")
    ratio = stocks_ratio(variance)
    if len(ratio):
        lines.append("Stocks: end-to-end / decomposition gradient variance " + ", ".join(
            f"k={k:.0f} {r:.3g} ({r / k:.2f} k)" for k, r in ratio.items()) + ".")
    if (metrics["experiment"] == "tuples").any():
        acc = tuples_accuracy(metrics)
        lines.append("Tuples: final test accuracy " + "; ".join(
            f"k={k:.0f} " + ", ".join(f"{m} {a:.3f}" for m, a in row.items()) for k, row in acc.iterrows()) + ".")
    snr = frame(tables, "gradient_snr")
    if len(snr):
        s = tuples_snr(snr)
        floor = snr_resolution(int(snr["snr_batches"].min()))
        lines.append(f"Tuples: gradient SNR at init (resolution about {floor:.1e}) " + "; ".join(
            f"k={k:.0f} " + ", ".join(f"{m} {v:.2e}" for m, v in row.items()) for k, row in s.iterrows()) + ".")
    if (metrics["experiment"] == "flat_activation").any():
        lines.append("Flat activation: final test squared error and level accuracy " + ", ".join(
            f"{m} {r.loss:.3g} / {r.accuracy:.3f} (iteration {r.iteration:.0f})"
            for m, r in flat_final(metrics).iterrows()) + ".")
    return lines or ["No rows from finished trials."]
