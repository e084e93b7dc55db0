"""The paper's findings as numbers, from a sweep's Arrow tables.

    python -m lookinside.studies.information_bottleneck.findings [--results ROOT] [--sweep ID]

Prints the findings as short lines (`summary_lines`, also listed on the report's page), then
the tables behind them: per activation, training fraction and binning rule, how far the last
hidden layer's binned I(X;T) falls from its peak by the end (compression) and how far its
I(T;Y) falls (overfitting); the final accuracies; and per layer the epoch of the gradients'
drift-to-diffusion transition (`transition_epochs`: from there on, the smoothed std of the
gradients stays above their smoothed mean norm).

Errors the user can fix (no results root, an unknown sweep, a corrupt file, a bad flag)
print one line, `lookinside: error: ...`, and exit with status 2, as the `lookinside`
command does.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report
from lookinside.cli import findings_sweep
from lookinside.errors import exit_code
from lookinside.studies.information_bottleneck import STUDY

# Not imported from .figures: figures imports this module (for transition_epochs).
_KEY_FIELDS = ["activation", "train_fraction", "seed", "hidden"]

#: Default smoothing window of `transition_epochs`, in logged epochs (see its docstring).
TRANSITION_WINDOW = 5

_GRADIENT_COLUMNS = ["activation", "layer", "epoch", "grad_mean_norm", "grad_std_norm"]
_ESTIMATOR_NAMES = {"bin_fixed": "bins over [-1, 1] (IDNNs)", "bin_observed": "bins over the observed range (Saxe)"}


def _frame(tables: Mapping[str, pa.Table], name: str) -> pd.DataFrame:
    keys = report.finished_trials(tables["trials"], _KEY_FIELDS)
    return report.with_config(tables[name], keys)


def transition_epochs(gradients: pd.DataFrame, window: int = TRANSITION_WINDOW) -> pd.DataFrame:
    """Per (activation, layer), the epoch at which the gradients pass from drift to diffusion.

    The rule (Shwartz-Ziv & Tishby 2017, the "phase transition" between the drift phase,
    where the gradients' mean is large against their std, and the diffusion phase, where the
    std dominates): the transition is the first logged epoch from which the std of the
    gradients stays above their mean norm, up to and including the last logged epoch, with
    both series smoothed first.

    - Seeds first: rows sharing (activation, layer, epoch), one per seed, are averaged
      (arithmetic mean of each norm), as the gradient figure draws them.
    - Smoothing: each series is replaced by a centred running mean of its log over `window`
      consecutive logged epochs (a running geometric mean), shrinking to the points that exist
      at the first and last epochs. The logged epochs are log-spaced, so this is a window of
      fixed width in log-epoch space, and comparing the smoothed logs compares the smoothed
      log signal-to-noise ratio with 0. A norm that is not positive counts as missing.
    - "Stays above": strictly above at that epoch and at every later logged epoch. When the
      smoothed std is not above the smoothed mean at the last logged epoch, there is no
      transition: NaN.

    The default window, 5 logged epochs, spans about 0.2 decades of epochs (a factor 1.6) at
    the laptop preset's ~20 logged epochs per decade, and 0.06 decades at the paper preset's
    ~70: wide enough that a lone spike of the mean (one or two logged epochs, as Adam's late
    noisy steps give) is shrunk to its 5th root (a spike 10x the trend counts as 1.6x) and does
    not break "stays above"; narrow enough that the epoch found moves by at most two logged
    epochs, well inside the drift phase's and diffusion phase's decades. `window=1` applies the
    rule to the raw averages.

    Returns columns activation, layer, epoch (float, NaN when the std never stays above the
    mean), one row per (activation, layer), sorted.
    """
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive whole number of logged epochs, got {window!r}")
    missing = [c for c in _GRADIENT_COLUMNS if c not in gradients.columns]
    if missing:
        raise ValueError(f"gradients lack the columns {missing}")
    mean = (gradients[_GRADIENT_COLUMNS]
            .groupby(["activation", "layer", "epoch"], as_index=False)[["grad_mean_norm", "grad_std_norm"]].mean())
    rows = []
    for (activation, layer), g in mean.sort_values("epoch").groupby(["activation", "layer"], sort=True):
        smooth = {}
        for column in ("grad_mean_norm", "grad_std_norm"):
            values = g[column].astype(float)
            logs = np.log(values.where(values > 0))
            smooth[column] = logs.rolling(int(window), center=True, min_periods=1).mean().to_numpy()
        above = smooth["grad_std_norm"] > smooth["grad_mean_norm"]  # False where either is NaN
        # stays[i]: above at i and at every later logged epoch.
        stays = np.logical_and.accumulate(above[::-1])[::-1]
        epochs = g["epoch"].to_numpy()
        rows.append({"activation": activation, "layer": layer,
                     "epoch": float(epochs[np.argmax(stays)]) if stays.any() else np.nan})
    return pd.DataFrame(rows, columns=["activation", "layer", "epoch"]).astype({"epoch": float})


def _largest_fraction(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[np.isclose(frame["train_fraction"], frame["train_fraction"].max())] if len(frame) else frame


def compression(tables) -> pd.DataFrame:
    """Per activation, training fraction and binning rule: the last hidden layer's drop of
    I(X;T) and of I(T;Y) from their peaks to the last logged epoch (bits), over seeds."""
    info = _frame(tables, "information")
    info = info[info["estimator"].str.startswith("bin") & (info["layer"] == info["layer"].max() - 1)]
    per_trial = info.sort_values("epoch").groupby(["activation", "train_fraction", "estimator", "trial_id"]).agg(
        peak=("i_xt", "max"), final=("i_xt", "last"), ty_peak=("i_ty", "max"), ty_final=("i_ty", "last"))
    per_trial["drop"] = per_trial["peak"] - per_trial["final"]
    per_trial["i_ty_drop"] = per_trial["ty_peak"] - per_trial["ty_final"]
    return per_trial.groupby(level=[0, 1, 2]).agg(
        mean_drop=("drop", "mean"), min_drop=("drop", "min"), max_drop=("drop", "max"),
        mean_i_ty_drop=("i_ty_drop", "mean"), min_i_ty_drop=("i_ty_drop", "min"),
        max_i_ty_drop=("i_ty_drop", "max"), seeds=("drop", "size")).round(3)


def accuracy(tables) -> pd.DataFrame:
    """Mean final train and test accuracy per activation and training fraction."""
    metrics = _frame(tables, "metrics")
    final = metrics[metrics["epoch"] == metrics["epoch"].max()]
    grouped = final.groupby(["activation", "train_fraction"])
    return grouped[["train_acc", "test_acc"]].mean().assign(seeds=grouped.size()).round(3)


def snr_transition(tables, window: int = TRANSITION_WINDOW) -> pd.DataFrame:
    """`transition_epochs` of the largest training fraction, indexed by (activation, layer),
    in a column std_exceeds_mean_epoch."""
    grads = _largest_fraction(_frame(tables, "gradients"))
    if grads.empty:
        grads = pd.DataFrame(columns=_GRADIENT_COLUMNS)
    found = transition_epochs(grads, window).rename(columns={"epoch": "std_exceeds_mean_epoch"})
    return found.set_index(["activation", "layer"])


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"mean of {n} seeds"


def _percent(fraction: float) -> str:
    return f"{fraction:.0%} training data"


def summary_lines(tables: Mapping[str, pa.Table]) -> list[str]:
    """The study's findings as short lines with numbers, for people: compression and I(T;Y)
    drop of the last hidden layer per binning rule, activation and training fraction (mean
    over seeds, with min and max); final accuracies; the epochs of the gradients' drift to
    diffusion per activation and layer (`transition_epochs`, largest training fraction)."""
    lines = []
    info = _frame(tables, "information")
    binned = info[info["estimator"].str.startswith("bin")] if len(info) else info
    if len(binned):
        last_hidden = int(info["layer"].max()) - 1
        for (activation, fraction, estimator), r in compression(tables).iterrows():
            lines.append(
                f"Compression, {activation}, {_percent(fraction)}, {_ESTIMATOR_NAMES.get(estimator, estimator)}: "
                f"I(X;T{last_hidden}) falls {r['mean_drop']:.2f} bits from its peak to the end "
                f"({_seeds(int(r['seeds']))}; min {r['min_drop']:.2f}, max {r['max_drop']:.2f}); "
                f"I(T{last_hidden};Y) falls {r['mean_i_ty_drop']:.2f} bits "
                f"(min {r['min_i_ty_drop']:.2f}, max {r['max_i_ty_drop']:.2f}).")
    else:
        lines.append("Compression: no binned mutual information from finished trials.")
    metrics = _frame(tables, "metrics")
    if len(metrics):
        last_epoch = int(metrics["epoch"].max())
        for (activation, fraction), r in accuracy(tables).iterrows():
            lines.append(f"Final accuracy (epoch {last_epoch}), {activation}, {_percent(fraction)}: "
                         f"train {r['train_acc']:.3f}, test {r['test_acc']:.3f} ({_seeds(int(r['seeds']))}).")
    else:
        lines.append("Final accuracy: no metrics from finished trials.")
    grads = _largest_fraction(_frame(tables, "gradients"))
    if len(grads):
        found = transition_epochs(grads)
        output_layer = int(grads["layer"].max())
        for activation, g in found.groupby("activation"):
            parts = [f"{'output' if layer == output_layer else f'T{layer}'} "
                     f"{'never' if np.isnan(epoch) else f'{epoch:.0f}'}"
                     for layer, epoch in zip(g["layer"], g["epoch"])]
            lines.append(f"Drift to diffusion, {activation}, {_percent(grads['train_fraction'].max())}: "
                         f"the gradients' std stays above their mean norm from epoch " + ", ".join(parts)
                         + f" (mean over seeds, smoothed over {TRANSITION_WINDOW} logged epochs).")
    else:
        lines.append("Drift to diffusion: no gradients from finished trials.")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Prints the findings of one sweep; returns 0, or 2 after a one-line error on stderr."""
    return exit_code(_main, argv)


def _main(argv: list[str] | None) -> int:
    sweep_id, tables = findings_sweep(STUDY, "lookinside.studies.information_bottleneck.findings",
                                      __doc__.splitlines()[0], argv)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", None)
    print(f"sweep {sweep_id}\n")
    print("\n".join(summary_lines(tables)))
    print(f"\nlast hidden layer, peak minus final (bits):\n{compression(tables)}")
    print(f"\nfinal accuracy:\n{accuracy(tables)}")
    print(f"\ndrift to diffusion (largest training fraction, window {TRANSITION_WINDOW}):\n"
          f"{snr_transition(tables)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
