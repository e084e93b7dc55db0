"""Stocks (paper sec. 3, Fig. 4): one-hot x in d dimensions, a hidden label y(x) in [k], and
z with z_y = 1 and every other z_i uniform in {+-1}. A linear layer and a softmax p; the
end-to-end loss -z . p (the reward of the choice) against the decomposition loss -p_y.
Adam, all members of a pack at once (lookinside.torchpack). At the initialisation each
member measures the variance of its per-example gradient over n_targets fresh examples:
about k times larger end-to-end than decomposed (paper sec. 3).
"""

from __future__ import annotations

import torch
from torch import nn

from lookinside.torchpack import PackedModel, PackedOptimizer


def make_layer(d: int, k: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, k)


def draw(n: int, d: int, k: int, labels: torch.Tensor, g: torch.Generator):
    """(n, d) one-hot inputs, (n,) hidden labels, (n, k) rewards z."""
    j = torch.randint(0, d, (n,), generator=g)
    y = labels[j]
    z = torch.randint(0, 2, (n, k), generator=g).float() * 2 - 1
    z[torch.arange(n), y] = 1.0
    return nn.functional.one_hot(j, d).float(), y, z


def loss_fn(method: str):
    def loss(logits, y, z):                                           # (B, k), (B,), (B, k) -> ()
        p = logits.softmax(-1)
        if method == "end_to_end":
            return -(z * p).sum(-1).mean()
        return -p.gather(-1, y[:, None]).mean()
    return loss


def per_example_variance(layer: nn.Linear, method: str, x, y, z) -> float:
    """mean_i ||g_i - mean g||^2 over the examples' own gradients g_i (weights and bias). With x_i
    one-hot, g_i = (delta_i e_j^T, delta_i) for delta_i the loss's gradient in the logits, so
    ||g_i||^2 = 2 ||delta_i||^2 and no (n, k, d) tensor is needed."""
    logits = layer(x).detach().requires_grad_()                                    # (n, k)
    loss = loss_fn(method)
    torch.vmap(loss)(logits[:, None], y[:, None], z[:, None]).sum().backward()
    delta = logits.grad.double()                                                    # (n, k)
    mean_w, mean_b = delta.T @ x.double() / len(x), delta.mean(0)                   # (k, d), (k,)
    return float(2 * (delta ** 2).sum(1).mean() - (mean_w ** 2).sum() - (mean_b ** 2).sum())


def train(configs, session) -> None:
    c0 = configs[0]
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    labels = [torch.randint(0, c0.k, (c0.d,), generator=g) for g in gens]
    layers = [make_layer(c0.d, c0.k, c.seed) for c in configs]
    tests = [draw(c0.eval_size, c0.d, c0.k, lab, g) for lab, g in zip(labels, gens)]
    for p, (c, layer, lab) in enumerate(zip(configs, layers, labels)):
        x, y, z = draw(c.n_targets, c.d, c.k, lab, torch.Generator().manual_seed(c.seed + 1))
        session.add_rows("gradient_variance", p, {"n_targets": [c.n_targets],
                                                  "variance": [per_example_variance(layer, c.method, x, y, z)]})
    model = PackedModel(layers)
    opt = PackedOptimizer(model, torch.optim.Adam, [c.learning_rate for c in configs])
    loss = torch.vmap(loss_fn(c0.method))
    x_test, y_test, z_test = (torch.stack(t) for t in zip(*tests))                # (P, N, ...)
    for it in range(c0.iterations + 1):
        if it % c0.eval_every == 0 or it == c0.iterations:
            with torch.no_grad():
                logits = model(x_test, shared=False)                               # (P, N, k)
            acc = (logits.argmax(-1) == y_test).double().mean(1)
            session.add_pack_rows("metrics", {"iteration": [it], "split": ["test"]},
                                  {"loss": loss(logits, y_test, z_test).double().numpy()[:, None],
                                   "accuracy": acc.numpy()[:, None]})
        if it == c0.iterations:
            break
        batch = [draw(c0.batch_size, c0.d, c0.k, lab, g) for lab, g in zip(labels, gens)]
        x, y, z = (torch.stack(t) for t in zip(*batch))
        opt.zero_grad()
        loss(model(x, shared=False), y, z).sum().backward()
        opt.step()
