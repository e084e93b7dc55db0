"""Piecewise-linear curves (paper sec. 4, Fig. 6): recovering the kinks p from the curve f = W p.

W_ij = [i - j + 1]_+ (f is p summed twice), so p = W^-1 f is f convolved with [1, -2, 1]. p has
an initial slope at position 0 and `kinks` slope changes at distinct positions drawn uniformly,
every slope U[-1, 1] (the paper's distribution; the code draws kinks in [3, 96] with 4 fixed
slope patterns). Four formulations of f -> p, each trained by Adam on the mean squared error:
  fully_connected  p^ = U f, U (n, n) from zero
  convolution      p^_i = w . (f_{i-2}, f_{i-1}, f_i), 3 taps from zero (p is exactly w = (1, -2, 1))
  whitened         the same, each 3-window multiplied by C^-1/2, C its second moment
  autoencoder      f -> 500 -> 100 -> 6 -> 100 -> 100 -> f, ReLU (its target is f itself)
The condition number of each linear formulation is that of its loss's Hessian, the second
moment of its inputs (E f f^T, or of the 3-windows, or of the whitened 3-windows), measured on
`condition_samples` fresh curves at each n of `condition_ns`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CURVE_SEED = 12345   # the curve drawn in the `curves` table, the same for every trial


def draw_kinks(count: int, n: int, kinks: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n) kink vectors: slope changes of curves whose every slope is U[-1, 1]."""
    slopes = rng.uniform(-1, 1, (count, kinks + 1))
    where = np.argsort(rng.random((count, n - 1)), axis=1)[:, :kinks] + 1        # distinct kink positions
    p = np.zeros((count, n))
    p[:, 0] = slopes[:, 0]
    np.put_along_axis(p, where, np.diff(slopes, axis=1), axis=1)
    return p


def curve_matrix(n: int) -> np.ndarray:
    i, j = np.indices((n, n))
    return np.maximum(i - j + 1, 0).astype(float)                                 # f = W p


def windows(f: torch.Tensor) -> torch.Tensor:                                      # (B, n) -> (B, n, 3)
    """(f_{i-2}, f_{i-1}, f_i) at each i, with f_{-1} = f_{-2} = 0: p_i = f_i - 2 f_{i-1} + f_{i-2}."""
    padded = nn.functional.pad(f, (2, 0))
    return torch.stack([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], -1)


def inverse_sqrt(c: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(c)
    return vectors @ np.diag(values ** -0.5) @ vectors.T


def second_moment(x: np.ndarray) -> np.ndarray:                                    # (m, k) -> (k, k)
    return x.T @ x / len(x)


def condition_number(method: str, n: int, kinks: int, samples: int, rng: np.random.Generator) -> float:
    f = draw_kinks(samples, n, kinks, rng) @ curve_matrix(n).T                      # (S, n)
    if method == "fully_connected":
        moment = second_moment(f)
    else:
        w = windows(torch.as_tensor(f)).reshape(-1, 3).numpy()                       # (S n, 3)
        moment = second_moment(w)
        if method == "whitened":   # C from other curves: the whitening is estimated, as in training
            other = draw_kinks(samples, n, kinks, rng) @ curve_matrix(n).T
            root = inverse_sqrt(second_moment(windows(torch.as_tensor(other)).reshape(-1, 3).numpy()))
            moment = root @ moment @ root
    values = np.linalg.eigvalsh(moment)
    return float(values[-1] / values[0])


class Windowed(nn.Module):
    """3-tap convolution as a linear map of each (optionally whitened) 3-window."""

    def __init__(self, whiten: np.ndarray):
        super().__init__()
        self.register_buffer("whiten", torch.as_tensor(whiten, dtype=torch.float32))
        self.taps = nn.Linear(3, 1, bias=False)
        nn.init.zeros_(self.taps.weight)

    def forward(self, f):                                                            # (B, n) -> (B, n)
        return self.taps(windows(f) @ self.whiten)[..., 0]


def make_model(method: str, n: int, kinks: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if method == "fully_connected":
        model = nn.Linear(n, n, bias=False)
        nn.init.zeros_(model.weight)
        return model
    if method == "autoencoder":
        sizes = [n, 500, 100, 6, 100, 100, n]
        layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        return nn.Sequential(*layers[:-1])
    whiten = np.eye(3)
    if method == "whitened":
        f = draw_kinks(20_000, n, kinks, np.random.default_rng(seed + 1)) @ curve_matrix(n).T
        whiten = inverse_sqrt(second_moment(windows(torch.as_tensor(f)).reshape(-1, 3).numpy()))
    return Windowed(whiten)


def train(configs, session) -> None:
    for member, c in enumerate(configs):
        if not session.failed(member):
            _train_one(c, member, session)


def _train_one(c, member: int, session) -> None:
    rng = np.random.default_rng(c.seed)
    if c.method != "autoencoder":
        numbers = [condition_number(c.method, n, c.kinks, c.condition_samples, rng) for n in c.condition_ns]
        session.add_rows("condition_numbers", member, {"n": list(c.condition_ns), "condition_number": numbers})
    W = torch.as_tensor(curve_matrix(c.curve_length), dtype=torch.float32)
    model = make_model(c.method, c.curve_length, c.kinks, c.seed)
    opt = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
    target_is_curve = c.method == "autoencoder"
    p_test = torch.as_tensor(draw_kinks(c.eval_size, c.curve_length, c.kinks, rng), dtype=torch.float32)
    f_test = p_test @ W.T
    n = c.curve_length
    shown = torch.as_tensor(draw_kinks(1, n, c.kinks, np.random.default_rng(CURVE_SEED)), dtype=torch.float32)
    for it in range(c.iterations + 1):
        if it % c.eval_every == 0 or it == c.iterations:
            with torch.no_grad():
                loss = ((model(f_test) - (f_test if target_is_curve else p_test)) ** 2).mean()
                f_shown = shown @ W.T
                target = f_shown if target_is_curve else shown
                session.add_rows("metrics", member, {"iteration": [it], "split": ["test"], "loss": [float(loss)],
                                                     "accuracy": [float("nan")]})
                session.add_rows("curves", member, {"iteration": [it] * n, "position": np.arange(n, dtype=float),
                                                    "target": target[0].double().numpy(),
                                                    "prediction": model(f_shown)[0].double().numpy()})
            if not torch.isfinite(loss):
                session.fail(member, f"non-finite test loss at iteration {it}")
                return
        if it == c.iterations:
            break
        p = torch.as_tensor(draw_kinks(c.batch_size, c.curve_length, c.kinks, rng), dtype=torch.float32)
        f = p @ W.T
        opt.zero_grad()
        ((model(f) - (f if target_is_curve else p)) ** 2).mean().backward()
        opt.step()
