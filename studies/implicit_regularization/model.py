"""ReLU MLPs, their norm-based capacity measures, the unbalanced init, and Path-SGD.

Biases: a hidden or output unit's bias is the weight of an edge from a bias unit that always
outputs 1, so paths may also start at a bias unit. The squared-weight forward pass squares
biases with the weights, and Path-SGD scales a bias by its own kappa (gamma_out of its unit,
since gamma_in of a bias unit is 1). Rescaling a unit's incoming weights and bias by c and its
outgoing weights by 1/c leaves the function, the path norm and the Path-SGD step unchanged.
(Path-SGD, the paper, writes networks without biases; this is the natural extension.)

Unlike the original code (bneyshabur/path-sgd, whose `self.params` generator is used up by
the first step so that every later step is plain SGD with momentum), kappa is computed from
the current weights at every step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def make_mlp(widths: list[int], dropout: float, seed: int) -> nn.Sequential:
    """Linear-ReLU(-Dropout) layers of `widths` (input, hidden..., classes), PyTorch's init
    drawn from `seed`."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


@torch.no_grad()
def rescale_hidden(model: nn.Sequential, factors: list[torch.Tensor]) -> nn.Sequential:
    """Multiplies hidden layer k's incoming weights and biases by factors[k] (one per unit) and
    the next layer's weights from those units by 1/factors[k]: the same function (ReLU is
    positively homogeneous), in place."""
    layers = linears(model)
    for layer, nxt, c in zip(layers[:-1], layers[1:], factors):
        layer.weight.mul_(c.unsqueeze(1))               # (out, in) * (out, 1)
        layer.bias.mul_(c)
        nxt.weight.div_(c.unsqueeze(0))                 # (out', out) / (1, out)
    return model


def unbalance(model: nn.Sequential, largest: float, seed: int) -> nn.Sequential:
    """The unbalanced but equivalent init: every hidden unit rescaled by c, log-uniform in
    [1/largest, largest], drawn from `seed`."""
    rng = np.random.default_rng([seed, 17])
    factors = [torch.as_tensor(np.exp(rng.uniform(-1, 1, layer.out_features) * np.log(largest)),
                               dtype=layer.weight.dtype) for layer in linears(model)[:-1]]
    return rescale_hidden(model, factors)


def path_sums(squared_weights: list[torch.Tensor], squared_biases: list[torch.Tensor]) -> torch.Tensor:
    """sum over input-output paths (bias units included) of the product of the edges' values,
    given the squares w^2 of the weights (P, out, in) and biases (P, out): the squared-weight
    network's outputs on an all-ones input, summed; (P,). ReLU is the identity here: every
    value is >= 0."""
    w0 = squared_weights[0]
    h = torch.ones(w0.shape[0], w0.shape[2], dtype=w0.dtype, device=w0.device)   # (P, in)
    for w2, b2 in zip(squared_weights, squared_biases):
        h = torch.einsum("poi,pi->po", w2, h) + b2                                 # (P, out)
    return h.sum(1)


def squared_path_sums(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """sum over paths of prod_e w_e^2 (the squared l2 path norm), per member: (P,)."""
    return path_sums([w * w for w in weights], [b * b for b in biases])


def capacity(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per member (P,): l2_norm, the Euclidean norm of all weights and biases; path_norm, the
    l2 path regulariser sqrt(sum over paths of prod w_e^2); spectral_product, the product of
    the weight matrices' largest singular values (biases left out). A member with a non-finite
    weight (it diverged) gets nan spectral_product: the SVD would raise, failing the whole pack."""
    with torch.no_grad():
        l2 = torch.sqrt(sum((w * w).flatten(1).sum(1) for w in weights) + sum((b * b).sum(1) for b in biases))
        finite = torch.stack([w.isfinite().flatten(1).all(1) for w in weights]).all(0)              # (P,)
        spectral = torch.stack([torch.linalg.matrix_norm(torch.where(finite[:, None, None], w, 0), ord=2)
                                for w in weights]).prod(0)
        spectral = torch.where(finite, spectral, torch.nan)
        return {"l2_norm": l2, "path_norm": squared_path_sums(weights, biases).sqrt(), "spectral_product": spectral}


def module_capacity(model: nn.Sequential) -> dict[str, float]:
    layers = linears(model)
    found = capacity([m.weight.detach()[None] for m in layers], [m.bias.detach()[None] for m in layers])
    return {k: float(v[0]) for k, v in found.items()}


class PathSGD(torch.optim.Optimizer):
    """w_e <- w_e - lr * (dL/dw_e) / kappa_e for an nn.Sequential of Linear and ReLU layers
    (Dropout allowed), kappa_e = d/d(w_e^2) of sum over paths of prod w^2, recomputed from the
    current weights at every step by one forward and backward pass of the squared-weight
    network on an all-ones input."""

    def __init__(self, model: nn.Sequential, lr: float):
        for m in model:
            if not isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)):
                raise TypeError(f"PathSGD takes Linear, ReLU and Dropout layers, not {type(m).__name__}")
        self.layers = linears(model)
        if any(m.bias is None for m in self.layers):
            raise TypeError("PathSGD expects Linear layers with biases")
        params = [p for m in self.layers for p in (m.weight, m.bias)]
        super().__init__(params, {"lr": lr})

    def kappa(self) -> list[torch.Tensor]:
        """kappa of every parameter, in the order weight, bias of each Linear layer."""
        squares = [p.detach().square().requires_grad_() for m in self.layers for p in (m.weight, m.bias)]
        total = path_sums([w[None] for w in squares[0::2]], [b[None] for b in squares[1::2]]).sum()
        return list(torch.autograd.grad(total, squares))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.enable_grad():
            kappas = self.kappa()
        for group in self.param_groups:
            for p, k in zip(group["params"], kappas):
                if p.grad is not None:
                    # kappa > 0 unless every path through the edge has a zero weight elsewhere.
                    p.addcdiv_(p.grad, k.clamp_min(torch.finfo(k.dtype).tiny), value=-group["lr"])
        return loss
