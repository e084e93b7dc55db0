"""The 12-bit task of Shwartz-Ziv & Tishby 2017 ("Opening the Black Box", arXiv 1703.00810).

Paper: the inputs are all 4096 patterns x in {0,1}^12; 12 points are spread uniformly on
the 2-sphere; the label follows p(y=1|x) = sigmoid(gamma (f(x) - theta)) for an O(3)-invariant
f, with theta set so the classes balance. The original generator is unpublished; its
output is `var_u.mat` (ravidziv/IDNNs: F 4096x12 uint8, y 1x4096 uint8, p(y=1) = 0.517).

This module rebuilds it:
- x: every pattern in counting order, row k = the binary digits of k, most significant
  bit first (bit 0 is the leftmost column). var_u.mat's F is in this same order (checked).
- points: the 12 vertices of a regular icosahedron (the 12-point optimum of Thomson's
  problem, hence "uniformly spread"), normalised.
- f(x) = k + |sum of the active points|, k the number of active points. Both terms are
  functions of the Gram matrix u_i . u_j of the active points (k = sum_i u_i.u_i,
  |s|^2 = sum_ij u_i.u_j), so f is O(3)-invariant. It grows with k and rewards active
  points that cluster on one side of the sphere, so the label is not a linear threshold of
  the bits (logistic regression gets 87.5% of the noiseless labels right).
- theta lies midway between two consecutive distinct values of f, never on one: the
  icosahedron's symmetry makes many patterns share a value, and a tie at theta would give
  them p = 1/2. Of those midpoints, theta is the one whose class split is nearest 1/2.

Why this f: var_u.mat's labels are constant on the patterns that share (k, number of
adjacent pairs, number of antipodal pairs) under an icosahedral adjacency read off the
file, so the original is such an invariant threshold too. With the vertex order below, the
noiseless labels of k + |s| (f > theta) equal var_u.mat's y at all 4096 inputs
(p(y=1) = 0.5171); tests/studies/information_bottleneck/test_data.py checks this.
GAMMA = 60 gives I(X;Y) = 0.992 bits (the study note: ~0.99).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookinside.errors import UserError

N_BITS = 12
N_PATTERNS = 2**N_BITS

GAMMA = 60.0
"""Sigmoid slope: the nearest values of f lie 0.069 from theta, so gamma = 60 leaves
p(y|x) in [0.015, 0.985] there (about 4 of 4096 labels flip) and I(X;Y) = 0.992 bits."""

_PHI = (1 + 5**0.5) / 2
# The 12 cyclic permutations of (0, +-1, +-phi), ordered so that bit i has the same
# neighbours as bit i of var_u.mat (any of the 120 icosahedral symmetries would do).
_VERTICES = [
    (0, 1, _PHI), (0, -1, _PHI), (1, -_PHI, 0), (_PHI, 0, 1),
    (-1, -_PHI, 0), (-1, _PHI, 0), (-_PHI, 0, -1), (0, 1, -_PHI),
    (_PHI, 0, -1), (0, -1, -_PHI), (1, _PHI, 0), (-_PHI, 0, 1),
]


class DatasetError(UserError, ValueError):
    """A dataset file that cannot be used; the message names the path and the problem."""


@dataclass(frozen=True)
class BitsDataset:
    x: np.ndarray
    """(4096, 12) uint8: every 12-bit pattern, counting order, most significant bit first."""
    y: np.ndarray
    """(4096,) int64 labels in {0, 1}."""
    source: str
    """"generated(seed=..)" or the path the labels were loaded from."""


def all_patterns() -> np.ndarray:
    """(4096, 12) uint8: row k holds the binary digits of k, most significant first."""
    k = np.arange(N_PATTERNS)
    shifts = np.arange(N_BITS - 1, -1, -1)
    return ((k[:, None] >> shifts) & 1).astype(np.uint8)  # (4096, 12)


def icosahedron_vertices() -> np.ndarray:
    """(12, 3) unit vectors: the vertices of a regular icosahedron, in var_u.mat's bit order."""
    v = np.array(_VERTICES, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def invariant_score(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """f(x) = k + |sum of the active points|, for x (n, 12) in {0,1} and points (12, 3)."""
    x = np.asarray(x, dtype=np.float64)
    resultant = x @ points  # (n, 3)
    return x.sum(axis=1) + np.linalg.norm(resultant, axis=1)


def balancing_threshold(scores: np.ndarray) -> float:
    """The midpoint between consecutive distinct scores that splits the classes nearest 1/2."""
    # Rounding merges values that differ only by float error within one symmetry orbit.
    levels = np.unique(np.round(scores, 9))
    midpoints = (levels[1:] + levels[:-1]) / 2
    above = (scores[None, :] > midpoints[:, None]).mean(axis=1)
    return float(midpoints[np.argmin(np.abs(above - 0.5))])


def label_probability(
    x: np.ndarray, points: np.ndarray | None = None, gamma: float = GAMMA
) -> np.ndarray:
    """p(y=1|x) = sigmoid(gamma (f(x) - theta)), theta balancing all 4096 patterns."""
    points = icosahedron_vertices() if points is None else points
    # theta depends on the whole input space, not on the rows asked about.
    theta = balancing_threshold(invariant_score(all_patterns(), points))
    z = gamma * (invariant_score(x, points) - theta)
    return 0.5 * (1 + np.tanh(z / 2))  # the sigmoid, without overflow in exp


def information_bits(p_y1: np.ndarray) -> float:
    """I(X;Y) in bits for uniform X over the rows and p(y=1|x) = p_y1."""

    def entropy(p):
        p = np.clip(p, 1e-300, 1.0)
        q = np.clip(1 - p, 1e-300, 1.0)
        return -(p * np.log2(p) + q * np.log2(q))

    p_y1 = np.asarray(p_y1, dtype=np.float64)
    return float(entropy(p_y1.mean()) - entropy(p_y1).mean())


def generate_bits_dataset(seed: int = 0) -> BitsDataset:
    """All 4096 patterns with labels drawn from p(y|x); the seed only changes y."""
    x = all_patterns()
    p = label_probability(x)
    y = (np.random.default_rng(seed).random(N_PATTERNS) < p).astype(np.int64)
    return BitsDataset(x=x, y=y, source=f"generated(seed={seed})")


def load_var_u(path: str | os.PathLike) -> BitsDataset:
    """Read an IDNNs-style .mat file (fields F: 4096x12, y: 1x4096, both 0/1).

    Rows are reordered into counting order if the file holds them in another order.
    Any problem raises DatasetError naming the path.
    """
    path = Path(path)

    def fail(problem: str) -> DatasetError:
        return DatasetError(f"{path}: {problem}")

    if not path.exists():
        raise fail("no such file")
    if not path.is_file():
        raise fail("not a file")
    import scipy.io  # here: only a user's var_u.mat needs it, and it costs workers 0.2 s

    try:
        contents = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for foreign or damaged files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise fail(f"not a readable MATLAB .mat file ({reason})") from None
    for field in ("F", "y"):
        if field not in contents:
            raise fail(f"no field {field!r} (need F: 4096x12 and y: 1x4096)")

    x, y = np.asarray(contents["F"]), np.asarray(contents["y"])
    if x.shape != (N_PATTERNS, N_BITS):
        raise fail(f"F has shape {x.shape}, expected ({N_PATTERNS}, {N_BITS})")
    if y.size != N_PATTERNS or sum(d > 1 for d in y.shape) > 1:
        raise fail(f"y has shape {y.shape}, expected (1, {N_PATTERNS})")
    y = y.reshape(-1)
    for name, a in (("F", x), ("y", y)):
        if a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
            raise fail(f"{name} holds values other than 0 and 1")

    x = x.astype(np.uint8)
    if len(np.unique(x, axis=0)) != N_PATTERNS:
        raise fail("F has duplicate rows (need all 4096 distinct patterns)")
    # Row index in counting order: read each row as a binary number, MSB first.
    order = np.argsort(x.astype(np.int64) @ (1 << np.arange(N_BITS - 1, -1, -1)))
    return BitsDataset(x=x[order], y=y[order].astype(np.int64), source=str(path))


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random train/test split of range(n): sorted index arrays, train size
    round(train_fraction * n) kept within [1, n - 1]. The paper sweeps 5%..85%;
    IDNNs instead took the first rows in counting order, a quirk not reproduced here."""
    if n < 2:
        raise ValueError(f"split_indices needs n >= 2, got {n}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    n_train = min(max(round(train_fraction * n), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])
