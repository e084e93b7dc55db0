"""The information bottleneck figures and summary, on constructed tables whose findings are
known: one activation's last hidden layer compresses, the other's keeps rising."""

import numpy as np
import pyarrow as pa
import pytest

from lookinside.studies.information_bottleneck import figures, findings

EPOCHS = [0, 1, 3, 10, 30, 100, 300]
LAYERS = [1, 2, 3, 4, 5, 6]          # T1..T5 and the softmax output
SEEDS = [0, 1]
FRACTIONS = [0.05, 0.85]


def i_xt_curve(compresses: bool, seed: int) -> np.ndarray:
    """Rises to 8 bits at epoch 30, then falls by 2 bits (compresses) or keeps rising."""
    rise = np.array([5.0, 5.5, 6.5, 7.5, 8.0, 8.0, 8.0]) + 0.1 * seed
    return rise - np.array([0, 0, 0, 0, 0, 1.0, 2.0]) if compresses else rise + np.array([0, 0, 0, 0, 0, 0.5, 1.0])


def make_tables(compressing=("tanh",), activations=("tanh", "relu")) -> dict[str, pa.Table]:
    trials, info, grads, metrics = [], [], [], []
    for a, act in enumerate(activations):
        for f, fraction in enumerate(FRACTIONS):
            for seed in SEEDS:
                tid = f"t{a}{f}{seed}"
                trials.append({"trial_id": tid, "status": "TERMINATED", "activation": act,
                               "train_fraction": fraction, "seed": seed, "hidden": "10-7-5-4-3", "epochs": 300})
                for layer in LAYERS:
                    curve = i_xt_curve(act in compressing, seed) - 0.5 * (layer - 1)
                    for est, shift in (("bin_fixed", 0.0), ("bin_observed", 0.02)):
                        for e, epoch in enumerate(EPOCHS):
                            info.append({"trial_id": tid, "epoch": epoch, "layer": layer, "estimator": est,
                                         "i_xt": curve[e] + shift, "i_ty": min(0.1 * e + 0.05 * seed, 0.9)})
                    for epoch in EPOCHS[1:]:
                        # The mean drops below the std after epoch 10: drift, then diffusion.
                        grads.append({"trial_id": tid, "epoch": epoch, "layer": layer,
                                      "grad_mean_norm": 0.1 if epoch <= 10 else 0.01,
                                      "grad_std_norm": 0.03 * (1 + 0.1 * seed), "weight_norm": 1.0})
                for epoch in EPOCHS:
                    metrics.append({"trial_id": tid, "epoch": epoch, "train_loss": 0.5, "train_acc": 0.9,
                                    "test_loss": 0.6, "test_acc": 0.8})
    return {"trials": pa.Table.from_pylist(trials), "information": pa.Table.from_pylist(info),
            "gradients": pa.Table.from_pylist(grads), "metrics": pa.Table.from_pylist(metrics)}


@pytest.fixture(autouse=True)
def fixed_transitions(monkeypatch):
    """A stand-in for findings.transition_epochs: T1 turns at epoch 30, the other layers never."""
    def transition_epochs(gradients, window=5):
        keys = gradients[["activation", "layer"]].drop_duplicates()
        return keys.assign(epoch=np.where(keys["layer"] == 1, 30.0, np.nan)).reset_index(drop=True)
    monkeypatch.setattr(findings, "transition_epochs", transition_epochs, raising=False)


def captions(tables, tmp_path) -> dict[str, str]:
    return {f.filename: f.caption for f in figures.draw(tables, str(tmp_path))}


@pytest.mark.parametrize("activations", [("tanh",), ("relu",), ("tanh", "relu")])
def test_every_figure_draws_for_one_or_both_activations(activations, tmp_path):
    drawn = figures.draw(make_tables(activations=activations), str(tmp_path))
    names = [f.filename for f in drawn]
    assert names == ["information_plane.png", "compression.png", "gradients.png", "train_fractions.png"]
    for f in drawn:
        assert (tmp_path / f.filename).stat().st_size > 10_000
        assert "2 seeds" in f.caption and "300 epochs" in f.caption     # the run, on every figure


def test_run_label_names_fraction_epochs_seeds_and_preset_when_recorded():
    keys = figures.finished_trials(make_tables())
    assert figures.run_label(keys, 0.85) == "85% training data · 300 epochs · 2 seeds per activation"
    assert figures.run_label(keys) == "training data 5%, 85% · 300 epochs · 2 seeds per panel"
    keys["preset"] = "laptop"
    assert figures.run_label(keys, 0.85) == "85% training data · laptop preset, 300 epochs · 2 seeds per activation"


def test_summary_columns_name_layer_and_estimator():
    summary = figures.summary(make_tables()).to_pandas()
    assert list(summary.columns) == [
        "trial_id", "final train_acc", "final test_acc",
        "T5 I(X;T) peak, bin_fixed", "T5 I(X;T) final, bin_fixed",
        "T5 I(X;T) peak, bin_observed", "T5 I(X;T) final, bin_observed"]
    tanh = summary[summary["trial_id"] == "t010"].iloc[0]               # tanh, 85%, seed 0: compresses
    assert tanh["T5 I(X;T) peak, bin_observed"] == pytest.approx(6.02)
    assert tanh["T5 I(X;T) final, bin_observed"] == pytest.approx(4.02)


def test_captions_say_which_activation_compresses(tmp_path):
    caption = captions(make_tables(compressing=("tanh",)), tmp_path)["compression.png"]
    assert "tanh: under fixed-range binning T5 falls by 2.00 bits after epoch 30" in caption
    assert "relu: under fixed-range binning T5 does not fall" in caption
    assert "under observed-range binning T5 does not fall" in caption.split("relu:")[1]
    assert "artefact" not in caption                    # ReLU did not fall: no artefact to name

    swapped = captions(make_tables(compressing=("relu",)), tmp_path)["compression.png"]
    assert "tanh: under fixed-range binning T5 does not fall" in swapped
    relu = swapped.split("relu:")[1]
    assert "under fixed-range binning T5 falls by 2.00 bits after epoch 30" in relu
    assert "an artefact: activations above 1 are clipped into the top bin" in relu
    assert "under observed-range binning T5 falls by 2.00 bits" in relu


def test_tanh_ranges_coincide_and_relu_output_fall_is_named(tmp_path):
    got = captions(make_tables(compressing=("tanh", "relu")), tmp_path)
    assert "tanh stays in [-1, 1], so its two panels nearly coincide (mean gap 0.02 bits)" in got["compression.png"]
    assert "The relu net's output falls under observed-range binning too: it is a softmax" in \
        got["information_plane.png"]
    assert "tanh: under observed-range binning I(X;T) falls in T1, T2, T3, T4, T5, output" in \
        got["information_plane.png"]


def test_gradient_caption_lists_the_transitions(tmp_path):
    caption = captions(make_tables(), tmp_path)["gradients.png"]
    assert "tanh: drift turns to diffusion (dotted) at epoch 30 in T1; not in T2, T3, T4, T5, output." in caption
    assert "L2 norm over its weights of the mean (solid) and of the elementwise std (dashed)" in caption


def test_train_fraction_caption_gives_i_ty_fall_and_accuracy(tmp_path):
    caption = captions(make_tables(), tmp_path)["train_fractions.png"]
    assert "tanh: T5's I(T;Y) with 5% data does not fall (peak to end 0.00 bits), test accuracy 0.80" in caption


def test_no_finished_trials_of_a_second_fraction_means_no_fraction_figure(tmp_path):
    tables = make_tables()
    trials = tables["trials"].to_pandas()
    tables["trials"] = pa.Table.from_pandas(trials[trials["train_fraction"] == 0.85], preserve_index=False)
    assert [f.filename for f in figures.draw(tables, str(tmp_path))] == [
        "information_plane.png", "compression.png", "gradients.png"]
