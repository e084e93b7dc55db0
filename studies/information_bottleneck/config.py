"""The information bottleneck trial config, its presets and their grids.

Provenance: the paper is Shwartz-Ziv & Tishby 2017 (arXiv 1703.00810, "IB paper"); the
original code is ravidziv/IDNNs ("IDNNs"); the critique is Saxe et al., ICLR 2018, whose
code is artemyk/ibsgd ("ibsgd").
"""

from __future__ import annotations

import dataclasses

from lookinside.config import param
from lookinside.study import Preset


@dataclasses.dataclass(frozen=True)
class IBConfig:
    hidden: tuple[int, ...] = param(
        (10, 7, 5, 4, 3), "hidden layer widths; input 12 and a 2-way softmax output are fixed",
        "IB paper Fig. 2 (12-10-7-5-4-3-2); IDNNs default [10,7,5,4,3]", low=1, high=1024)
    activation: str = param(
        "tanh", "hidden activation", "IB paper: tanh; Saxe et al. add relu and linear",
        choices=("tanh", "relu", "linear"))
    optimizer: str = param(
        "adam", "optimiser", "IB paper says SGD; IDNNs and ibsgd both use Adam", choices=("sgd", "adam"))
    learning_rate: float = param(4e-4, "learning rate", "IDNNs and ibsgd: Adam lr 4e-4", low=1e-7, high=10.0)
    batch_size: int = param(
        512, "minibatch size; 0 trains on the full training set each step (full-batch GD, Saxe et al.)",
        "IDNNs 512 (ibsgd 256)", low=0, high=4096)
    shuffle: bool = param(
        True, "reshuffle the training set every epoch",
        "ibsgd reshuffles; IDNNs never does (its batches are fixed)")
    epochs: int = param(8000, "training epochs", "IB paper 10^4; IDNNs 8000", low=1, high=1_000_000)
    train_fraction: float = param(
        0.8, "fraction of the 4096 inputs used for training, drawn at random by seed",
        "IB paper 5%..85% (figures at 5/45/85%); IDNNs first 80% in counting order, ibsgd random 80%",
        low=0.05, high=0.85)
    seed: int = param(0, "seed of this network's initialisation, split and data order",
                      "IB paper averages 50 repeats", low=0, high=2**31 - 1)
    init: str = param(
        "truncated_normal", "weight initialisation: truncated normal std 1/sqrt(fan_in), or "
        "normal std 1/sqrt(fan_out)", "IDNNs truncated normal 1/sqrt(fan_in); ibsgd 1/sqrt(fan_out)",
        choices=("truncated_normal", "normal_fan_out"))
    bins: int = param(30, "equal-width bins per unit for the binned estimator",
                      "IB paper figures 30 (IDNNs linspace(-1,1,30)); Saxe et al. 100 for ReLU",
                      low=2, high=10_000)
    binning: str = param(
        "both", "bin range rule: fixed [-1, 1] (IDNNs), each layer's observed min..max over the "
        "whole run (Saxe et al.), or both side by side", "IDNNs fixed; Saxe et al. observed",
        choices=("fixed", "observed", "both"))
    kde_noise_var: float = param(0.1, "noise variance of the KDE (pairwise-distance) bounds",
                                 "Saxe et al. paper 0.1 (their notebook 1e-3)", low=1e-8, high=100.0)
    kde_epochs: int = param(
        8, "how many of the logged epochs (log-spaced among them) also get the KDE bounds; "
        "0 turns KDE off. Each costs N^2/2 exponentials per layer (about 0.1 s per network "
        "for six layers at N = 4096 on one core, benchmarks/ib_scale.py); the presets take "
        "enough (laptop 30 of 80, paper 48 of 274) to trace fitting (tens of epochs) and "
        "compression (hundreds to thousands) rather than a few straight segments",
        "lookinside; Saxe et al. compute it at every logged epoch",
        low=0, high=100_000)
    logged_epochs: int = param(
        100, "epochs at which information, gradients and metrics are measured, log-spaced "
        "over 0 (initialisation)..epochs; capped at epochs+1",
        "IDNNs 274 log-spaced of 8000; ibsgd 211 on a stepped schedule", low=2, high=100_000)
    dataset_path: str | None = param(
        None, "a var_u.mat (fields F, y) to train on instead of the generated 12-bit task",
        "IDNNs data/var_u.mat", path=True)
    data_seed: int = param(0, "seed of the generated dataset's labels", "lookinside", low=0, high=2**31 - 1)


# Fields that leave tensor shapes alone: members of one pack may differ in these.
PACK_FIELDS = frozenset({"seed", "learning_rate", "train_fraction", "init"})

PRESETS = {
    "smoke": Preset(
        "CI-sized: two tiny tanh and relu runs, well under a minute on 2 cores",
        {"epochs": 60, "logged_epochs": 8, "kde_epochs": 2, "learning_rate": 3e-3},
        {"activation": ["tanh", "relu"], "seed": [0, 1]}),
    "laptop": Preset(
        "tanh vs ReLU x 5/45/85% training data x 5 seeds, IDNNs' Adam 4e-4: fitting, then "
        "compression under tanh (minutes on a CPU)",
        {"epochs": 8000, "logged_epochs": 80, "kde_epochs": 30},
        {"activation": ["tanh", "relu"], "train_fraction": [0.05, 0.45, 0.85], "seed": [0, 1, 2, 3, 4]}),
    "paper": Preset(
        "the paper's scale: 50 seeds x train fractions 5/45/85% x 10^4 epochs, tanh and ReLU",
        {"epochs": 10_000, "logged_epochs": 274, "kde_epochs": 48},
        {"activation": ["tanh", "relu"], "train_fraction": [0.05, 0.45, 0.85], "seed": list(range(50))}),
}
