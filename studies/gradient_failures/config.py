"""The gradient failures trial config, its presets and their grids.

Provenance: "Failures of Gradient-Based Deep Learning" (Shalev-Shwartz, Shamir, Shammah,
ICML 2017, arXiv 1703.07950, "paper"; sections and figures of the arXiv version) and its
original code, shakedshammah/failures_of_DL ("code"). Where the two differ the paper wins and
the field says so. Fields left at None take the paper's value for the chosen experiment and
method (EXPERIMENT_DEFAULTS, METHOD_DEFAULTS), filled in before the trial is recorded.
"""

from __future__ import annotations

import dataclasses

from lookinside.config import param
from lookinside.study import Preset

METHODS = {
    "parity": ("end_to_end",),
    "tuples": ("end_to_end", "decomposition"),
    "tuples_snr": ("end_to_end", "decomposition"),
    "stocks": ("end_to_end", "decomposition"),
    "piecewise_linear": ("fully_connected", "convolution", "whitened", "autoencoder"),
    "flat_activation": ("sigmoid", "end_to_end", "multiclass", "forward_only"),
}
ALL_METHODS = tuple(dict.fromkeys(m for ms in METHODS.values() for m in ms))

# The paper's value of each None field, per experiment (sec. 2.1 Fig. 1; sec. 3 Figs. 3-5; sec. 4
# Fig. 6; sec. 5 Fig. 7 and appendix C's command lines).
EXPERIMENT_DEFAULTS = {
    "parity": {"d": 10, "iterations": 50_000, "batch_size": 128, "learning_rate": 0.01},
    "tuples": {"k": 3, "iterations": 20_000, "batch_size": 200, "learning_rate": 1e-3},
    "tuples_snr": {"k": 3, "iterations": 0, "batch_size": 100, "learning_rate": 1e-3},
    "stocks": {"d": 1000, "k": 10, "iterations": 2_500, "batch_size": 100, "learning_rate": 0.1},
    "piecewise_linear": {"curve_length": 100, "iterations": 50_000, "batch_size": 100, "learning_rate": 1e-4},
    "flat_activation": {"d": 100, "iterations": 10_000, "batch_size": 256, "learning_rate": 1e-3},
}
METHOD_DEFAULTS = {
    ("tuples", "decomposition"): {"iterations": 2_500},
    ("piecewise_linear", "convolution"): {"learning_rate": 0.05},
    ("piecewise_linear", "whitened"): {"learning_rate": 0.05, "batch_size": 10, "iterations": 500},
    ("piecewise_linear", "autoencoder"): {"learning_rate": 1e-3, "iterations": 10_000},
    ("flat_activation", "sigmoid"): {"learning_rate": 0.01},
    ("flat_activation", "forward_only"): {"iterations": 5_000},
}

# Adam's other settings in tuples and flat_activation (code: AdamOptimizer(beta1=0.9, beta2=0.99, epsilon=1e-5)).
ADAM = {"betas": (0.9, 0.99), "eps": 1e-5}


@dataclasses.dataclass(frozen=True)
class GFConfig:
    experiment: str = param(
        "parity", "which of the paper's problems this trial runs", "paper sections 2-5",
        choices=tuple(METHODS))
    method: str | None = param(
        None, "the formulation trained: parity end_to_end; tuples, tuples_snr, stocks end_to_end or "
        "decomposition; piecewise_linear fully_connected, convolution, whitened or autoencoder; "
        "flat_activation sigmoid, end_to_end, multiclass or forward_only (None: the first)",
        "paper sections 3-5", choices=ALL_METHODS)
    d: int | None = param(None, "input dimension: parity bits (hidden width 10d), stocks one-hot size, "
                          "flat_activation Gaussian inputs", "paper: parity d = 5, 10, 30 (Fig. 1); stocks "
                          "1000; flat 100", low=1, high=4096)
    k: int | None = param(None, "tuples: images per tuple; stocks: hidden labels",
                          "paper: tuples k = 1..4 (Fig. 3); stocks k = 10, 1000, 2000 (Fig. 4)", low=1, high=4096)
    curve_length: int | None = param(None, "piecewise_linear: values n per curve (trained)", "paper sec. 4: n = 100",
                                     low=4, high=1000)
    iterations: int | None = param(
        None, "optimiser steps (0: measure at the initialisation only)", "paper: parity 50k, tuples 20k "
        "(decomposition 2.5k), stocks 2.5k, curves 50k/10k/500, flat 10k (forward-only 5k)", low=0, high=10**7)
    batch_size: int | None = param(None, "examples per step", "paper: 128 parity, 200 tuples, 100 stocks and "
                                   "curves (10 whitened), 256 flat", low=1, high=100_000)
    learning_rate: float | None = param(
        None, "step size: plain SGD for parity, Adam elsewhere", "paper; parity 0.01 (the code ignores its "
        "--learning_rate flag and uses 0.01); tuples 1e-3; stocks 0.1; curves 1e-4 full, 0.05 conv; flat 1e-3, "
        "sigmoid 0.01", low=1e-7, high=10.0)
    eval_every: int = param(500, "iterations between measurements (and the first one at iteration 0)",
                            "lookinside", low=1, high=10**7)
    eval_size: int = param(500, "fresh test examples per measurement, drawn once per trial",
                           "paper sec. 2.1: 500 (parity)", low=1, high=100_000)
    n_targets: int = param(64, "parity: random target subsets in the gradient variance at the initialisation; "
                           "stocks: examples in the per-example gradient variance",
                           "lookinside (the paper bounds it, Thm. 1)", low=2, high=100_000)
    variance_batch: int = param(
        65_536, "parity: inputs per gradient in the variance; all 2^d inputs (exact) when 2^d is no larger",
        "lookinside", low=16, high=10**7)
    snr_batches: int = param(5_000, "tuples_snr: batches whose gradients give the signal and the noise",
                             "paper Fig. 5: 5,000 batches of 100", low=2, high=10**6)
    kinks: int = param(3, "piecewise_linear: kinks per curve (positions uniform, slopes U[-1, 1])",
                       "paper sec. 4 (code: kinks at theta in [3, 96], 4 fixed slope patterns; lookinside "
                       "follows the paper's random slopes)", low=1, high=100)
    condition_ns: tuple[int, ...] = param(
        (25, 50, 100, 200), "piecewise_linear: curve lengths n at which the condition number of the "
        "trial's formulation is measured", "paper sec. 4: condition number against n", low=4, high=1000)
    condition_samples: int = param(20_000, "piecewise_linear: curves in each measured second-moment matrix",
                                   "lookinside", low=100, high=10**7)
    levels: int = param(55, "flat_activation: steps of the staircase u", "paper sec. 5: 55 (code: 52)",
                        low=2, high=1000)
    hidden: int = param(100, "flat_activation: units per hidden layer of the end_to_end and multiclass MLPs",
                        "paper sec. 5: 100", low=1, high=4096)
    seed: int = param(0, "seed of the initialisation, the hidden target and the data stream", "lookinside",
                      low=0, high=2**31 - 1)

    def __post_init__(self):
        methods = METHODS[self.experiment]
        if self.method is None:
            object.__setattr__(self, "method", methods[0])
        elif self.method not in methods:
            raise ValueError(f"method {self.method} does not apply to experiment {self.experiment}; "
                             f"choose one of {', '.join(methods)}")
        filled = {**EXPERIMENT_DEFAULTS[self.experiment], **METHOD_DEFAULTS.get((self.experiment, self.method), {})}
        for name, value in filled.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)


# Leave tensor shapes alone: members of one pack may differ in these.
PACK_FIELDS = frozenset({"seed", "learning_rate"})



def every_method(experiment: str, **grid) -> dict:
    """A preset case: `experiment` under each of its methods, with grid fields of its own."""
    return {"experiment": [experiment], "method": list(METHODS[experiment]), **grid}


PARITY_DS = [2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 30]     # 2..16 for the variance fit; 5, 10, 30 are Fig. 1's
PRESETS = {
    "smoke": Preset(
        "every experiment under every method at a tiny size: 100 steps (tuples 20 of 20 pairs), 10 SNR batches, "
        "condition numbers at n = 10..40 (well under a minute)",
        {"iterations": 100, "eval_every": 50, "eval_size": 200, "n_targets": 16, "variance_batch": 1024,
         "condition_ns": (10, 20, 40), "condition_samples": 2000, "snr_batches": 10},
        {}, cases=[every_method("parity"), every_method("tuples", k=[2], iterations=[20], batch_size=[20]),
                   every_method("tuples_snr", k=[2], batch_size=[20]), every_method("stocks"),
                   every_method("piecewise_linear"), every_method("flat_activation")]),
    "laptop": Preset(
        "every finding at CPU size: parity d = 2..30 for 3,000 steps (2 seeds); tuples k = 1..4 for 1,000 steps of "
        "100 and their SNR over 2,000 batches; stocks k = 10..2000; the curves at n = 100, 2,000 steps (whitened "
        "500); flat activations at the paper's 10k steps (forward-only 5k)",
        {"eval_every": 250},
        {}, cases=[every_method("parity", d=PARITY_DS, iterations=[3_000], seed=[0, 1]),
                   every_method("tuples", k=[1, 2, 3, 4], iterations=[1_000], batch_size=[100], eval_every=[100]),
                   every_method("tuples_snr", k=[1, 2, 3, 4], snr_batches=[2_000]),
                   every_method("stocks", k=[10, 100, 1000, 2000], eval_every=[100], n_targets=[2000]),
                   every_method("piecewise_linear", iterations=[2_000], eval_every=[50]),
                   every_method("flat_activation")]),
    "paper": Preset(
        "the paper's sizes: parity d = 2..30, 50k SGD steps; tuples k = 1..4, 20k steps (decomposition 2.5k) and "
        "SNR over 5,000 batches; stocks k = 10, 1000, 2000; the curves at 50k/50k/500/10k steps; flat activations "
        "10k (forward-only 5k). Tuples want a GPU",
        {"eval_every": 500},
        {}, cases=[every_method("parity", d=PARITY_DS),
                   every_method("tuples", k=[1, 2, 3, 4], eval_every=[100]),
                   every_method("tuples_snr", k=[1, 2, 3, 4]),
                   every_method("stocks", k=[10, 1000, 2000], eval_every=[100], n_targets=[2000]),
                   every_method("piecewise_linear"), every_method("flat_activation")]),
}
