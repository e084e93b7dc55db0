"""Packed members train exactly as they would alone."""

import pathlib
import sys

import numpy as np
import torch

from lookinside.studies.gradient_failures import STUDY, parity

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "platform"))
from gf_helpers import run  # noqa: E402
from test_torchpack import assert_packed_equals_alone  # noqa: E402


def test_parity_network_packed_equals_alone_with_torchpack_helper():
    def batches(seed):
        g = torch.Generator().manual_seed(seed)
        subset = parity.draw_subset(6, g)
        return [(x, parity.parity(x, subset)) for x in (parity.draw_inputs(32, 6, g) for _ in range(10))]
    worst = assert_packed_equals_alone(make_module=lambda seed: parity.make_network(6, seed), seeds=[0, 1, 2],
                                       lrs=[0.01, 0.05, 0.1], make_batches=batches, loss_fn=parity.hinge,
                                       optimizer_cls=torch.optim.SGD, atol=1e-6)
    assert worst < 1e-6


def test_packed_rows_equal_rows_trained_alone():
    for values in ({"experiment": "parity", "d": 6, "iterations": 60, "eval_every": 20},
                   {"experiment": "stocks", "method": "end_to_end", "k": 10, "d": 50, "iterations": 60,
                    "eval_every": 20},
                   {"experiment": "tuples", "method": "decomposition", "k": 2, "iterations": 6, "eval_every": 3,
                    "batch_size": 8, "eval_size": 40}):
        configs = STUDY.configs("smoke", values, {"seed": [0, 1, 2], "learning_rate": [0.01, 0.05]})
        packed, alone = run(configs), run(configs, pack=False)
        for table in ("metrics", "gradient_variance"):
            p, a = packed[table].to_pandas(), alone[table].to_pandas()
            if table == "gradient_variance" and values["experiment"] == "tuples":
                assert len(p) == len(a) == 0
                continue
            assert len(p) == len(a) > 0 and (p["trial_id"] == a["trial_id"]).all()
            numbers = [c for c in p.columns if p[c].dtype.kind == "f"]
            np.testing.assert_allclose(p[numbers].to_numpy(), a[numbers].to_numpy(), rtol=1e-5, atol=1e-6)
        assert packed["metrics"].to_pandas().groupby("trial_id")["loss"].last().nunique() == 6   # members differ
