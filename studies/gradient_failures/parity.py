"""Parity (paper sec. 2.1, Fig. 1): learning y = prod_{i in v*} x_i from x uniform in {+-1}^d.

One ReLU layer of 10d units and a linear output, hinge loss, plain SGD; members of a pack
(seeds, learning rates) train at once with lookinside.torchpack, each with its own target,
data stream and fixed test set. Before training each member measures, at its
initialisation, the variance across random target subsets v of the gradient of the expected
loss: Var_v = mean_v ||g_v - mean_v' g_v'||^2 over all parameters, with E_x exact (all 2^d
inputs) when 2^d <= variance_batch, else over variance_batch sampled inputs, whose sampling
noise then sets a floor of order G^2 / variance_batch.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from lookinside.torchpack import PackedModel, PackedOptimizer, restore, training_state


def make_network(d: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 10 * d), nn.ReLU(), nn.Linear(10 * d, 1))


def hinge(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:    # (B, 1), (B,) -> ()
    return torch.clamp(1 - y * scores[:, 0], min=0).mean()


def draw_subset(d: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random subset of the d bits, as a (d,) bool mask (the empty set included)."""
    return torch.randint(0, 2, (d,), generator=generator).bool()


def draw_inputs(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n, d), generator=generator).float() * 2 - 1      # (n, d) in {+-1}


def parity(x: torch.Tensor, subset: torch.Tensor) -> torch.Tensor:   # (n, d), (d,) -> (n,)
    return torch.where(subset, x, torch.ones_like(x)).prod(-1)


def all_inputs(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=d)))       # (2^d, d)


def gradient_variance(net: nn.Module, d: int, n_targets: int, batch: int, generator: torch.Generator) -> float:
    """Variance across n_targets random subsets of the expected hinge-loss gradient at net's weights."""
    x = all_inputs(d) if 2**d <= batch else draw_inputs(batch, d, generator)
    grads = []
    for _ in range(n_targets):
        y = parity(x, draw_subset(d, generator))
        net.zero_grad()
        hinge(net(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]).double())
    g = torch.stack(grads)                                                       # (T, n_params)
    return float(((g - g.mean(0)) ** 2).sum(1).mean())


def train(configs, session) -> None:
    c0 = configs[0]
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    subsets = torch.stack([draw_subset(c0.d, g) for g in gens])                   # (P, d)
    x_test = torch.stack([draw_inputs(c0.eval_size, c0.d, g) for g in gens])      # (P, N, d)
    y_test = torch.stack([parity(x, s) for x, s in zip(x_test, subsets)])        # (P, N)
    members = [make_network(c0.d, c.seed) for c in configs]
    if session.state is None:
        for p, (c, net) in enumerate(zip(configs, members)):
            v = gradient_variance(net, c.d, c.n_targets, c.variance_batch, torch.Generator().manual_seed(c.seed + 1))
            session.add_rows("gradient_variance", p, {"n_targets": [c.n_targets], "variance": [v]})
    model = PackedModel(members)
    opt = PackedOptimizer(model, torch.optim.SGD, [c.learning_rate for c in configs])
    start = restore(session.state, model, opt, gens)
    losses = torch.vmap(hinge)
    for it in range(start, c0.iterations + 1):
        if it % c0.eval_every == 0 or it == c0.iterations:
            with torch.no_grad():
                scores = model(x_test, shared=False)                              # (P, N, 1)
            acc = (torch.sign(scores[..., 0]) == y_test).double().mean(1)
            session.add_pack_rows("metrics", {"iteration": [it], "split": ["test"]},
                                  {"loss": losses(scores, y_test).double().numpy()[:, None],
                                   "accuracy": acc.numpy()[:, None]})
            session.report(iteration=it, progress=it / max(c0.iterations, 1), test_accuracy=float(acc.mean()))
        if it == c0.iterations:
            break
        x = torch.stack([draw_inputs(c0.batch_size, c0.d, g) for g in gens])     # (P, B, d)
        y = torch.stack([parity(xi, s) for xi, s in zip(x, subsets)])            # (P, B)
        opt.zero_grad()
        losses(model(x, shared=False), y).sum().backward()
        opt.step()

        session.checkpoint(lambda it=it: training_state(model, opt, gens, it + 1))
