"""The paper's findings on fixed-seed, CI-sized runs (the smoke presets, trained in-process);
measured numbers are quoted beside each threshold. Deterministic: the same numbers packed or not."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lookinside.studies.implicit_regularization import STUDY, findings

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from ir_helpers import tables  # noqa: E402


def by_hidden(preset):
    configs = STUDY.configs(preset)
    return [[c for c in configs if c.hidden == h] for h in sorted({c.hidden for c in configs})]


def test_width_test_error_at_the_largest_h_is_no_higher_than_at_the_smallest_interpolating_h():
    """smoke: digits, 500 examples, H = 4, 16, 64, 256, seeds 0 and 1, SGD lr 0.5, stop at zero
    training error (or 60 epochs). Measured: H=4 never interpolates (final train error 0.46);
    H=16 is the smallest H reaching zero training error, test error 0.106; H=256 0.105."""
    t = tables(by_hidden("smoke"))
    width = findings.width_table(findings.frame(t))
    found = findings.width_finding(width, 0.0)
    assert found["smallest_h"] == 16 and found["largest_h"] == 256
    assert found["largest_train"] == 0
    assert found["largest_test"] <= found["smallest_test"], found
    # The path norm falls as H grows while the l2 norm rises: measured 30.2 -> 6.7 and 9.0 -> 14.4.
    w = width.loc[0.0]
    assert w["path_norm"].iloc[-1] < w["path_norm"].iloc[1] < w["path_norm"].iloc[0]
    assert w["l2_norm"].iloc[-1] > w["l2_norm"].iloc[0]
    lines = findings.summary_lines(t)
    assert any("'larger is no worse' holds" in line for line in lines), lines


def test_path_sgd_reaches_the_loss_threshold_before_sgd_under_unbalanced_init():
    """smoke_path_sgd: digits, 500 examples, 2 x 64 ReLU, lr 0.1, unbalancing factors up to 30,
    threshold 0.1 nats. Measured epochs to the threshold: unbalanced Path-SGD 19, SGD 35, AdaGrad
    7 (AdaGrad is faster here; the paper reports Path-SGD faster than both); balanced Path-SGD 19,
    SGD never within 40 epochs."""
    configs = STUDY.configs("smoke_path_sgd")
    packs = [[c] for c in configs]
    speed = findings.epochs_to_threshold(findings.frame(tables(packs)))["epochs_to_threshold"]
    path, sgd = speed[("path_sgd", "unbalanced", 0.0)], speed[("sgd", "unbalanced", 0.0)]
    assert path < sgd, speed
    assert path <= 25 and sgd >= 30, speed
    # Path-SGD does not see the rescaling: balanced and unbalanced reach it at the same epoch.
    assert speed[("path_sgd", "balanced", 0.0)] == path
    assert not np.isfinite(speed[("sgd", "balanced", 0.0)])


# --- slow twins: the laptop presets through `lookinside run` on every core (pytest -m slow) ---------------------

def run_preset(preset, root, finished):
    """`lookinside run implicit_regularization --preset PRESET`, then the sweep's tables; `finished`
    is 'done/all' trials (the command exits 1 when some failed)."""
    from lookinside import report
    done = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "implicit_regularization", "--preset", preset,
                           "--results", str(root), "--quiet"], capture_output=True, text=True, timeout=3600)
    assert f"{finished} trials finished" in done.stderr, done.stderr[-2000:]
    assert done.returncode == (0 if finished.split("/")[0] == finished.split("/")[1] else 1), done.stderr[-2000:]
    return report.load_sweep(STUDY, str(root), None)[1]


@pytest.mark.slow
def test_laptop_width_larger_is_no_worse_past_interpolation(tmp_path):
    """laptop: mnist1d, 4,000 training signals, H = 4..2048, clean and 10% noisy labels, seeds 0-2,
    SGD lr 0.3, to zero training error or 1000 epochs (9 min 32 s on 2 shared cores). Measured, mean
    over seeds: clean labels, H=64 is the smallest H whose every seed interpolates (epochs 621-866),
    test error 0.435; H=512 0.389, H=2048 0.405 (epoch 51). 10% noise: H=128 (epochs 262-299) 0.533,
    H=2048 0.469. Below that H no seed interpolates (H=32: train error 0.219 clean, 0.332 noisy);
    but the lowest noisy-label test error is at H=8..16 (0.507, 0.474), before interpolation.
    The path norm falls from 290 (H=64) to 14.8 (H=2048), clean."""
    t = run_preset("laptop", tmp_path / "results", "60/60")
    width = findings.width_table(findings.frame(t))
    clean, noisy = findings.width_finding(width, 0.0), findings.width_finding(width, 0.1)
    assert (clean["smallest_h"], noisy["smallest_h"], clean["largest_h"]) == (64, 128, 2048), (clean, noisy)
    assert clean["largest_test"] <= clean["smallest_test"] - 0.02, clean      # 0.405 vs 0.435
    assert noisy["largest_test"] <= noisy["smallest_test"] - 0.04, noisy      # 0.469 vs 0.533
    assert width.loc[(0.0, 32), "train_error"] > 0.1 and width.loc[(0.1, 64), "train_error"] > 0.1
    path = width.loc[0.0, "path_norm"]
    assert path[2048] < path[512] < path[128] < path[64], path
    assert all("'larger is no worse' holds" in line for line in findings.summary_lines(t)[:2])


@pytest.mark.slow
def test_laptop_path_sgd_is_rescaling_invariant_but_not_faster_than_tuned_sgd(tmp_path):
    """laptop_path_sgd: mnist1d, 2 x 256 ReLU, unbalancing factors up to 30, lr 0.03 / 0.1 / 0.3 (each
    optimiser's fastest taken), threshold 0.05 nats, 100 epochs (3 min 21 s on 2 shared cores).
    Measured epochs to the threshold without dropout: balanced SGD 38 (lr 0.3), AdaGrad 21 (0.3),
    Path-SGD 87 (0.1); unbalanced SGD 58 (0.03; it diverges at 0.1 and 0.3), AdaGrad 36 (0.03),
    Path-SGD 88 (0.1). So the paper's finding (Path-SGD first under the unbalanced init) does NOT
    reproduce here once SGD's rate is tuned; it does only at a shared lr 0.1, where SGD diverges.
    With dropout 0.5 nothing reaches 0.05 in 100 epochs; final training losses, unbalanced:
    Path-SGD 0.330, AdaGrad 0.787, SGD 1.099 (balanced: 0.332, 0.347, 0.351). The four diverged SGD
    trials fail (non-finite loss), so 32 of 36 finish and the command exits 1."""
    t = run_preset("laptop_path_sgd", tmp_path / "results", "32/36")
    speed = findings.epochs_to_threshold(findings.frame(t))
    n = speed["epochs_to_threshold"]
    assert abs(n[("path_sgd", "unbalanced", 0.0)] - n[("path_sgd", "balanced", 0.0)]) <= 3, n
    assert n[("sgd", "unbalanced", 0.0)] < n[("path_sgd", "unbalanced", 0.0)], n       # 58 < 88: not the paper's
    assert n[("sgd", "unbalanced", 0.0)] > n[("sgd", "balanced", 0.0)] + 10, n         # 58 vs 38
    failed = findings.failed_trials(t["trials"])
    assert set(failed["optimizer"]) == {"sgd"} and set(failed["init"]) == {"unbalanced"}, failed
    assert set(failed["learning_rate"]) == {0.1, 0.3}, failed
    loss = speed["final_train_loss"]
    dropout = [loss[(o, "unbalanced", 0.5)] for o in ("path_sgd", "adagrad", "sgd")]
    assert not np.isfinite(n[("path_sgd", "unbalanced", 0.5)]) and dropout == sorted(dropout), loss
    assert dropout[1] > 2 * dropout[0], loss                                             # 0.787 vs 0.330
