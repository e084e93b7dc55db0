"""The tensor_convnets trial config, its presets and their grids.

Provenance: Shashua, Cohen, Sharir, Tamari, Yakira, Levine, "Analysis and Design of Convolutional
Networks via Hierarchical Tensor Decompositions" (arXiv 1705.02302, "survey"), which summarises
Cohen, Sharir & Shashua, "On the Expressive Power of Deep Learning: A Tensor Analysis" (COLT
2016, "depth") and Cohen & Shashua, "Inductive Bias of Deep Convolutional Networks through
Pooling Geometry" (ICLR 2017, "pooling"); the original code is HUJI-Deep/inductive-pooling
("code"). Fields left at None take the experiment's or the model's value, filled in before the
trial is recorded.
"""

from __future__ import annotations

import dataclasses
import math

from lookinside.config import param
from lookinside.study import Preset

EXPERIMENTS = ("pooling_geometry", "separation_rank")
MODELS = ("convac", "relu_avg", "relu_max", "shallow")
POOLINGS = ("square", "mirror", "custom")
PARTITIONS = ("left_right", "top_bottom", "odd_even", "random")


@dataclasses.dataclass(frozen=True)
class TCConfig:
    experiment: str = param(
        "pooling_geometry", "pooling_geometry: train on the closedness or symmetry blobs; separation_rank: the "
        "ranks of a randomly initialised network's grid tensor under each partition (depth efficiency is "
        "derived from these)", "pooling secs. 5-6; depth sec. 5", choices=EXPERIMENTS)
    model: str = param(
        "convac", "convac: deep convolutional arithmetic circuit (1x1 conv with non-negative weights, product "
        "pooling, in log space); shallow: one hidden layer of `channels` = Z and global product pooling (CP); "
        "relu_avg / relu_max: the same topology as convac with 1x1 conv + ReLU and average or max pooling",
        "pooling sec. 6 (ReLU baselines); depth sec. 3 (shallow = CP)", choices=MODELS)
    task: str = param("closedness", "pooling_geometry: which blob label is learned", "pooling sec. 6",
                      choices=("closedness", "symmetry"))
    representation: str = param(
        "onehot", "convac's representation layer: onehot (the binary pixel's one-hot, M = 2) or gaussian (M = 2 "
        "learned Gaussian templates, log-densities of the pixel value)", "survey sec. 2 (similarity layer); code: "
        "one-hot for the binary blobs", choices=("onehot", "gaussian"))
    pooling: str = param(
        "square", "pooling geometry: square (contiguous 2x2 windows), mirror (each window pools positions "
        "{k, H-1-k} x {l, W-1-l}), custom (the `permutation` field groups the input positions)",
        "pooling sec. 6", choices=POOLINGS)
    permutation: tuple[int, ...] | None = param(
        None, "pooling=custom: a permutation of the side*side input positions (row-major), applied before "
        "the first block; square windows then pool the permuted grid", "lookinside", low=0, high=4095)
    channels: int = param(16, "channels per hidden layer: r for deep nets, Z for the shallow one",
                          "pooling sec. 6: r = 16", low=1, high=4096)
    depth: int | None = param(
        None, "pooling blocks of the deep nets (None: log2(side), down to one position)",
        "pooling: 5 blocks on 32x32; a global pooling ends shallower nets", low=1, high=12)
    side: int | None = param(
        None, "image side in pixels, one binary patch per pixel (None: 32 for pooling_geometry, 4 for "
        "separation_rank, N = 16 patches)", "pooling: 32x32 blobs; survey: N up to 16 for exact ranks",
        choices=(2, 4, 8, 16, 32))
    n_train: int = param(25_000, "pooling_geometry: training images generated; the middle 20% of scores is "
                         "dropped, leaving 80%", "pooling / code: 25k -> 20k", low=100, high=1_000_000)
    n_test: int = param(5_000, "pooling_geometry: test images generated (80% kept)", "pooling / code: 5k -> 4k",
                        low=100, high=1_000_000)
    data_seed: int = param(0, "seed of the blob generator (the same images for every trial)", "code: seed 0",
                           low=0, high=2**31 - 1)
    iterations: int = param(15_000, "optimiser steps", "code: 15k", low=0, high=10**7)
    batch_size: int = param(64, "images per step", "code: 64", low=1, high=100_000)
    learning_rate: float | None = param(None, "Adam's step size (None: 3e-3 for ConvACs, 1e-3 for ReLU nets); "
                                        "x0.1 after lr_drop of the iterations", "code", low=1e-7, high=10.0)
    lr_drop: float = param(0.8, "fraction of the iterations after which the learning rate is divided by 10",
                           "code: at 80%", low=0.0, high=1.0)
    weight_decay: float | None = param(None, "L2 weight decay (None: 0 for ConvACs, 1e-4 for ReLU nets)", "code",
                                       low=0.0, high=1.0)
    eval_every: int = param(1_000, "iterations between test measurements (and the first at 0)", "lookinside",
                            low=1, high=10**7)
    tolerance: float = param(
        1e-12, "separation_rank: singular values above tolerance x the largest count towards the rank (float64 "
        "SVD of the grid tensor scaled to largest magnitude 1). Float64 noise measured at most 4e-15 of the "
        "largest; the genuine singular values of non-negative nets fall geometrically (a shallow Z = 128 net's "
        "128th near 1e-7, a deep r = 4 net's near 1e-14), so 1e-6 counts well below the exact ranks",
        "lookinside (measured, tests/studies/tensor_convnets/test_rank.py)", low=1e-15, high=0.5)
    seed: int = param(0, "seed of the initialisation, the batch order and the random partition", "lookinside",
                      low=0, high=2**31 - 1)

    def __post_init__(self):
        side = self.side or (32 if self.experiment == "pooling_geometry" else 4)
        object.__setattr__(self, "side", side)
        levels = int(math.log2(side))
        if self.depth is None:
            object.__setattr__(self, "depth", levels)
        elif self.depth > levels:
            raise ValueError(f"depth {self.depth} exceeds log2(side) = {levels} pooling levels of a {side}x{side} "
                             f"image")
        if self.pooling == "custom":
            if sorted(self.permutation or ()) != list(range(side * side)):
                raise ValueError(f"pooling=custom needs `permutation`, a permutation of 0..{side * side - 1} (the "
                                 f"{side}x{side} positions); got {len(self.permutation or ())} values")
        elif self.permutation is not None:
            raise ValueError("a `permutation` is used only with pooling=custom")
        if self.representation == "gaussian" and (self.model != "convac" or self.experiment == "separation_rank"):
            raise ValueError("representation=gaussian applies to model=convac in pooling_geometry only (ranks need the "
                             "one-hot templates, whose grid tensor is the coefficient tensor)")
        relu = self.model.startswith("relu")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", 1e-3 if relu else 3e-3)
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", 1e-4 if relu else 0.0)
        if self.experiment == "separation_rank" and side > 4:
            raise ValueError(f"separation_rank evaluates all 2^(side^2) binary images: side {side} is too large "
                             f"(at most 4, N = 16)")


# Leave tensor shapes alone: members of one pack may differ in these.
PACK_FIELDS = frozenset({"seed", "learning_rate"})   # not weight_decay: the pack shares one optimiser

POOLING_MODELS = ["convac", "relu_avg", "relu_max"]
RANK_DEEP = {"experiment": ["separation_rank"], "model": ["convac"], "pooling": ["square", "mirror"]}
RANK_SHALLOW = {"experiment": ["separation_rank"], "model": ["shallow"], "depth": [1]}
PRESETS = {
    "smoke": Preset(
        "both blob tasks, square and mirror pooling, ConvAC and ReLU-max at 16x16, 1,000 images, 30 steps; "
        "ranks of deep (r = 2) and shallow (Z = 2, 4) nets at N = 16 (seconds)",
        {"n_train": 1_000, "n_test": 500, "side": 16, "iterations": 30, "eval_every": 15, "channels": 8},
        {}, cases=[{"experiment": ["pooling_geometry"], "task": ["closedness", "symmetry"],
                    "pooling": ["square", "mirror"], "model": ["convac", "relu_max"]},
                   {**RANK_DEEP, "channels": [2], "side": [4]},
                   {**RANK_SHALLOW, "channels": [2, 4], "side": [4]}]),
    "laptop": Preset(
        "pooling_geometry at 32x32, r = 16, 2,500 images generated (2,000 kept), 3,000 steps, 3 seeds, every "
        "task x pooling x model; ranks at N = 4 and 16 for deep r = 2..6 and shallow Z = 1..256, 3 seeds",
        {"n_train": 2_500, "n_test": 1_250, "iterations": 3_000, "eval_every": 500},
        {}, cases=[{"experiment": ["pooling_geometry"], "task": ["closedness", "symmetry"],
                    "pooling": ["square", "mirror"], "model": POOLING_MODELS, "seed": [0, 1, 2]},
                   {**RANK_DEEP, "channels": [2, 3, 4, 6], "side": [2, 4], "seed": [0, 1, 2]},
                   {**RANK_SHALLOW, "channels": [1, 2, 4, 8, 16, 32, 64, 128, 256], "side": [2, 4],
                    "seed": [0, 1, 2]}]),
    "paper": Preset(
        "the paper's grid: 25k/5k images, 15k steps at 32x32, every task x pooling x model x breadth r = 8, 16, 32 "
        "x depth 3, 5, 3 seeds (GPU work); ranks at N = 4 and 16 for deep r = 2..8 and shallow Z = 1..256",
        {},
        {}, cases=[{"experiment": ["pooling_geometry"], "task": ["closedness", "symmetry"],
                    "pooling": ["square", "mirror"], "model": POOLING_MODELS, "channels": [8, 16, 32],
                    "depth": [3, 5], "seed": [0, 1, 2]},
                   {**RANK_DEEP, "channels": [2, 3, 4, 6, 8], "side": [2, 4], "seed": [0, 1, 2]},
                   {**RANK_SHALLOW, "channels": [1, 2, 4, 8, 16, 32, 64, 128, 256], "side": [2, 4],
                    "seed": [0, 1, 2]}]),
}
