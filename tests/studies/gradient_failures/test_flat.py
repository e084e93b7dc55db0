"""Flat activations (paper sec. 5): the staircase, packing, checkpoint continuation and the finding
on a fixed-seed CI-sized run (one thread); measured numbers are quoted beside the thresholds."""

import pathlib
import sys

import numpy as np
import torch

from lookinside.studies.gradient_failures import STUDY, flat

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import inprocess  # noqa: E402
from gf_helpers import run  # noqa: E402

FLAT = {"experiment": "flat_activation", "eval_size": 200}


def test_staircase_has_levels_distinct_monotone_values_and_the_codes_steps():
    for levels in (2, 5, 52, 55):
        z = (0.3 + flat.staircase(levels))[None]                                  # b* = 0.3
        r = torch.cat([torch.linspace(float(z.min()) - 1, float(z.max()) + 1, 200_001), z[0]])[None]
        u = z.gather(1, flat.level_index(r, z))[0]
        assert len(torch.unique(u)) == levels
        assert (torch.diff(u[torch.argsort(r[0])]) >= 0).all()
        # Midway between steps the sigmoids sit within 1% of the larger neighbouring step (measured:
        # 0.67% of the step of 5 below the fine steps, from its sigmoid's tail; near 0 elsewhere).
        middles, heights = (z[:, 1:] + z[:, :-1]) / 2, torch.diff(z, prepend=z[:, :1], append=z[:, -1:])
        error = (flat.smooth_u(middles, z) - z[:, :-1]).abs()
        assert (error <= 0.01 * torch.maximum(heights[:, :-2], heights[:, 1:-1]) + 1e-5).all(), error.max()
    code = sorted({*range(-100, 100, 5), -5, -4, -3, -2, -1, -0.2, 0, 0.1, 0.15, 0.175, 1, 2, 3, 4, 5})
    np.testing.assert_allclose(flat.staircase(52).numpy(), code, atol=1e-6)


def test_packed_rows_equal_rows_trained_alone():
    for method in ("forward_only", "multiclass"):
        configs = STUDY.configs("smoke", {**FLAT, "method": method, "hidden": 32, "iterations": 60, "eval_every": 20},
                                {"seed": [0, 1], "learning_rate": [3e-3, 0.03]})
        packed, alone = run(configs), run(configs, pack=False)
        for table in ("metrics", "curves"):
            p, a = packed[table].to_pandas(), alone[table].to_pandas()
            assert len(p) == len(a) > 0 and (p["trial_id"] == a["trial_id"]).all()
            numbers = [c for c in p.columns if p[c].dtype.kind == "f"]
            np.testing.assert_allclose(p[numbers].to_numpy(), a[numbers].to_numpy(), rtol=1e-5, atol=1e-6)
        assert len(packed["curves"]) == 4 * flat.CURVE_POINTS
        assert packed["metrics"].to_pandas().groupby("trial_id")["loss"].last().nunique() == 4   # members differ


def train_interrupted(configs, interrupt_after=None):
    return inprocess.train_interrupted(STUDY, configs, ("metrics", "curves"), interrupt_after)


def test_continuing_from_a_checkpoint_gives_the_same_rows():
    torch.set_num_threads(1)
    configs = STUDY.configs("smoke", {**FLAT, "method": "end_to_end", "hidden": 32, "iterations": 40,
                                      "eval_every": 10}, {"seed": [0, 1]})
    whole, resumed = train_interrupted(configs), train_interrupted(configs, interrupt_after=25)
    for table in ("metrics", "curves"):
        for a, b in zip(whole[table], resumed[table]):
            assert len(a) == len(b) > 0
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert list(whole["metrics"][0]["iteration"]) == [0, 10, 20, 30, 40]


def test_forward_only_beats_the_sigmoid_approximation_at_equal_iterations():
    """Paper setup (d = 100, 55 levels, batch 256, Adam: forward-only lr 1e-3, sigmoid lr 0.01),
    4,000 steps each, seeds 0-3, 500 test examples. Measured test squared error: forward-only
    3.1e-4, 1.8e-4, 9.0e-5, 2.4e-4 (accuracy 0.982-0.994); sigmoid 0.841, 0.0028, 1.272, 0.108
    (accuracy 0.030, 0.976, 0.000, 0.020): three of four sigmoid members sit on a flat step."""
    values = {**FLAT, "eval_size": 500, "iterations": 4000, "eval_every": 4000}
    last = {}
    for method in ("forward_only", "sigmoid"):
        metrics = run(STUDY.configs("smoke", {**values, "method": method}, {"seed": [0, 1, 2, 3]}))["metrics"]
        last[method] = metrics.to_pandas().query("iteration == 4000").set_index("trial_id")
    fo, sig = last["forward_only"], last["sigmoid"]
    assert (fo.loss < 1e-3).all() and (fo.accuracy > 0.97).all(), fo
    assert (fo.loss < sig.loss).all(), (fo, sig)
    assert (sig.loss > 0.1).sum() >= 2 and sig.loss.mean() > 100 * fo.loss.mean(), sig
