"""Grid tensors, partitions and separation ranks: known ranks, the shallow bound (CP), and the deep net's
preference for interleaved partitions under square pooling and for their mirror images under mirror pooling.

Ranks are numerical: singular values above tol x the largest. With positive weights exp(theta), theta in
[-1, 1], the genuine singular values of a random ConvAC fall off geometrically (down to 1e-14 of the
largest), so the default tol = 1e-6 counts a lower bound of the exact rank; tol = 1e-12 sits three
decades above the float64 noise, measured at most 4e-15 relative (the (Z+1)-th singular values of shallow
nets, the (r+1)-th of left/right cuts)."""

import pathlib
import sys

import numpy as np
import pytest
import torch

from lookinside.studies.tensor_convnets import STUDY, findings, models, rank

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from tc_helpers import tables  # noqa: E402

NEAR_NOISE = 1e-12


def ranks(net, names=("left_right", "top_bottom", "odd_even", "random"), tol=1e-6, mirror=False):
    parts = rank.partitions(4, seed=0)
    if mirror:
        parts = {name: rank.mirror_partition(part, 4) for name, part in parts.items()}
    return {name: r for name, (r, _) in rank.separation_ranks(net, 4, {n: parts[n] for n in names}, tol).items()}


def test_all_binary_inputs_put_the_first_pixel_in_the_most_significant_bit():
    x = rank.all_binary_inputs(2)
    assert x.shape == (16, 2, 2) and x[5].tolist() == [[0, 1], [0, 1]] and x[8].tolist() == [[1, 0], [0, 0]]
    big = rank.all_binary_inputs(4)
    assert big.shape == (65536, 4, 4) and len(torch.unique(big.flatten(1), dim=0)) == 65536
    with pytest.raises(ValueError):
        rank.all_binary_inputs(8)


def test_partitions_are_the_documented_balanced_splits():
    parts = rank.partitions(4, seed=0)
    assert parts["left_right"][0].tolist() == [0, 1, 4, 5, 8, 9, 12, 13]
    assert parts["top_bottom"][0].tolist() == list(range(8))
    assert parts["odd_even"][0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    for i, j in parts.values():
        assert len(i) == len(j) == 8 and sorted([*i, *j]) == list(range(16))
    again, other = rank.partitions(4, seed=0)["random"], rank.partitions(4, seed=1)["random"]
    assert np.array_equal(again[0], parts["random"][0]) and not np.array_equal(other[0], parts["random"][0])


def test_mirror_partitions_at_side_4():
    """Mirror pooling at side 4 pools {0, 3} x {0, 3}, {0, 3} x {1, 2}, ...: the square net's left/right cut
    becomes outer {0, 3} against inner {1, 2} columns, and its interleaved even/odd columns become left/right."""
    parts = rank.partitions(4)
    outer, inner = rank.mirror_partition(parts["left_right"], 4)
    assert sorted({int(k) % 4 for k in outer}) == [0, 3] and sorted({int(k) % 4 for k in inner}) == [1, 2]
    mirrored = rank.mirror_partition(parts["odd_even"], 4)
    assert all(np.array_equal(a, b) for a, b in zip(mirrored, parts["left_right"]))


def test_matricise_and_rank_on_tensors_known_in_advance():
    """A sum of k products f(x_I) g(x_J) across left/right has rank k there (k = 1, 3), and a generic
    Gaussian tensor is full rank, 256 (each listed order of I and J is the matrix's bit order)."""
    rng = np.random.default_rng(0)
    i, j = rank.partitions(4)["left_right"]
    x = rank.all_binary_inputs(4).flatten(1).numpy().astype(int)
    code_i, code_j = x[:, i] @ (2 ** np.arange(7, -1, -1)), x[:, j] @ (2 ** np.arange(7, -1, -1))
    for k in (1, 3):
        f, g = rng.normal(size=(k, 256)), rng.normal(size=(k, 256))
        tensor = (f[:, code_i] * g[:, code_j]).sum(0)
        matrix = rank.matricise(tensor, 4, (i, j))
        assert np.allclose(matrix, f.T @ g) and rank.numerical_rank(matrix) == k
        assert rank.numerical_rank(rank.matricise(tensor, 4, rank.partitions(4)["odd_even"])) > k
    assert rank.numerical_rank(rank.matricise(rng.normal(size=65536), 4, (i, j))) == 256
    assert rank.numerical_rank(np.zeros((4, 4))) == 0


def test_a_network_of_one_product_has_rank_one_everywhere():
    """Weights set by hand: every conv row alike, so every channel carries the same function and the
    deep ConvAC's score is K prod_p exp(c_{x_p}) with K = sum_g exp(out_g) (sum_b exp(theta2_gb))^4:
    the grid tensor equals that closed form (rtol 1e-12) and has rank 1 under every partition."""
    net = models.ConvAC(4, 3, 2)
    c = torch.tensor([0.3, -0.7])
    with torch.no_grad():
        net.thetas[0].copy_(c.expand(3, 2))
        net.thetas[1].copy_(torch.tensor([0.2, -0.4, 0.9]).expand(3, 3))
    theta2, out = net.thetas[1].detach().double(), net.output[0].detach().double()
    k = (out.exp() * theta2.exp().sum(1) ** 4).sum()
    x = rank.all_binary_inputs(4).flatten(1).double()
    closed = k * torch.exp((c.double()[1] * x + c.double()[0] * (1 - x)).sum(1))
    np.testing.assert_allclose(rank.grid_tensor(net, 4), closed.numpy(), rtol=1e-12)
    assert set(ranks(net, tol=NEAR_NOISE).values()) == {1}


def test_finding_1_a_shallow_net_of_z_channels_never_exceeds_rank_z():
    """CP with Z terms, a factor per position: rank <= Z under every partition, at tol 1e-6 and near the noise
    (1e-12), seeds 0-2; and it is exactly Z under every partition for every seed (measured, Z = 1, 2, 4, 8,
    32), so the bound is tight and a miscounted rank would show."""
    for z in (1, 2, 4, 8, 32):
        for seed in (0, 1, 2):
            net = models.make_model("shallow", 4, z, 1, "square", 2, seed=seed)
            for tol in (1e-6, NEAR_NOISE):
                got = ranks(net, tol=tol)
                assert max(got.values()) <= z, (z, seed, tol, got)
            assert set(got.values()) == {z}, (z, seed, got)


def test_depth_efficiency_a_shallow_net_needs_as_many_channels_as_the_deep_nets_largest_rank():
    """N = 16, seed 0: a deep square ConvAC with r = 2 has rank 16 under odd/even (2 under left/right); the
    smallest shallow Z of {4, 8, 16, 32} whose ranks reach it on every partition is 16."""
    values = {"experiment": "separation_rank", "side": 4, "seed": 0}
    packs = [[c] for c in STUDY.configs("smoke", {**values, "model": "convac", "pooling": "square", "channels": 2})]
    packs += [[c] for c in STUDY.configs("smoke", {**values, "model": "shallow"}, {"channels": [4, 8, 16, 32]})]
    eff = findings.depth_efficiency(findings.frame(tables(packs), "separation_rank"))
    assert eff[["side", "r", "deep_max_rank", "smallest_z"]].values.tolist() == [[4, 2, 16, 16]], eff


@pytest.mark.parametrize("r", [2, 4])
def test_finding_2_square_pooling_favours_the_interleaved_partition(r):
    """Deep ConvAC, depth 2 at N = 16, seeds 0-2, tol 1e-6. Measured ranks (left/right, top/bottom, odd/even):
    r = 2: (1, 1, 11), (2, 2, 16), (2, 2, 11); r = 4: (2, 2, 15), (3, 3, 76), (3, 3, 15), of at most 256.
    Theory: the left/right and top/bottom cuts separate the top node's children, so rank <= r; near the
    noise (tol 1e-12) both are exactly r for every seed. Odd/even splits every 2x2 window, so its rank is
    at most min(r, 3)^4 (16 and 81: a window's two pixels on one side give 3 symmetric functions); near
    the noise measured r = 2: 16, 16, 16; r = 4: 66, 81, 66 (the other 15 singular values sit near 1e-14)."""
    for seed in (0, 1, 2):
        net = models.make_model("convac", 4, r, 2, "square", 2, seed=seed)
        got = ranks(net)
        assert got["odd_even"] >= 10 and got["odd_even"] >= 5 * max(got["left_right"], got["top_bottom"]), got
        near = ranks(net, ("left_right", "top_bottom", "odd_even"), tol=NEAR_NOISE)
        assert near["left_right"] == near["top_bottom"] == r, near
        assert got["odd_even"] <= near["odd_even"] <= min(r, 3) ** 4 <= 1.25 * near["odd_even"], near


@pytest.mark.parametrize("r", [2, 4])
def test_finding_2_mirror_pooling_reverses_the_preference(r):
    """Mirror pooling, same parameters: its ranks under the mirror images of the partitions are exactly the
    square net's under the originals, so the low-rank cut is now mirror(left_right) = outer {0, 3} vs inner
    {1, 2} columns (rank <= r), while left/right itself, which now splits every window into a pixel and its
    reflection, has the square net's odd/even rank (measured r = 2: 11, 16, 11; r = 4: 15, 76, 15)."""
    for seed in (0, 1, 2):
        square = models.make_model("convac", 4, r, 2, "square", 2, seed=seed)
        mirror = models.make_model("convac", 4, r, 2, "mirror", 2, seed=seed)
        assert ranks(mirror, mirror=True) == ranks(square)
        got, base = ranks(mirror), ranks(square)
        assert got["left_right"] >= 10 and got["left_right"] >= 5 * base["left_right"], (got, base)
        assert ranks(mirror, ("left_right",), tol=NEAR_NOISE, mirror=True) == {"left_right": r}


def test_a_relu_net_has_a_separation_rank_too():
    """The rank of a ReLU net's logit on the 2^16 images (no tensor theory; measured, relu_max r = 4, square:
    left/right 3, odd/even 16; relu_avg 2 everywhere at init)."""
    for kind in ("relu_avg", "relu_max"):
        net = models.make_model(kind, 4, 4, 2, "square", 2, seed=0)
        for part in rank.partitions(4).values():
            got, most = rank.separation_rank(net, 4, part)
            assert isinstance(got, int) and 1 <= got <= most == 256
