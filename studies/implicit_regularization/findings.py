"""The paper's findings as numbers, from a sweep's Arrow tables.

    python -m lookinside.studies.implicit_regularization.findings [--results ROOT] [--sweep ID]

width: per label-noise level and H, each member's last row (it stops at zero training
error or at `epochs`), averaged over seeds; the finding compares the test error at the
largest H with that at the smallest H whose every seed reached zero training error.
path_sgd: per optimiser, init and dropout, the first epoch at which the training
cross-entropy falls below `loss_threshold` (mean over seeds; inf when a seed never does), at
the learning rate that gets there first when the sweep tries several (the paper picks each
optimiser's rate on validation data; this picks it on training speed). Failed trials (a member
whose loss became non-finite fails) are left out of the numbers and named in the summary.
Errors print one line and exit 2, as the `lookinside` command does.
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

KEY_FIELDS = ["experiment", "dataset", "hidden", "depth", "optimizer", "init", "dropout", "label_noise", "seed",
              "learning_rate", "loss_threshold", "train_size", "epochs", "preset"]


def frame(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    """The metrics rows of finished trials with their config fields."""
    return report.finished_rows(tables, "metrics", KEY_FIELDS)


def final_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.sort_values("epoch").groupby("trial_id").tail(1)


def width_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (label_noise, hidden): the mean final errors and norms and the mean stopping epoch."""
    last = final_rows(metrics[metrics["experiment"] == "width"])
    columns = ["train_error", "test_error", "l2_norm", "path_norm", "spectral_product", "epoch"]
    grouped = last.groupby(["label_noise", "hidden"])
    return grouped[columns].mean().assign(all_zero=grouped["train_error"].max() == 0, seeds=grouped.size())


def width_finding(table: pd.DataFrame, label_noise: float) -> dict | None:
    """Test error at the largest H and at the smallest H reaching zero training error (every
    seed); None when no H does."""
    t = table.loc[label_noise]
    zero = t[t["all_zero"]]
    if zero.empty:
        return None
    smallest, largest = int(zero.index.min()), int(t.index.max())
    return {"smallest_h": smallest, "smallest_test": float(t.loc[smallest, "test_error"]),
            "largest_h": largest, "largest_test": float(t.loc[largest, "test_error"]),
            "largest_train": float(t.loc[largest, "train_error"])}


def epochs_to_threshold(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, init, dropout): mean over seeds of the first epoch with training loss
    below the trial's loss_threshold (inf if a seed never gets there), and the final losses, at
    the learning rate with the fewest such epochs (then the lowest final training loss)."""
    m = metrics[metrics["experiment"] == "path_sgd"]
    rows = []
    for _, g in m.groupby("trial_id"):
        hit = g.loc[g["train_loss"] < g["loss_threshold"], "epoch"]
        last = g.sort_values("epoch").iloc[-1]
        rows.append({"optimizer": last["optimizer"], "init": last["init"], "dropout": last["dropout"],
                     "learning_rate": last["learning_rate"],
                     "epochs_to_threshold": float(hit.min()) if len(hit) else np.inf,
                     "final_train_loss": last["train_loss"], "final_test_error": last["test_error"]})
    if not rows:
        return pd.DataFrame()
    arms = ["optimizer", "init", "dropout"]
    per_lr = pd.DataFrame(rows).groupby([*arms, "learning_rate"]).mean().reset_index()
    best = per_lr.sort_values(["epochs_to_threshold", "final_train_loss"]).groupby(arms).head(1)
    return best.set_index(arms).sort_index()[["learning_rate", "epochs_to_threshold", "final_train_loss",
                                             "final_test_error"]]


def failed_trials(trials: pa.Table) -> pd.DataFrame:
    """The path_sgd trials that did not finish (a member whose loss became non-finite fails)."""
    t = trials.to_pandas()
    if "experiment" not in t.columns:
        return t.iloc[:0]
    return t[(t["status"] != "TERMINATED") & (t["experiment"] == "path_sgd")]


def summary_lines(tables: Mapping[str, pa.Table]) -> list[str]:
    metrics = frame(tables)
    lines = []
    width = width_table(metrics) if len(metrics) else pd.DataFrame()
    for noise in sorted(set(width.index.get_level_values(0))) if len(width) else []:
        found = width_finding(width, noise)
        if found is None:
            lines.append(f"Width, {noise:.0%} label noise: no H reached zero training error.")
            continue
        holds = "holds" if found["largest_test"] <= found["smallest_test"] else "does not hold"
        lines.append(
            f"Width, {noise:.0%} label noise: test error {found['largest_test']:.3f} at H={found['largest_h']} vs "
            f"{found['smallest_test']:.3f} at H={found['smallest_h']}, the smallest H reaching zero training error "
            f"(mean over seeds): 'larger is no worse' {holds}.")
    speed = epochs_to_threshold(metrics) if len(metrics) else pd.DataFrame()
    if len(speed):
        threshold = metrics.loc[metrics["experiment"] == "path_sgd", "loss_threshold"].iloc[0]
        for (init, dropout), g in speed.groupby(level=["init", "dropout"]):
            parts = ", ".join(
                f"{opt} {r.epochs_to_threshold:.0f} (lr {r.learning_rate:g})" if np.isfinite(r.epochs_to_threshold)
                else f"{opt} never (lr {r.learning_rate:g}, final loss {r.final_train_loss:.3f})"
                for (opt, _, _), r in g.iterrows())
            lines.append(f"Path-SGD, {init} init, dropout {dropout:g}: epochs to training loss < {threshold:g}: "
                         f"{parts}.")
    failed = failed_trials(tables["trials"])
    if len(failed):
        names = sorted({f"{r.optimizer} {r.init} dropout {r.dropout:g} lr {r.learning_rate:g}"
                        for r in failed.itertuples()})
        lines.append(f"Path-SGD: {len(failed)} failed trial(s) left out (non-finite loss): {'; '.join(names)}.")
    return lines or ["No metrics from finished trials."]


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """trial_id with its last epoch, final errors and path norm, for the report's trial table."""
    metrics = tables["metrics"].to_pandas()
    last = final_rows(metrics) if len(metrics) else metrics
    cols = ["trial_id", "epoch", "train_error", "test_error", "path_norm"]
    return pa.Table.from_pandas(last[cols].rename(columns={"epoch": "last_epoch"}), preserve_index=False)


def main(argv: list[str] | None = None) -> int:
    return exit_code(_main, argv)


def _main(argv: list[str] | None) -> int:
    from lookinside.studies.implicit_regularization import STUDY
    sweep_id, tables = findings_sweep(STUDY, "lookinside.studies.implicit_regularization.findings",
                                      __doc__.splitlines()[0], argv)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    metrics = frame(tables)
    print(f"sweep {sweep_id}\n")
    print("\n".join(summary_lines(tables)))
    if (metrics["experiment"] == "width").any():
        print(f"\nwidth (final rows, mean over seeds):\n{width_table(metrics).round(4)}")
    if (metrics["experiment"] == "path_sgd").any():
        print(f"\nepochs to the loss threshold:\n{epochs_to_threshold(metrics).round(4)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
