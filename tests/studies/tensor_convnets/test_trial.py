"""Packed pooling_geometry members train exactly as they would alone."""

import pathlib
import sys

import numpy as np
import pytest

from lookinside.studies.tensor_convnets import STUDY

sys.path.insert(0, str(pathlib.Path(__file__).parent))
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
