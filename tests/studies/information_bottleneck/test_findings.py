"""The findings module: the drift-to-diffusion rule on constructed gradient series, the
summary lines on small constructed tables, and the command's one-line errors. No sweep runs.

Each transition test quotes what the old rule gave (the first logged epoch after the global
peak of the gradients' mean norm at which their std exceeds it): the rule the issue replaced.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lookinside.studies.information_bottleneck import findings
from lookinside.studies.information_bottleneck.findings import summary_lines, transition_epochs

# The laptop preset's logged epochs (80 log-spaced over 0..8000; gradients start at epoch 1).
EPOCHS = np.unique(np.round(np.logspace(0, math.log10(8001), 80)).astype(int) - 1)[1:]
SPIKE = 2042        # a late logged epoch
AFTER_SPIKE = 2288  # the logged epoch after it
FIRST_FROM_100 = 105  # the first logged epoch >= 100


def series(mean, std, activation="tanh", layer=1, seed=0) -> pd.DataFrame:
    return pd.DataFrame({"activation": activation, "layer": layer, "seed": seed, "epoch": EPOCHS,
                         "grad_mean_norm": np.asarray(mean, float), "grad_std_norm": np.asarray(std, float)})


def step_with_spike(spike=10.0, high=2.0):
    """Mean 1 except a late spike; std 0.5 before epoch 100 and `high` from there on."""
    mean = np.where(EPOCHS == SPIKE, spike, 1.0)
    std = np.where(EPOCHS >= 100, high, 0.5)
    return mean, std


def old_rule(frame: pd.DataFrame) -> float:
    """The replaced rule, kept here only to show that each test tells the rules apart."""
    g = frame.groupby("epoch")[["grad_mean_norm", "grad_std_norm"]].mean().reset_index()
    peak = g.loc[g["grad_mean_norm"].idxmax(), "epoch"]
    after = g[(g["epoch"] > peak) & (g["grad_std_norm"] > g["grad_mean_norm"])]
    return float(after["epoch"].min()) if len(after) else math.nan


def test_logged_epochs_hold_the_epochs_the_tests_name():
    assert SPIKE in EPOCHS and AFTER_SPIKE in EPOCHS
    assert EPOCHS[EPOCHS >= 100][0] == FIRST_FROM_100 and EPOCHS[list(EPOCHS).index(SPIKE) + 1] == AFTER_SPIKE


def test_transition_is_where_std_overtakes_the_mean_not_after_a_late_spike():
    frame = series(*step_with_spike())
    # Old rule: the mean's global peak is the spike at 2042, so it answered 2288.
    assert old_rule(frame) == AFTER_SPIKE
    found = transition_epochs(frame)
    assert found.columns.tolist() == ["activation", "layer", "epoch"]
    assert found.to_dict("records") == [{"activation": "tanh", "layer": 1, "epoch": float(FIRST_FROM_100)}]
    # The smoothing is what lets the std "stay above" through the spike: unsmoothed, the spike
    # itself (mean 10 > std 2) breaks the run, and the rule lands after it.
    assert transition_epochs(frame, window=1)["epoch"].item() == AFTER_SPIKE
    # A spike too large for the window (its 5th root, 50 ** 0.2 = 2.19, tops the std's 2)
    # still breaks it: smoothing tames noise, it does not hide a real excursion. The rule lands
    # on the third logged epoch after the spike, the first whose centred window leaves it out.
    third_after = EPOCHS[list(EPOCHS).index(SPIKE) + 3]
    assert transition_epochs(series(*step_with_spike(spike=50.0)))["epoch"].item() == third_after


def test_std_that_falls_back_below_the_mean_gives_nan():
    mean = np.ones(len(EPOCHS))
    std = np.where((EPOCHS >= 100) & (EPOCHS < 3000), 2.0, 0.5)   # above for a while, below at the end
    frame = series(mean, std)
    # Old rule: the constant mean "peaks" at epoch 1, and the std exceeds it at 105: 105.
    assert old_rule(frame) == FIRST_FROM_100
    found = transition_epochs(frame)
    assert len(found) == 1 and math.isnan(found["epoch"].item())
    assert found["epoch"].dtype == float
    # A layer whose std is never above its mean: NaN too (so was the old rule's answer).
    never = transition_epochs(series(np.ones(len(EPOCHS)), np.full(len(EPOCHS), 0.5)))
    assert math.isnan(never["epoch"].item())


def test_seeds_are_averaged_before_the_rule():
    # Seed 0: std 3 from epoch 100. Seed 1: std 1 from epoch 100, never strictly above its mean
    # of 1, which spikes to 19 at 2042. The seed average is mean 1 with a spike of 10 and std 2
    # from epoch 100: the first test's series, transition at 105.
    mean0, std0 = np.ones(len(EPOCHS)), np.where(EPOCHS >= 100, 3.0, 0.5)
    mean1, std1 = np.where(EPOCHS == SPIKE, 19.0, 1.0), np.where(EPOCHS >= 100, 1.0, 0.5)
    frame = pd.concat([series(mean0, std0, seed=0), series(mean1, std1, seed=1)])
    # Old rule on the seed average: the spike at 2042 is the peak, so 2288.
    assert old_rule(frame) == AFTER_SPIKE
    found = transition_epochs(frame)
    assert found["epoch"].tolist() == [float(FIRST_FROM_100)]
    # Per seed the rule gives 94 (seed 0's larger jump, 0.5 -> 3, already wins the centred
    # window ending two logged epochs past 100) and NaN: the answer is not per-seed answers summarised.
    assert transition_epochs(series(mean0, std0))["epoch"].item() == 94
    assert math.isnan(transition_epochs(series(mean1, std1))["epoch"].item())


def test_one_row_per_activation_and_layer_sorted():
    a = series(*step_with_spike(), activation="tanh", layer=2)
    b = series(*step_with_spike(), activation="relu", layer=1)
    c = series(np.ones(len(EPOCHS)), np.full(len(EPOCHS), 0.5), activation="tanh", layer=1)
    found = transition_epochs(pd.concat([a, b, c]))
    assert list(zip(found["activation"], found["layer"])) == [("relu", 1), ("tanh", 1), ("tanh", 2)]
    # Old rule: 2288, NaN, 2288.
    assert found["epoch"].fillna(-1).tolist() == [FIRST_FROM_100, -1, FIRST_FROM_100]


def test_bad_window_is_refused():
    with pytest.raises(ValueError):
        transition_epochs(series(*step_with_spike()), window=0)


def small_tables() -> dict[str, pa.Table]:
    """Two tanh seeds and a failed trial; 2 hidden layers and the output (layer 3)."""
    trials = pa.table({"trial_id": ["a", "b", "c"], "status": ["TERMINATED", "TERMINATED", "ERROR"],
                       "activation": ["tanh"] * 3, "train_fraction": [0.8] * 3, "seed": [0, 1, 2],
                       "hidden": [[3, 2]] * 3})
    info = []
    # Layer 2 (the last hidden one): I(X;T) rises to a peak then falls by 1.0 (seed a) and
    # 0.5 (seed b) bits; I(T;Y) ends 0.2 (a) and 0.0 (b) bits below its peak.
    for trial_id, xt, ty in [("a", [2.0, 5.0, 4.0], [0.1, 0.8, 0.6]), ("b", [2.0, 4.5, 4.0], [0.1, 0.5, 0.5]),
                             ("c", [9.0, 0.0, 0.0], [0.0, 0.9, 0.0])]:
        for epoch, i_xt, i_ty in zip([0, 10, 100], xt, ty):
            for layer in (1, 2, 3):
                info.append({"trial_id": trial_id, "epoch": epoch, "layer": layer, "estimator": "bin_fixed",
                             "i_xt": i_xt if layer == 2 else 1.0, "i_ty": i_ty if layer == 2 else 0.1})
    metrics = pd.DataFrame({"trial_id": ["a", "b", "a", "b"], "epoch": [0, 0, 100, 100],
                            "train_acc": [0.5, 0.5, 0.9, 0.8], "test_acc": [0.5, 0.5, 0.85, 0.75]})
    grads = pd.concat([series(*step_with_spike(), layer=layer).assign(trial_id=t) for t in ("a", "b")
                       for layer in (1, 2, 3)])
    grads.loc[grads["layer"] == 3, "grad_std_norm"] = 0.1
    return {"trials": trials, "information": pa.Table.from_pylist(info),
            "metrics": pa.Table.from_pandas(metrics, preserve_index=False),
            "gradients": pa.Table.from_pandas(grads.drop(columns=["activation", "seed"]), preserve_index=False)}


def test_summary_lines_give_the_numbers():
    lines = summary_lines(small_tables())
    assert len(lines) == 3, lines
    compression, acc, drift = lines
    assert compression.startswith("Compression, tanh, 80% training data, bins over [-1, 1]")
    assert "I(X;T2) falls 0.75 bits" in compression and "mean of 2 seeds; min 0.50, max 1.00" in compression
    assert "I(T2;Y) falls 0.10 bits (min 0.00, max 0.20)" in compression
    assert acc == "Final accuracy (epoch 100), tanh, 80% training data: train 0.850, test 0.800 (mean of 2 seeds)."
    assert drift.startswith("Drift to diffusion, tanh, 80% training data:")
    assert "from epoch T1 105, T2 105, output never" in drift  # old rule: T1 2288, T2 2288


def test_summary_lines_of_a_sweep_where_every_trial_failed():
    tables = small_tables()
    tables["trials"] = tables["trials"].set_column(1, "status", pa.array(["ERROR"] * 3))
    lines = summary_lines(tables)
    assert len(lines) == 3 and all("no " in line for line in lines), lines


def test_missing_results_root_is_one_line_from_another_folder(tmp_path):
    # Run from a folder with no ./results, the default root; before, this printed a traceback.
    run = subprocess.run([sys.executable, "-m", "lookinside.studies.information_bottleneck.findings"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("lookinside: error: ") and run.stdout == ""


def test_bad_flag_and_file_for_root_are_one_line(tmp_path, capsys):
    assert findings.main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lookinside: error: ") and len(err.strip().splitlines()) == 1, err
    root = tmp_path / "a_file"
    root.write_text("not results")
    assert findings.main(["--results", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lookinside: error: ") and len(err.strip().splitlines()) == 1, err
