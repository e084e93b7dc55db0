"""Packed members train exactly as they would alone; stops and checkpoints behave."""

import pathlib
import sys

import numpy as np
import torch
from torch.nn import functional as F

from lookinside.studies.implicit_regularization import STUDY
from lookinside.studies.implicit_regularization.trial import make_member

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "platform"))
from ir_helpers import run  # noqa: E402
from test_torchpack import assert_packed_equals_alone  # noqa: E402


def configs(**values):
    base = {"train_size": 200, "test_size": 100, "epochs": 4, "hidden": 32, "learning_rate": 0.2}
    return STUDY.configs("smoke", {**base, **values}, {"seed": [0, 1, 2], "label_noise": [0.0, 0.2]})


def test_study_mlp_packed_equals_alone_with_torchpack_helper():
    worst = assert_packed_equals_alone(
        make_module=lambda seed: make_member(configs()[seed], 64, 10), seeds=[0, 1, 2], lrs=[0.2, 0.1, 0.05],
        make_batches=lambda seed: [(torch.randn(20, 64, generator=torch.Generator().manual_seed(seed * 10 + t)),
                                    torch.arange(20) % 10) for t in range(8)],
        loss_fn=F.cross_entropy, optimizer_cls=torch.optim.SGD, atol=1e-5)
    assert worst < 1e-5


def test_packed_rows_equal_rows_trained_alone():
    cs = configs()
    assert len(cs) == 6 and len({c.hidden for c in cs}) == 1
    packed, _ = run(cs, pack=True)
    alone, _ = run(cs, pack=False)
    p, a = packed.to_pandas(), alone.to_pandas()
    assert len(p) == len(a) == 6 * 5
    numbers = [c for c in p.columns if c not in ("trial_id",)]
    difference = np.abs(p[numbers].to_numpy() - a[numbers].to_numpy()) / np.maximum(1, np.abs(a[numbers].to_numpy()))
    assert difference.max() < 1e-4, difference.max()   # observed: ~1e-6 (float32 batched matmuls)
    # Members differ: label noise and seed reach the rows.
    assert p.groupby("trial_id")["train_loss"].last().nunique() == 6


def test_zero_error_stop_ends_a_members_rows():
    cs = STUDY.configs("smoke", {"train_size": 100, "epochs": 30, "hidden": 64}, {"seed": [0]})
    metrics, _ = run(cs)
    m = metrics.to_pandas()
    assert m["train_error"].iloc[-1] == 0 and (m["train_error"].iloc[:-1] > 0).all()
    assert m["epoch"].tolist() == list(range(len(m)))


def test_path_sgd_members_train_alone_in_one_pack():
    cs = STUDY.configs("smoke_path_sgd", {"optimizer": "path_sgd", "epochs": 3, "train_size": 100},
                       {"seed": [0, 1]})
    packed, _ = run(cs)
    alone, _ = run(cs, pack=False)
    np.testing.assert_allclose(packed["train_loss"].to_numpy(), alone["train_loss"].to_numpy(), rtol=1e-6)


def test_a_diverging_member_fails_alone_and_its_pack_goes_on():
    """SGD at lr 0.3 from the unbalanced init (mnist1d) reaches non-finite weights; the spectral norm's SVD
    would raise on them and fail the whole pack, so capacity gives nan there instead."""
    from lookinside.session import Session
    from lookinside.studies.implicit_regularization import TABLES
    cs = STUDY.configs("laptop_path_sgd", {"optimizer": "sgd", "init": "unbalanced", "dropout": 0.0, "epochs": 2,
                                          "train_size": 0},
                       {"learning_rate": [0.01, 0.3]})
    session = Session(["t0", "t1"], TABLES)
    STUDY.train(cs, session)
    assert list(session.failures) == [1] and "non-finite" in session.failures[1]
    kept = session.member_table("metrics", 0).to_pandas()
    assert kept["epoch"].tolist() == [0, 1, 2] and np.isfinite(kept["spectral_product"]).all()
