"""Path-SGD's kappa and the path norm against brute-force sums over paths; rescaling invariance."""

import pytest
import torch
from torch.nn import functional as F

from lookinside.studies.implicit_regularization.model import (
    PathSGD,
    linears,
    make_mlp,
    module_capacity,
    rescale_hidden,
    unbalance,
)


def brute_force(model):
    """Every input-output path (bias units start paths too) as a list of (parameter, index);
    returns the path sum of prod w^2 and, per parameter, kappa: for each path through an
    edge, the product of the other edges' w^2, summed."""
    layers = linears(model)
    paths = []
    for start in range(len(layers)):   # paths entering layer `start` from its inputs or its bias unit
        first = layers[start]
        sources = [[(first.weight, (o, i))] for o in range(first.out_features) for i in range(first.in_features)]
        if start > 0:
            sources = []
        sources += [[(first.bias, (o,))] for o in range(first.out_features)]
        for source in sources:
            unit = source[0][1][0]
            tails = [[]]
            for layer in layers[start + 1:]:
                tails = [t + [(layer.weight, (o, (t[-1][1][0] if t else unit)))] for t in tails
                         for o in range(layer.out_features)]
            paths += [source + t for t in tails]
    total = 0.0
    kappa = {id(p): torch.zeros_like(p) for layer in layers for p in (layer.weight, layer.bias)}
    for path in paths:
        squares = [float(p.detach()[idx]) ** 2 for p, idx in path]
        total += float(torch.tensor(squares, dtype=torch.float64).prod())
        for j, (p, idx) in enumerate(path):
            kappa[id(p)][idx] += float(torch.tensor(squares[:j] + squares[j + 1:], dtype=torch.float64).prod())
    return total, kappa


def tiny(seed=0):
    return make_mlp([3, 4, 3, 2], 0.0, seed).double()


def test_kappa_equals_the_brute_force_sum_over_paths():
    model = tiny()
    total, expected = brute_force(model)
    opt = PathSGD(model, 0.1)
    params = [p for layer in linears(model) for p in (layer.weight, layer.bias)]
    assert len(params) == 6
    for p, k in zip(params, opt.kappa()):
        torch.testing.assert_close(k, expected[id(p)], rtol=1e-12, atol=0)
    # Output biases have kappa 1: only their own one-edge path runs through them.
    assert torch.equal(opt.kappa()[-1], torch.ones(2, dtype=torch.float64))


def test_path_norm_of_the_squared_weight_pass_equals_the_path_sum():
    model = tiny(3)
    total, _ = brute_force(model)
    assert module_capacity(model)["path_norm"] == pytest.approx(total ** 0.5, rel=1e-12)


def batches(n=5):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (16,), generator=g))
            for _ in range(n)]


def steps(model, opt):
    for x, y in batches():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_rescaled_twin_computes_the_same_function():
    model = tiny()
    twin = unbalance(tiny(), 30.0, seed=1)
    x = torch.randn(50, 3, dtype=torch.float64)
    torch.testing.assert_close(twin(x), model(x), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(linears(twin)[0].weight, linears(model)[0].weight)


def test_path_sgd_steps_are_rescaling_invariant_and_sgd_steps_are_not():
    x = torch.randn(50, 3, dtype=torch.float64)
    model, twin = tiny(), unbalance(tiny(), 30.0, seed=1)
    steps(model, PathSGD(model, 0.05))
    steps(twin, PathSGD(twin, 0.05))
    worst = (twin(x) - model(x)).abs().max().item()
    assert worst < 1e-10   # observed: ~1e-15
    # The twin after Path-SGD is the network after Path-SGD rescaled by the same factors.
    model, twin = tiny(), unbalance(tiny(), 30.0, seed=1)
    steps(model, torch.optim.SGD(model.parameters(), lr=0.05))
    steps(twin, torch.optim.SGD(twin.parameters(), lr=0.05))
    assert (twin(x) - model(x)).abs().max().item() > 1e-2


def test_rescale_hidden_is_exact_for_chosen_factors():
    model = tiny()
    factors = [torch.full((4,), 2.0, dtype=torch.float64), torch.tensor([0.5, 3.0, 1.0], dtype=torch.float64)]
    twin = rescale_hidden(tiny(), factors)
    torch.testing.assert_close(linears(twin)[0].weight, 2 * linears(model)[0].weight)
    assert module_capacity(twin)["path_norm"] == pytest.approx(module_capacity(model)["path_norm"], rel=1e-12)


def test_path_sgd_rejects_other_layers():
    with pytest.raises(TypeError, match="Tanh"):
        PathSGD(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()), 0.1)
