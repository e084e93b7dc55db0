"""The ConvACs' log-space forward against their linear-space products; pooling geometries; shapes, init and packing."""

import math

import pytest
import torch
from torch.nn import functional as F

from lookinside.studies.tensor_convnets import models
from lookinside.torchpack import PackedModel


def binary(n: int, side: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (n, side, side), generator=torch.Generator().manual_seed(seed)).float()


def user_order(side: int, seed: int) -> tuple[int, ...]:
    return tuple(torch.randperm(side * side, generator=torch.Generator().manual_seed(seed)).tolist())


FORWARD_CASES = [(side, depth, pooling) for side in (4, 8) for depth in range(1, models.levels(side) + 1)
                 for pooling in ("square", "mirror", "user")]


@pytest.mark.parametrize("side, depth, pooling", FORWARD_CASES)
def test_deep_log_space_forward_equals_the_linear_space_products(side, depth, pooling):
    """exp(log-scores) against products and non-negative sums in float64, no logs (rtol 1e-6; measured
    at most 1e-14 in float64). In float32, as trained, within 1e-4 (measured at most 1.3e-5, side 8)."""
    geometry = user_order(side, depth) if pooling == "user" else pooling
    net = models.make_model("convac", side, 3, depth, geometry, 3, seed=depth)
    x = binary(64, side, seed=side + depth)
    reference = models.linear_space_output(net, x)                       # float64 whatever the model's dtype
    assert reference.dtype == torch.float64 and reference.shape == (64, 3) and (reference > 0).all()
    torch.testing.assert_close(net(x).double().exp(), reference, rtol=1e-4, atol=0)
    torch.testing.assert_close(net.double()(x.double()).exp(), reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("side", [4, 8])
def test_shallow_log_space_forward_equals_the_linear_space_products(side):
    """The shallow net (CP, Z = 5): exp(log-scores) within rtol 1e-6 of the linear-space products (float64)."""
    net = models.make_model("shallow", side, 5, 1, "square", 2, seed=4).double()
    x = binary(64, side, seed=side)
    torch.testing.assert_close(net(x.double()).exp(), models.linear_space_output(net, x), rtol=1e-6, atol=0)


def test_the_shallow_nets_factors_are_its_positions_own():
    """CP has a factor per position: images with the same number of lit pixels score differently (with
    weights shared by all positions they would score the same, a symmetric tensor); measured 0.4 apart."""
    x = torch.stack([binary(1, 8, seed=s)[0] for s in range(40)])
    x = x[x.sum((1, 2)) == x.sum((1, 2)).mode().values]
    assert len(x) >= 3
    shallow = models.make_model("shallow", 8, 6, 1, "square", 2, seed=0)(x)
    assert (shallow - shallow[:1]).abs().max() > 0.1


def test_gaussian_representation_matches_its_densities():
    """Real pixels and M = 3 Gaussian templates: exp(log-scores) equals the product of mixtures of
    densities computed from the same means and scales (rtol 1e-6, float64), and the means start evenly in [0, 1]."""
    torch.manual_seed(0)
    net = models.ConvAC(4, 3, 2, "mirror", representation="gaussian", templates=3).double()
    assert net.means.tolist() == [0.0, 0.5, 1.0]
    x = torch.rand(32, 4, 4, dtype=torch.float64) * 1.4 - 0.2
    torch.testing.assert_close(net(x).exp(), models.linear_space_output(net, x), rtol=1e-6, atol=0)


def test_mirror_per_level_equals_its_single_input_permutation():
    """The code's way (the QUAD2 permutation before every pooling) and ours (one permutation of the input,
    also given as a user tuple) give identical outputs, bit for bit, for ConvACs and both ReLU nets."""
    for side in (4, 8, 16):
        for depth in range(1, models.levels(side) + 1):
            x = binary(16, side, seed=depth)
            order = tuple(models.input_permutation(side, "mirror", depth).tolist())
            for kind, make in (("convac", models.ConvAC), ("avg", models.ReLUNet), ("max", models.ReLUNet)):
                extra = {} if kind == "convac" else {"pool": kind}
                torch.manual_seed(side + depth)
                per_level = make(side, 3, depth, "mirror", per_level=True, **extra)
                nets = [make(side, 3, depth, geometry, **extra) for geometry in ("mirror", order)]
                for net in nets:
                    net.load_state_dict(per_level.state_dict())
                    assert torch.equal(net(x), per_level(x)), (side, depth, kind)


def test_mirror_windows_pool_positions_with_their_reflections():
    """After one level of mirror pooling on side 8, each square 2x2 window of the permuted input holds
    the rows {k, 7-k} and the columns {l, 7-l} of the image."""
    perm = models.input_permutation(8, "mirror", 1).view(8, 8)
    for h in range(4):
        for w in range(4):
            window = perm[2 * h:2 * h + 2, 2 * w:2 * w + 2].flatten()
            rows, cols = {int(p) // 8 for p in window}, {int(p) % 8 for p in window}
            assert len(rows) == 2 and sum(rows) == 7 and len(cols) == 2 and sum(cols) == 7


def test_deeper_mirror_permutations_do_not_change_a_shallower_net():
    """A depth-1 mirror net at side 8 equals the square net on the input permuted for all 3 levels: deeper
    levels move whole blocks, which the global pooling merges (why rank.mirror_partition may use all levels)."""
    torch.manual_seed(0)
    mirror = models.ConvAC(8, 3, 1, "mirror").double()
    full = models.ConvAC(8, 3, 1, tuple(models.input_permutation(8, "mirror", 3).tolist())).double()
    full.load_state_dict(mirror.state_dict())
    x = binary(32, 8, seed=1).double()
    torch.testing.assert_close(full(x), mirror(x), rtol=1e-12, atol=0)
    assert not torch.equal(models.input_permutation(8, "mirror", 3), models.input_permutation(8, "mirror", 1))


@pytest.mark.parametrize("bad", [(0, 1, 2), tuple(range(15)) + (0,), tuple(range(1, 17)), (0.0,) * 16,
                                 (True,) + tuple(range(1, 16)), "diagonal"])
def test_a_non_permutation_is_refused_in_one_line(bad):
    with pytest.raises(ValueError) as err:
        models.make_model("convac", 4, 2, 2, bad, 2, seed=0)
    assert "\n" not in str(err.value) and str(err.value)


def test_square_is_the_identity_and_a_user_permutation_is_kept():
    assert models.input_permutation(4, "square", 2).tolist() == list(range(16))
    order = user_order(4, 0)
    assert models.input_permutation(4, list(order), 2).tolist() == list(order)


@pytest.mark.parametrize("side", [4, 8, 32])
def test_every_model_gives_one_score_per_class(side):
    for depth in range(1, models.levels(side) + 1):
        x = binary(3, side, seed=depth)
        for kind in models.KINDS:
            for pooling in ("square", "mirror"):
                out = models.make_model(kind, side, 4, depth, pooling, 3, seed=0)(x)
                assert out.shape == (3, 3) and torch.isfinite(out).all(), (side, depth, kind, pooling)


def test_depth_outside_the_grid_is_refused():
    with pytest.raises(ValueError):
        models.make_model("convac", 8, 2, 4, "square", 2, seed=0)
    with pytest.raises(ValueError):
        models.make_model("relu_max", 8, 2, 0, "square", 2, seed=0)
    with pytest.raises(ValueError):
        models.make_model("convac", 6, 2, 1, "square", 2, seed=0)


def test_init_follows_the_code_and_a_seed_fixes_it():
    """ConvAC log-weights uniform in [-1, 1] (MEX offsets_filler); ReLU weights uniform in +-sqrt(3 / fan_in)
    (Caffe's xavier) with zero biases. At side 32, r = 16, depth 5 the log-scores stay finite (measured
    about 1,260, the classes 0.05 apart)."""
    convac = models.make_model("convac", 32, 16, 5, "square", 2, seed=0)
    thetas = torch.cat([p.flatten() for p in convac.parameters()])
    assert thetas.abs().max() <= 1 and thetas.std() > 0.5                    # U[-1, 1]: std 0.577
    scores = convac(binary(8, 32, seed=0))
    assert torch.isfinite(scores).all() and 500 < scores.min() and scores.max() < 3000
    relu = models.make_model("relu_max", 32, 16, 5, "square", 2, seed=0)
    for layer in [*relu.convs, relu.output]:
        bound = math.sqrt(3 / layer.weight[0].numel())
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound
        assert (layer.bias == 0).all()
    again = models.make_model("convac", 32, 16, 5, "square", 2, seed=0)
    other = models.make_model("convac", 32, 16, 5, "square", 2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(convac.parameters(), again.parameters()))
    assert not torch.equal(convac.thetas[0], other.thetas[0])


@pytest.mark.parametrize("kind, pooling", [("convac", "mirror"), ("relu_max", "square"), ("shallow", "square"),
                                           ("relu_avg", "mirror")])
def test_a_pack_computes_what_its_members_compute_alone(kind, pooling):
    """vmap compatibility: PackedModel of seeds 0 and 1 against each member alone (atol 1e-5), and the
    summed cross-entropy of the pack backpropagates to finite gradients."""
    members = [models.make_model(kind, 16, 4, 3, pooling, 2, seed=s) for s in (0, 1)]
    packed = PackedModel([models.make_model(kind, 16, 4, 3, pooling, 2, seed=s) for s in (0, 1)])
    x = binary(8, 16, seed=2)
    out = packed(x, shared=True)
    assert out.shape == (2, 8, 2)
    for p, net in enumerate(members):
        torch.testing.assert_close(out[p], net(x), atol=1e-5, rtol=0)
    y = torch.tensor([0, 1] * 4)
    torch.vmap(F.cross_entropy, in_dims=(0, None))(out, y).sum().backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in packed.params.values())
