"""Figures of the gradient failures study, drawn from its Arrow tables only.

parity.png (paper Fig. 1): test accuracy against iterations per d, and the gradient variance
at the initialisation against d (log2 axis) with its fitted line. stocks.png (Fig. 4): test
accuracy against iterations per k and method, and the per-example gradient variance against k.
curves.png (Fig. 6): the test loss per formulation against iterations, the condition number
against n (log-log), and the fixed test example's target and last prediction. tuples.png (Fig.
3): test accuracy against iterations per k, both methods. tuples_snr.png (Fig. 5): the
gradient SNR at the initialisation against k (log axis). flat_activation.png (Fig. 7): test
error per method against iterations, and each method's learned function beside the staircase. Titles name
the preset and seeds; captions are computed from the data.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import pyarrow as pa

from lookinside import report
from lookinside.studies.gradient_failures import findings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend


def draw(tables: Mapping[str, pa.Table], out: str) -> list:
    metrics, variance = findings.frame(tables, "metrics"), findings.frame(tables, "gradient_variance")
    curves = findings.frame(tables, "curves")
    drawn = []
    if (metrics["experiment"] == "parity").any():
        drawn.append(_parity(metrics[metrics["experiment"] == "parity"], variance, out))
    if (metrics["experiment"] == "stocks").any():
        drawn.append(_stocks(metrics[metrics["experiment"] == "stocks"], variance, out))
    if (metrics["experiment"] == "piecewise_linear").any():
        drawn.append(_curves(metrics[metrics["experiment"] == "piecewise_linear"],
                             findings.frame(tables, "condition_numbers"),
                             curves[curves["experiment"] == "piecewise_linear"], out))
    if (metrics["experiment"] == "tuples").any():
        drawn.append(_tuples(metrics[metrics["experiment"] == "tuples"], out))
    snr = findings.frame(tables, "gradient_snr")
    if len(snr):
        drawn.append(_tuples_snr(snr, out))
    if (metrics["experiment"] == "flat_activation").any():
        drawn.append(_flat(metrics[metrics["experiment"] == "flat_activation"],
                           curves[curves["experiment"] == "flat_activation"], out))
    return drawn


def _loss_curves(ax, m, ylabel, **style):
    """Each method's test loss (mean over seeds) against iterations, on a log axis."""
    for method, g in m.groupby("method"):
        curve = g.groupby("iteration")["loss"].mean()
        ax.plot(curve.index, curve.to_numpy(), label=method, **style)
    ax.set_yscale("log")
    ax.set_xlabel("Adam iteration")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _last_predictions(ax, shown, target_label, with_iteration=False, **style):
    """Each method's prediction at its last recorded iteration beside the target, along `position`."""
    for i, (method, g) in enumerate(shown.groupby("method")):
        last = g[g["iteration"] == g["iteration"].max()].groupby("position")[["target", "prediction"]].first()
        if i == 0:
            ax.plot(last.index, last["target"], "k-", lw=2, label=target_label)
        label = f"{method} (iteration {g['iteration'].max()})" if with_iteration else method
        ax.plot(last.index, last["prediction"], label=label, **style)


def _parity(m, variance, out):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for d, g in m.groupby("d"):
        curve = g.groupby("iteration")["accuracy"].mean()
        axes[0].plot(curve.index, curve.to_numpy(), marker=".", label=f"d = {int(d)}")
    axes[0].axhline(0.5, color="0.5", ls=":", lw=0.8, label="chance")
    axes[0].set_xlabel("SGD iteration")
    axes[0].set_ylabel("test accuracy (fraction of 500 fresh examples)")
    axes[0].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    v = variance[variance["experiment"] == "parity"].groupby("d")["variance"].mean()
    fit = findings.variance_fit(variance)
    axes[1].plot(v.index, v.to_numpy(), "o", label="measured (mean over seeds)")
    if np.isfinite(fit["slope"]):
        dd = v.index[(v.index >= 2) & (v.index <= 16)].to_numpy(float)
        ref = np.log2(v.loc[dd].to_numpy()).mean() - fit["slope"] * dd.mean()
        axes[1].plot(dd, 2 ** (fit["slope"] * dd + ref), "-", label=f"fit: slope {fit['slope']:.2f} in log2")
    axes[1].set_yscale("log", base=2)
    axes[1].set_xlabel("input dimension d (bits)")
    axes[1].set_ylabel("gradient variance across targets\n(loss$^2$ per weight$^2$, at init)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Parity: test accuracy and gradient variance against input dimension d\n{report.preset_and_seeds(m)}",
                 fontsize=10)
    acc = findings.final_accuracy(m, "parity", "d")
    caption = (f"In this run the final test accuracy is {', '.join(f'{a:.3f} at d={d:.0f}' for d, a in acc.items())}; "
               f"log2 of the gradient variance falls with slope {fit['slope']:.2f} per bit (R^2 {fit['r2']:.3f}, "
               f"{fit['points']} values of d in 2..16).")
    return report.save_figure(fig, out, "parity.png", "Parity (paper Fig. 1)", caption)


def _stocks(m, variance, out):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for (k, method), g in m.groupby(["k", "method"]):
        curve = g.groupby("iteration")["accuracy"].mean()
        axes[0].plot(curve.index, curve.to_numpy(), ls="-" if method == "decomposition" else "--",
                     label=f"{method}, k = {k:.0f}")
    axes[0].set_xlabel("Adam iteration")
    axes[0].set_ylabel("test accuracy (argmax p = hidden label)")
    axes[0].legend(fontsize=7)
    v = variance[variance["experiment"] == "stocks"].groupby(["k", "method"])["variance"].mean().unstack()
    for method in v.columns:
        axes[1].plot(v.index, v[method].to_numpy(), marker="o", label=method)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("hidden labels k")
    axes[1].set_ylabel("per-example gradient variance at init\n(squared loss units)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Stocks: end-to-end against decomposition\n{report.preset_and_seeds(m)}", fontsize=10)
    ratio = findings.stocks_ratio(variance)
    caption = ("In this run the end-to-end gradient variance is " +
               ", ".join(f"{r:.4g} times decomposition's at k={k:.0f}" for k, r in ratio.items()) + ".")
    return report.save_figure(fig, out, "stocks.png", "Stocks (paper Fig. 4)", caption)


def _curves(m, conditions, shown, out):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    _loss_curves(axes[0], m, "test mean squared error (kinks; autoencoder: curve)")
    for method, g in conditions.groupby("method"):
        c = g.groupby("n")["condition_number"].mean()
        axes[1].plot(c.index, c.to_numpy(), marker="o", label=method)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    lengths = sorted(conditions["n"].unique())
    axes[1].set_xticks(lengths, [f"{n:.0f}" for n in lengths])
    axes[1].minorticks_off()
    axes[1].set_xlabel("curve length n")
    axes[1].set_ylabel("condition number of the problem (unitless)")
    axes[1].legend(fontsize=7)
    _last_predictions(axes[2], shown, "target", with_iteration=True)
    axes[2].set_xlabel("position i")
    axes[2].set_ylabel("kink p_i (autoencoder: curve f_i)")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Piecewise-linear curves: conditioning and architecture\n{report.preset_and_seeds(m)}", fontsize=10)
    exps = findings.condition_exponents(conditions) if len(conditions) else {}
    speed = findings.iterations_to_loss(m, findings.CURVE_LOSS)
    caption = ("In this run the condition number grows as n^" + ", n^".join(f"{a:.2f} ({k})" for k, a in exps.items())
               + f"; test MSE first falls below {findings.CURVE_LOSS:g} " +
               ", ".join(f"{'never' if not np.isfinite(v) else f'at iteration {v:.0f}'} ({k})"
                         for k, v in speed.items()) + ".")
    return report.save_figure(fig, out, "curves.png", "Piecewise-linear curves (paper Fig. 6)", caption)


STYLE = {"end_to_end": "--", "decomposition": "-"}


def _tuples(m, out):
    ks = sorted(m["k"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(3.6 * len(ks) + 1, 3.8), layout="constrained", sharey=True,
                             squeeze=False)
    for ax, k in zip(axes[0], ks):
        for method, g in m[m["k"] == k].groupby("method"):
            curve = g.groupby("iteration")["accuracy"].mean()
            ax.plot(curve.index, curve.to_numpy(), STYLE.get(method, "-"), marker=".", label=method)
        ax.axhline(0.5, color="0.5", ls=":", lw=0.8, label="chance")
        ax.set_title(f"k = {k:.0f}", fontsize=9)
        ax.set_xlabel("Adam iteration")
    axes[0][0].set_ylabel("test accuracy on the tuple's parity (fraction)")
    axes[0][0].legend(fontsize=7)
    eval_size = int(m["eval_size"].iloc[0]) if "eval_size" in m else None
    fig.suptitle(f"Tuples of line-segment images: end-to-end against decomposition"
                 f"{f' ({eval_size} test tuples)' if eval_size else ''}\n{report.preset_and_seeds(m)}", fontsize=10)
    acc = findings.tuples_accuracy(m)
    caption = "In this run the final test accuracy is " + "; ".join(
        f"k={k:.0f}: " + ", ".join(f"{meth} {a:.3f}" for meth, a in row.items()) for k, row in acc.iterrows()) + "."
    return report.save_figure(fig, out, "tuples.png", "Tuples (paper Fig. 3)", caption)


def _tuples_snr(snr, out):
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    s = findings.tuples_snr(snr)
    floor = findings.snr_resolution(int(snr["snr_batches"].min()))
    for method in s.columns:
        v = s[method]
        shown = v[v > floor]
        line, = ax.plot(shown.index, shown.to_numpy(), STYLE.get(method, "-"), marker="o", label=method)
        below = v[v <= floor]
        if len(below):
            ax.plot(below.index, [floor] * len(below), "v", ms=9, mfc="none", color=line.get_color(),
                    label=f"{method}: estimate at or below zero within resolution (upper bound)")
    ax.axhline(floor, color="0.5", ls=":", lw=0.8, label=f"resolution sqrt(2)/batches = {floor:.1e}")
    ax.set_yscale("log")
    ax.set_xticks(s.index, [f"{k:.0f}" for k in s.index])
    ax.set_xlabel("images per tuple k")
    ax.set_ylabel("gradient SNR at init, ||E g||^2 / E||g - E g||^2 (unitless)")
    ax.legend(fontsize=7)
    batches = ", ".join(map(str, sorted(set(snr["snr_batches"]))))
    fig.suptitle(f"Tuples: signal-to-noise ratio of the score layer's gradient ({batches} batches)\n"
                 f"{report.preset_and_seeds(snr)}", fontsize=10)
    caption = "In this run the SNR is " + "; ".join(
        f"k={k:.0f}: " + ", ".join(f"{meth} {v:.2e}" for meth, v in row.items()) for k, row in s.iterrows()) + (
        f" (estimates below {floor:.1e} are within about one standard error of zero).")
    return report.save_figure(fig, out, "tuples_snr.png", "Tuples gradient SNR (paper Fig. 5)", caption)


def _flat(m, shown, out):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    _loss_curves(axes[0], m, "test squared error (staircase units$^2$)", marker=".")
    _last_predictions(axes[1], shown[shown["seed"] == shown["seed"].min()], "target u", lw=1)
    axes[1].set_xlabel("v*.x + b* (the hidden linear score)")
    axes[1].set_ylabel("output along the line (staircase units)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Flat activations: a staircase u(v*.x + b*) learned four ways\n{report.preset_and_seeds(m)}",
                 fontsize=10)
    final = findings.flat_final(m)
    caption = "In this run the final test squared error is " + ", ".join(
        f"{meth} {r.loss:.3g} (level accuracy {r.accuracy:.3f}, iteration {r.iteration:.0f})"
        for meth, r in final.iterrows()) + ("." if len(shown) else "; no learned functions were recorded.")
    return report.save_figure(fig, out, "flat_activation.png", "Flat activations (paper Fig. 7)", caption)
