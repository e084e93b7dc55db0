"""Packed pooling_geometry members train exactly as they would alone."""

import pathlib
import sys

import numpy as np
import pytest

from lookinside.studies.tensor_convnets import STUDY

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import inprocess  # noqa: E402
from tc_helpers import run  # noqa: E402


@pytest.mark.parametrize("model,representation", [("convac", "onehot"), ("convac", "gaussian"),
                                                  ("relu_avg", "onehot")])
def test_packed_rows_equal_rows_trained_alone(model, representation):
    configs = STUDY.configs("smoke", {"experiment": "pooling_geometry", "model": model, "task": "symmetry",
                                      "pooling": "mirror", "representation": representation, "iterations": 40,
                                      "eval_every": 20}, {"seed": [0, 1], "learning_rate": [0.003, 0.03]})
    packed, alone = run(configs), run(configs, pack=False)
    p, a = packed["accuracy"].to_pandas(), alone["accuracy"].to_pandas()
    assert len(p) == len(a) == 4 * 3 * 2 and (p["trial_id"] == a["trial_id"]).all()
    np.testing.assert_allclose(p["accuracy"], a["accuracy"], atol=1e-9)
    # members differ, so equal rows are not trivially equal
    assert p[p["step"] == 40].groupby("trial_id")["accuracy"].first().nunique() > 1


def test_continuing_from_a_checkpoint_after_the_learning_rate_drop_gives_the_same_rows():
    """40 steps with the tenfold drop at step 20, stopped at the 30th checkpoint and continued from disk:
    the rows equal an uninterrupted run's (the drop is restored with the optimiser, not applied twice)."""
    configs = STUDY.configs("smoke", {"experiment": "pooling_geometry", "model": "convac", "task": "closedness",
                                      "pooling": "square", "iterations": 40, "eval_every": 10, "lr_drop": 0.5,
                                      "learning_rate": 0.03}, {"seed": [0, 1]})
    whole = inprocess.train_interrupted(STUDY, configs, ("accuracy",))
    resumed = inprocess.train_interrupted(STUDY, configs, ("accuracy",), interrupt_after=30)
    for a, b in zip(whole["accuracy"], resumed["accuracy"]):
        assert len(a) == len(b) == 5 * 2
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert whole["accuracy"][0].groupby("split")["accuracy"].nunique().max() > 1   # it learns: rows can differ
