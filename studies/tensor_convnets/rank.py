"""Separation ranks of a network's grid tensor (Cohen & Shashua, ICLR 2017; survey arXiv 1705.02302).

With one-hot representations of binary pixels (M = 2 templates, every pixel a patch), a ConvAC's
score for class y on the 2^N binary images of N = side*side pixels is its coefficient tensor
A^y (N axes of size 2, axis k = pixel k in row-major order). The separation rank of the score
under a partition (I, J) of the pixels equals the rank of A^y matricised with rows indexed by the
bits of I and columns by those of J, which is computed here from the network's outputs on all
2^N images (exact scores in float64, `models.linear_space_output`), by SVD. N <= 16 (side 4).

Theory to expect (square pooling, r channels): the left/right and top/bottom partitions cut the
tree at its top, so their rank is at most r; interleaved partitions split every 2x2 window and can
reach far more. Shallow ConvACs (CP with Z terms) have rank at most Z under every partition.
In the deep nets, weight sharing (the 1x1 conv is the same at every position) and the commutative
product pooling make the tensor symmetric within windows, which lowers the reachable ranks below
min(2^|I|, 2^|J|) (81 under odd/even at N = 16, not 256). The shallow net has a factor per position
(models.ShallowConvAC), so its rank is exactly Z up to the largest possible.
"""

from __future__ import annotations

import numpy as np
import torch

from lookinside.studies.tensor_convnets.models import input_permutation, levels, linear_space_output

MAX_PIXELS = 16
CHUNK = 8192


def all_binary_inputs(side: int) -> torch.Tensor:
    """(2^N, side, side) float32: every binary image of N = side*side pixels, image i's pixel k
    (row-major) being bit N-1-k of i (the first pixel is the most significant bit), so that a vector
    over the images reshaped to (2,) * N has axis k for pixel k."""
    n = side * side
    if n > MAX_PIXELS:
        raise ValueError(f"{side}x{side} has {n} pixels: 2^{n} images is too many (at most {MAX_PIXELS} pixels)")
    bits = (torch.arange(2 ** n)[:, None] >> torch.arange(n - 1, -1, -1)) & 1
    return bits.float().view(-1, side, side)


def grid_tensor(model: torch.nn.Module, side: int, cls: int = 0) -> np.ndarray:
    """(2^N,) float64: the model's linear-space score for class `cls` on every binary image (order of
    `all_binary_inputs`); for a ConvAC with one-hot M = 2 this is its coefficient tensor, flattened.
    A ReLU net's logits in float64 (not a coefficient tensor, but a function of N binary pixels too)."""
    x = all_binary_inputs(side)
    return torch.cat([linear_space_output(model, chunk)[:, cls] for chunk in x.split(CHUNK)]).numpy()


def matricise(tensor: np.ndarray, side: int, partition: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The grid tensor as a (2^|I|, 2^|J|) matrix: rows indexed by the bits of I, columns by those of J
    (each in the order listed, first most significant)."""
    i, j = (np.asarray(p, dtype=int) for p in partition)
    n = side * side
    if sorted([*i, *j]) != list(range(n)):
        raise ValueError(f"a partition must split 0..{n - 1} into two disjoint sets, got {len(i)} + {len(j)} positions")
    return tensor.reshape((2,) * n).transpose([*i, *j]).reshape(2 ** len(i), 2 ** len(j))


def numerical_rank(matrix: np.ndarray, tol: float = 1e-6) -> int:
    """Singular values above tol x the largest, after scaling the matrix to largest magnitude 1 (0 for zero)."""
    scale = np.abs(matrix).max()
    if scale == 0:
        return 0
    s = np.linalg.svd(matrix / scale, compute_uv=False)
    return int((s > tol * s[0]).sum())


def separation_rank(model: torch.nn.Module, side: int, partition: tuple[np.ndarray, np.ndarray],
                    tol: float = 1e-6, cls: int = 0) -> tuple[int, int]:
    """(rank, max_rank): the numerical rank of the grid tensor of class `cls` matricised under
    `partition` = (I, J), and min(2^|I|, 2^|J|).

    Tolerance: singular values above tol x the largest count, the matrix scaled to largest magnitude 1.
    In float64 the scores carry relative errors near 1e-15 and the SVD about 1e-16 x the largest
    singular value; the noise measured at side 4 (singular values beyond a known exact rank) is at
    most 4e-15 of the largest, so tol = 1e-6 sits nine decades above it and never counts noise. But
    positive weights exp(theta), theta in [-1, 1], make the genuine singular values of a random ConvAC
    fall geometrically (a window's functions are nearly alike, and the windows multiply), down to 1e-14
    of the largest: tol = 1e-6 then counts a numerical rank well below the exact one (deep r = 4,
    odd/even: 15-76 of an exact 81; a shallow Z = 128 net counts 116 of 128), a lower bound. tol = 1e-12,
    the study's default (TCConfig.tolerance), comes closer (66-81 and 128 there); the exact rank needs
    tolerances at the noise itself."""
    return separation_ranks(model, side, {"": partition}, tol, cls)[""]


def separation_ranks(model: torch.nn.Module, side: int, partitions: dict[str, tuple[np.ndarray, np.ndarray]],
                     tol: float = 1e-6, cls: int = 0) -> dict[str, tuple[int, int]]:
    """`separation_rank` under each named partition, from one grid tensor (2^N forward evaluations once)."""
    tensor = grid_tensor(model, side, cls)
    found = {}
    for name, partition in partitions.items():
        matrix = matricise(tensor, side, partition)
        found[name] = numerical_rank(matrix, tol), min(matrix.shape)
    return found


def partitions(side: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Balanced partitions (I, J) of the side*side pixel positions (row-major indices k = row*side + col),
    each as two sorted int arrays:

    left_right: I = columns 0..side/2-1, J = the rest (a coarse partition, cut at the top of the tree).
    top_bottom: I = rows 0..side/2-1, J = the rest (coarse).
    odd_even: I = even columns 0, 2, ..., J = odd columns: the interleaved partition. Our reading of
        the papers' (I^odd, J^even), with patches indexed window by window so that pooling windows are
        contiguous: within every 2x2 window read row by row, the first and third patches (left column)
        against the second and fourth (right column), i.e. even against odd image columns. Any split
        of every 2x2 window into two and two (a checkerboard too) has the same rank bounds.
    random: a uniformly random balanced split, drawn with numpy's default_rng(seed)."""
    levels(side)
    if side < 2:
        raise ValueError(f"side must be at least 2 to split the pixels, got {side}")
    n, half = side * side, side // 2
    rows, cols = np.divmod(np.arange(n), side)
    order = np.random.default_rng(seed).permutation(n)

    def split(mask):
        return np.flatnonzero(mask), np.flatnonzero(~mask)
    random = np.zeros(n, dtype=bool)
    random[order[: n // 2]] = True
    return {"left_right": split(cols < half), "top_bottom": split(rows < half), "odd_even": split(cols % 2 == 0),
            "random": split(random)}


def mirror_partition(partition: tuple[np.ndarray, np.ndarray], side: int,
                     depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The partition's image under mirror pooling: a mirror-pooling net computes a square-pooling net of the
    same parameters on its input permuted by perm = models.input_permutation(side, "mirror", depth), so its
    rank under (perm[I], perm[J]) equals the square net's under (I, J). depth None: log2(side) levels,
    right for every depth of net (the permutations of deeper levels move whole blocks that a global
    pooling merges anyway)."""
    perm = input_permutation(side, "mirror", levels(side) if depth is None else depth).numpy()
    return tuple(np.sort(perm[np.asarray(p, dtype=int)]) for p in partition)
