"""Flat activations (paper sec. 5, Fig. 7): learning y = u(v*.x + b*) where u is a staircase.

x ~ N(0, I_d) / 100, v* ~ N(0, I_d), b* ~ N(0, 1) (the code's scales: `randn(N) / N` with N = 100,
factor_W = 1; the divisor stays 100 at other d); v*.x then has std |v*| / 100, about 0.1 at d = 100.
u rounds down to the nearest of `levels` values b* + z_i (below the lowest it is the lowest, as the
paper's u(r) = z_0 + ...). `levels` counts u's values, the multiclass net's outputs (paper 55, code
52); the paper's formula, with z_0 < ... < z_55, would have one value more. The z_i are the `levels`
values nearest 0 (negative first on ties) of the code's fine steps FINE and the multiples of 5: levels
= 52 gives the code's set exactly (code step_learn.py: multiples of 5 in [-100, 95] and FINE), the
paper's 55 adds 100, -105 and 105. The paper gives only the count (55), not the positions. As in
the code, only the few steps within +-0.3 of b* are ever crossed by the data; the wide flat steps
around them are what the sigmoid method can start in (the paper's "sensitivity to the bias").

Methods (`method`), squared loss unless said otherwise, Adam with the code's betas (0.9, 0.99) and eps
1e-5, the code's initialisation (truncated normal weights, std 1/sqrt(fan-in), zero biases):
- sigmoid: u~(w.x + b), u~(r) = z_0 + sum_i (z_i - z_{i-1}) sigmoid(c_i (r - z_i)) (paper 5.2). The
  paper leaves c a constant; the code scales it per step, c_i = 50 / (z_i - z_{i-1}) (5 L / dz with
  L = 10), followed here since one c cannot suit steps of height 5 and 0.025 at once. Centres at z_i
  (paper; the code shifts them down by (z_i - z_{i-1}) / 20).
- end_to_end: ReLU MLP, 3 hidden layers of `hidden` units, one output (paper 5.3).
- multiclass: ReLU MLP, 2 hidden layers, `levels` logits, cross-entropy on the level index; the
  prediction is the level of the argmax (paper 5.4).
- forward_only: p = w.x + b, output u(p), trained through p + (u(p) - p).detach(): the gradient
  treats u as the identity, the GLMtron / Isotron update (paper 5.5).
Measured on a fixed test set per member: the mean squared error of the prediction ("loss") and the
fraction of examples whose prediction, rounded to the nearest level, is the true level ("accuracy").
"""

from __future__ import annotations

import torch
from torch import nn

from lookinside.studies.gradient_failures.config import ADAM
from lookinside.torchpack import PackedModel, PackedOptimizer, restore, training_state

FINE = (-5, -4, -3, -2, -1, -0.2, 0, 0.1, 0.15, 0.175, 1, 2, 3, 4, 5)   # code: steps near b*
SCALE = 100.0                                      # code: x = randn(N) / N, N = 100 (here fixed, whatever d)
SHARPNESS = 50.0                                   # code: sigmoid(5 (r - centre) / (dz / L)), L = 10
CURVE_POINTS = 200


def staircase(levels: int) -> torch.Tensor:
    """The (levels,) values of u less b*, increasing."""
    candidates = set(FINE) | {5 * k for k in range(-levels - 1, levels + 2)}
    return torch.tensor(sorted(sorted(candidates, key=lambda z: (abs(z), z))[:levels]), dtype=torch.float32)


def level_index(r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:   # (P, N), (P, L) -> (P, N) of u(r)
    return (torch.searchsorted(z, r.contiguous(), right=True) - 1).clamp(min=0)


def smooth_u(r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:      # (P, N), (P, L) -> (P, N)
    dz = z[:, 1:] - z[:, :-1]                                                       # (P, L - 1)
    s = torch.sigmoid(SHARPNESS / dz[:, None] * (r[..., None] - z[:, None, 1:]))   # (P, N, L - 1)
    return z[:, :1] + (s * dz[:, None]).sum(-1)


def make_network(c, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    widths = {"end_to_end": [c.d, c.hidden, c.hidden, c.hidden, 1],
              "multiclass": [c.d, c.hidden, c.hidden, c.levels]}.get(c.method, [c.d, 1])
    layers = []
    for n_in, n_out in zip(widths, widths[1:]):
        layer = nn.Linear(n_in, n_out)
        std = n_in ** -0.5
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(layer.bias)
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def predict(method: str, model: PackedModel, x: torch.Tensor, z: torch.Tensor):
    """(P, N) predictions for per-member inputs (P, N, d), and the (P, N, L) logits for multiclass."""
    out = model(x, shared=False)
    if method == "multiclass":
        return z.gather(1, out.argmax(-1)), out
    p = out[..., 0]
    if method == "sigmoid":
        return smooth_u(p, z), None
    if method == "forward_only":
        return p + (z.gather(1, level_index(p, z)) - p).detach(), None
    return p, None


def losses(method: str, pred, logits, target: torch.Tensor, y: torch.Tensor) -> torch.Tensor:   # -> (P,)
    if method == "multiclass":
        return nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)
    return ((pred - y) ** 2).mean(1)


def draw(n: int, d: int, gens) -> torch.Tensor:
    return torch.stack([torch.randn(n, d, generator=g) / SCALE for g in gens])     # (P, n, d)


def train(configs, session) -> None:
    c0, method = configs[0], configs[0].method
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    v = torch.stack([torch.randn(c0.d, generator=g) for g in gens])               # (P, d)
    b = torch.stack([torch.randn(1, generator=g) for g in gens])                  # (P, 1)
    z = b + staircase(c0.levels)                                                  # (P, L)

    def hidden(x):                       # (P, n, d) -> (P, n) v*.x + b*, row by row whatever P
        return (x * v[:, None]).sum(-1) + b

    x_test = draw(c0.eval_size, c0.d, gens)
    r_test = hidden(x_test)
    index_test = level_index(r_test, z)
    y_test = z.gather(1, index_test)
    model = PackedModel([make_network(c0, c.seed) for c in configs])
    opt = PackedOptimizer(model, torch.optim.Adam, [c.learning_rate for c in configs], **ADAM)
    start = restore(session.state, model, opt, gens)
    for it in range(start, c0.iterations + 1):
        if it % c0.eval_every == 0 or it == c0.iterations:
            with torch.no_grad():
                pred, _ = predict(method, model, x_test, z)
            loss = ((pred - y_test) ** 2).mean(1).double()
            nearest = (pred[..., None] - z[:, None]).abs().argmin(-1)
            acc = (nearest == index_test).double().mean(1)
            session.add_pack_rows("metrics", {"iteration": [it], "split": ["test"]},
                                  {"loss": loss.numpy()[:, None], "accuracy": acc.numpy()[:, None]})
            session.report(iteration=it, progress=it / max(c0.iterations, 1), test_error=float(loss.mean()))
        if it == c0.iterations:
            break
        x = draw(c0.batch_size, c0.d, gens)
        index = level_index(hidden(x), z)
        opt.zero_grad()
        losses(method, *predict(method, model, x, z), index, z.gather(1, index)).sum().backward()
        opt.step()

        session.checkpoint(lambda it=it: training_state(model, opt, gens, it + 1))
    # The learned function along v*: the first test example x0 moved by (t - r0) v* / |v*|^2, where
    # r0 = v*.x0 + b*, has v*.x + b* = t, and keeps x0's typical part orthogonal to v* (a multiple of
    # v* alone would be an atypically short input for the MLPs).
    low, high = r_test.min(1).values, r_test.max(1).values                       # (P,)
    t = low[:, None] + (high - low)[:, None] * torch.linspace(0, 1, CURVE_POINTS)  # (P, T)
    shift = (t - r_test[:, :1]) / (v ** 2).sum(1, keepdim=True)                  # (P, T)
    x_line = x_test[:, :1] + shift[..., None] * v[:, None]                        # (P, T, d)
    with torch.no_grad():
        pred, _ = predict(method, model, x_line, z)
    target = z.gather(1, level_index(t, z))
    for p in range(len(configs)):
        session.add_rows("curves", p, {"iteration": [c0.iterations] * CURVE_POINTS, "position": t[p].double().numpy(),
                                       "target": target[p].double().numpy(), "prediction": pred[p].double().numpy()})
