"""Mutual-information estimators for the information plane, in bits.

Two families, both vectorised over any leading batch dims of a (..., N, d)
activation tensor (members x logged epochs of a packed training run), on CPU or CUDA:

- binning (Shwartz-Ziv & Tishby 2017, ravidziv/IDNNs; Saxe et al. 2018 for ReLU
  ranges): each unit's value goes to an equal-width bin, a layer's row of bins is
  one symbol, and I(X;T), I(T;Y) are plug-in entropies of those symbols;
- KDE bounds (Kolchinsky & Tracey 2017, as used by Saxe et al. 2018, artemyk/ibsgd):
  pairwise-distance upper and lower bounds on the entropy of T plus Gaussian noise.

`binned_information_reference` (np.unique over rows) and `kde_information_reference`
(ibsgd's kde.py in numpy) are the plain versions, one layer at one epoch, that the tests
and benchmarks/mutual_information.py check against.
"""

import contextlib
import math

import numpy as np
import torch
from torch import Tensor

_LN2 = math.log(2.0)
_KDE_KEYS = ("upper_i_xt", "upper_i_ty", "lower_i_xt", "lower_i_ty")

# Seed of the random multipliers that hash wide rows of bins; fixed so that results
# are reproducible run to run and machine to machine.
_HASH_SEED = 0x1B5EED


def entropy_bits(counts: Tensor) -> Tensor:
    """Plug-in (maximum-likelihood) entropy in bits of the histograms along the last dim.

    Empty cells count as 0 log 0 = 0; a histogram of all zeros has entropy 0.
    """
    counts = torch.as_tensor(counts).to(torch.float64)
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp(min=1.0)
    plogp = torch.where(p > 0, p * torch.log2(p.clamp(min=1e-300)), torch.zeros_like(p))
    return -plogp.sum(-1)


def _bin_scale(lo, hi, n_bins: int, device) -> tuple[Tensor, Tensor]:
    """float64 (lo, n_bins / (hi - lo)) on the device, for bins (x - lo) * scale.

    One float64 recipe with a true division on the device keeps bins bit-identical
    to the numpy reference on CPU and CUDA (CUDA turns a division by a host scalar
    into a multiplication by its reciprocal, which can move a value across an edge).
    """
    lo = torch.as_tensor(lo, dtype=torch.float64, device=device)
    hi = torch.as_tensor(hi, dtype=torch.float64, device=device)
    width = hi - lo
    ok = width > 0
    scale = torch.full_like(width, float(n_bins)) / torch.where(ok, width, torch.ones_like(width))
    # A constant layer has hi == lo: scale 0 puts every value in bin 0.
    return lo, torch.where(ok, scale, torch.zeros_like(scale))


def _bin_positions(acts: Tensor, lo, hi, n_bins: int, out: Tensor | None = None) -> Tensor:
    """float64 bin index of every activation (whole numbers), into out if given."""
    lo, scale = _bin_scale(lo, hi, n_bins, acts.device)
    out = acts.to(torch.float64, copy=True) if out is None else out.copy_(acts)
    return out.sub_(lo).mul_(scale).floor_().clamp_(0, n_bins - 1)  # (..., N, d)


def bin_indices(acts: Tensor, lo: Tensor | float, hi: Tensor | float, n_bins: int) -> Tensor:
    """Equal-width bin of every activation: floor((x - lo) / (hi - lo) * n_bins), clipped.

    acts: (..., N, d) float; lo, hi: floats or tensors broadcastable to acts (e.g.
    (..., 1, 1) for one range per layer and epoch, Saxe et al.'s min/max over a run).
    Returns int64 (..., N, d) in [0, n_bins - 1].

    Values below lo go to bin 0 and values at or above hi to the top bin, as IDNNs'
    np.digitize does with edges linspace(-1, 1, n). With IDNNs' fixed range that
    clips ReLU activations above 1 into one bin (IDNNs issue #12); pass the layer's
    observed range for unbounded activations. hi <= lo (a constant layer) puts
    everything in bin 0. acts must be finite.
    """
    return _bin_positions(acts, lo, hi, n_bins).to(torch.int64)


def _row_weights(n_bins: int, d: int, label_bits: int, device) -> tuple[Tensor, bool]:
    """int64 (d,) weights w such that sum_k bin_k * w_k identifies a row of d bins.

    The lowest label_bits bits of every key are left free for the label. Returns
    (w, exact): mixed radix (w_k = n_bins**k * 2**label_bits, exact) while the keys
    fit in 62 bits; otherwise random odd 64-bit multipliers with wrap-around
    arithmetic, a hash, whose low label_bits bits the caller clears. Two distinct rows
    then collide only if sum_k (b_k - b'_k) w_k mod 2**64 lies within 2**label_bits
    of 0, which for random odd w_k has probability at most
    2**-(62 - label_bits - log2(n_bins)); over the ~8.4e6 row pairs of N = 4096
    inputs with two classes, below 1e-10 for IDNNs' 30 bins and 4e-9 for 1024 bins.
    """
    if n_bins ** d <= 2 ** (62 - label_bits):
        weights = [n_bins ** k << label_bits for k in range(d)]
        return torch.tensor(weights, dtype=torch.int64, device=device), True
    gen = torch.Generator().manual_seed(_HASH_SEED + d)
    w = torch.randint(-(2 ** 63), 2 ** 63 - 1, (d,), dtype=torch.int64, generator=gen)
    return (w | 1).to(device), False


def _numpy_path(device: torch.device) -> bool:
    """Whether sorting and run counting go through numpy (CPU tensors), rather than torch
    (CUDA); the tests force the torch path on the CPU to check that both agree."""
    return device.type == "cpu"


def _sort_rows_(keys: Tensor) -> None:
    """Sort each row of an int64 (b, N) tensor in place."""
    if _numpy_path(keys.device):
        # numpy's sort is SIMD-vectorised (x86-simd-sort, highway), ~8x faster on int64
        # than torch.sort on CPU, which also builds indices that are not needed here.
        keys.numpy().sort(axis=-1)
    else:
        keys.copy_(torch.sort(keys, dim=-1).values)


def _sum_clogc(new_run: Tensor, clogc: Tensor, run: Tensor, counts: Tensor, terms: Tensor) -> Tensor:
    """Sum over runs of c log2 c, c a run's length; new_run (b, N - 1) bool -> (b,).

    new_run[:, k] marks that element k + 1 starts a run. A cumulative sum numbers the
    runs of each slice 0..N-1 and one scatter-add counts them, with no Python loop.
    run (column 0 zero), counts (b, N) int64 and terms (b, N) float64 are work buffers.
    """
    torch.cumsum(new_run, dim=-1, out=run[:, 1:])  # (b, N) run number of each element
    ones = torch.ones((), dtype=torch.int64, device=run.device).expand_as(run)
    counts.zero_().scatter_add_(1, run, ones)  # (b, N) run lengths, zero padded
    return torch.take(clogc, counts, out=terms).sum(-1)


def _sum_clogc_numpy(keys: np.ndarray, starts: np.ndarray, clogc: np.ndarray) -> np.ndarray:
    """`_sum_clogc` on the CPU for sorted int64 keys (b, N) -> (b,): the run starts are
    listed (flatnonzero) and their lengths summed per row (reduceat), three passes over
    b * N values (two over bools) and the rest over the runs alone, where the torch
    version (kept for CUDA) makes six over b * N; 1.7x faster on the binned workload.

    starts (b, N) bool is a work buffer whose column 0 is True (each row starts a run)."""
    np.not_equal(keys[:, 1:], keys[:, :-1], out=starts[:, 1:])
    first = np.flatnonzero(starts)                                 # every run's first element
    lengths = np.diff(first, append=keys.size)
    per_row = np.count_nonzero(starts, axis=1)
    offsets = np.zeros(len(per_row), dtype=np.intp)
    np.cumsum(per_row[:-1], out=offsets[1:])                         # each row's first run
    return np.add.reduceat(clogc[lengths], offsets)


@contextlib.contextmanager
def _one_cpu_thread(device):
    """Run torch's CPU ops single-threaded inside the block (no-op off the CPU)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _per_slice(bound, batch: list[int], device) -> Tensor:
    """A bin bound broadcastable to (..., N, d) as float64 (B, 1 or N, 1 or d)."""
    bound = torch.as_tensor(bound, dtype=torch.float64, device=device)
    bound = bound.reshape((1,) * (len(batch) + 2 - bound.dim()) + tuple(bound.shape))
    return bound.expand(*batch, *bound.shape[-2:]).reshape(-1, *bound.shape[-2:])


def binned_information(
    acts: Tensor,
    labels: Tensor,
    n_bins: int,
    lo: Tensor | float,
    hi: Tensor | float,
    max_chunk_elements: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Binned I(X;T) and I(T;Y) in bits for every slice of acts (Shwartz-Ziv & Tishby; IDNNs).

    acts: (..., N, d), the layer's activations on all N inputs for every member and
    logged epoch; labels: (N,) int64 classes 0..C-1; lo, hi: bin range as in
    `bin_indices`. Returns (i_xt, i_ty), each float64 (...).

    I(X;T) = H(T): the N inputs are distinct and the net is deterministic, so
    H(T|X) = 0. (IDNNs computed H(T|X) with a slow loop anyway; it is always 0.)
    I(T;Y) = H(T) + H(Y) - H(T,Y), equal to IDNNs' H(T) - sum_y p(y) H(T|Y=y).

    Each row of bins becomes one int64 key whose low bits hold the label (see
    `_row_weights`); sorting each slice's keys makes equal rows contiguous runs and,
    within them, equal labels sub-runs; entropies follow from the run lengths. Work
    and memory are O(batch * N * d), taken in chunks of about max_chunk_elements
    activations (default 2**19 on CPU, sized for the caches, and 2**24 elsewhere).
    """
    # Every op here is small: on CPU, intra-op threads add a barrier per op and little
    # else, and a barrier waits out a whole time slice whenever another process holds
    # a core (6 layers x 40 epochs on 2 shared cores: 14 ms on one thread, 0.05 to 2 s
    # on two).
    with _one_cpu_thread(acts.device):
        return _binned_information(acts, labels, n_bins, lo, hi, max_chunk_elements)


class _Workspace:
    """Flat work buffers kept between calls and viewed at each call's shapes.

    The estimators run once per layer and logged epoch on buffers of a few MB; fresh ones
    are page-faulted in again whenever malloc hands them back to the OS, which (in VMs
    especially) costs more than the arithmetic. A buffer grows to the largest request
    and stays; one per process (trials are single-threaded)."""

    def __init__(self):
        self._pools: dict = {}

    def get(self, name: str, shape: tuple[int, ...], dtype, device) -> Tensor:
        numel = math.prod(shape)
        key = (name, dtype, torch.device(device))
        pool = self._pools.get(key)
        if pool is None or pool.numel() < numel:
            pool = self._pools[key] = torch.empty(numel, dtype=dtype, device=device)
        return pool[:numel].view(shape)


_WORKSPACE = _Workspace()


def _binned_information(acts, labels, n_bins, lo, hi, max_chunk_elements):
    """`binned_information` on the caller's threads."""
    *batch, N, d = acts.shape
    device = acts.device
    labels = labels.to(device=device, dtype=torch.int64)
    if max_chunk_elements is None:
        max_chunk_elements = 2 ** 19 if device.type == "cpu" else 2 ** 24
    flat = acts.reshape(-1, N, d)  # (B, N, d)
    B = flat.shape[0]
    lo_b = _per_slice(lo, batch, device)  # (B, 1 or N, 1 or d)
    hi_b = _per_slice(hi, batch, device)  # (B, 1 or N, 1 or d)
    # Feature-major activations (a (B, d, N) buffer seen as (B, N, d), as the packed
    # model gives them) are binned in that layout: every pass then runs over contiguous
    # memory, where a strided copy into (B, N, d) would cost several passes.
    feature_major = d > 1 and flat.transpose(1, 2).is_contiguous()
    if feature_major:
        flat, lo_b, hi_b = flat.transpose(1, 2), lo_b.transpose(1, 2), hi_b.transpose(1, 2)  # (B, d, N)

    label_bits = max(1, int(labels.max().item()).bit_length())
    weights, exact = _row_weights(n_bins, d, label_bits, device)  # (d,)
    # Keys below 2**53 are exact in float64: a matmul then forms them in one pass.
    in_float = exact and n_bins ** d << label_bits <= 2 ** 53
    clogc = torch.arange(N + 1, device=device, dtype=torch.float64)
    clogc = clogc * torch.log2(clogc.clamp(min=1.0))  # (N + 1,) c log2 c, 0 at c = 0

    chunk = min(B, max(1, max_chunk_elements // max(1, N * d)))
    ws = _WORKSPACE
    f64, i64 = dict(dtype=torch.float64, device=device), dict(dtype=torch.int64, device=device)
    positions = ws.get("positions", (chunk, *flat.shape[1:]), **f64)  # (chunk, N, d) or (chunk, d, N)
    bins = None if in_float else ws.get("bins", positions.shape, **i64)
    # Keys that fit in 31 bits are sorted and compared as int32: numpy's SIMD sort does
    # twice as many per instruction (1.9x on 4096 keys), and the scans read half the bytes.
    narrow = in_float and n_bins ** d << label_bits < 2 ** 31
    k_type = dict(dtype=torch.int32 if narrow else torch.int64, device=device)
    keys, high = ws.get("keys", (chunk, N), **k_type), ws.get("high", (chunk, N), **k_type)
    key_labels = labels.to(k_type["dtype"])
    terms = ws.get("terms", (chunk, N), **f64)
    on_cpu = _numpy_path(device)
    if on_cpu:
        starts_np = ws.get("starts", (chunk, N), dtype=torch.bool, device=device).numpy()
        starts_np[:, 0] = True
        clogc_np = clogc.numpy()
    else:
        run, counts = ws.get("run", (chunk, N), **i64), ws.get("counts", (chunk, N), **i64)
        run[:, 0] = 0
        new_run = ws.get("new_run", (chunk, N - 1), dtype=torch.bool, device=device)
    h_t = torch.empty(B, **f64)
    h_ty = torch.empty(B, **f64)
    for b0 in range(0, B, chunk):
        b1 = min(B, b0 + chunk)
        n = b1 - b0
        pos = _bin_positions(flat[b0:b1], lo_b[b0:b1], hi_b[b0:b1], n_bins, out=positions[:n])
        key = keys[:n]  # (n, N); pos is (n, N, d) or (n, d, N)
        if in_float and feature_major:
            torch.bmm(weights.to(torch.float64).expand(n, 1, d), pos, out=terms[:n].unsqueeze(1))
            key.copy_(terms[:n])
        elif in_float:
            key.copy_(torch.matmul(pos, weights.to(torch.float64), out=terms[:n]))
        else:
            w, dim = (weights.view(d, 1), 1) if feature_major else (weights, -1)
            torch.sum(bins[:n].copy_(pos).mul_(w), dim=dim, out=key)  # wraps mod 2**64 if hashed
            key.bitwise_and_(-(1 << label_bits))  # free the label's bits (a no-op when exact)
        key.add_(key_labels)
        _sort_rows_(key)  # (n, N) by row of bins, then by label
        torch.bitwise_right_shift(key, label_bits, out=high[:n])  # (n, N) T symbol alone
        if on_cpu:
            starts = starts_np[:n]
            h_ty[b0:b1] = torch.from_numpy(_sum_clogc_numpy(key.numpy(), starts, clogc_np))
            h_t[b0:b1] = torch.from_numpy(_sum_clogc_numpy(high[:n].numpy(), starts, clogc_np))
        else:
            work = (clogc, run[:n], counts[:n], terms[:n])
            torch.ne(key[:, 1:], key[:, :-1], out=new_run[:n])  # (n, N - 1) new (T, Y) symbol
            h_ty[b0:b1] = _sum_clogc(new_run[:n], *work)
            torch.ne(high[:n, 1:], high[:n, :-1], out=new_run[:n])
            h_t[b0:b1] = _sum_clogc(new_run[:n], *work)
    # Both sums are sum over symbols of c log2 c; H = log2 N - that / N.
    h_t = (math.log2(N) - h_t / N).reshape(batch)
    h_ty = (math.log2(N) - h_ty / N).reshape(batch)
    h_y = entropy_bits(torch.bincount(labels))
    return h_t, h_t + h_y - h_ty


def binned_information_reference(
    acts: np.ndarray, labels: np.ndarray, n_bins: int, lo: float, hi: float
) -> tuple[float, float]:
    """(I(X;T), I(T;Y)) in bits for one layer at one epoch, the plain IDNNs way.

    acts: (N, d); labels: (N,). np.unique over rows of bins for H(T) and for each
    H(T|Y=y); I(T;Y) = H(T) - sum_y p(y) H(T|Y=y). Bins follow `bin_indices` exactly.
    """
    def entropy(rows):
        _, counts = np.unique(rows, axis=0, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())

    acts = np.asarray(acts, dtype=np.float64)
    labels = np.asarray(labels)
    scale = n_bins / (hi - lo) if hi > lo else 0.0
    bins = np.clip(np.floor((acts - lo) * scale), 0, n_bins - 1).astype(np.int64)
    h_t = entropy(bins)
    h_t_given_y = 0.0
    for y in np.unique(labels):
        rows = labels == y
        h_t_given_y += rows.mean() * entropy(bins[rows])
    return h_t, h_t - h_t_given_y


def kde_information_reference(acts: np.ndarray, labels: np.ndarray, noise_var: float) -> dict[str, float]:
    """`kde_information` for one layer at one epoch, the plain way: Saxe et al.'s kde.py
    (artemyk/ibsgd) term by term in numpy float64, in bits.

    acts: (N, d); labels: (N,). Entropy bounds of the whole layer and of each class with
    their normalising constants, I = differences of them, as the paper writes them."""
    from scipy.special import logsumexp

    def h_kl(x, var):
        n, d = x.shape
        sq = (x * x).sum(1)
        dists = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
        lprobs = logsumexp(-dists / (2 * var), axis=1) - np.log(n) - (d / 2) * np.log(2 * np.pi * var)
        return d / 2 - lprobs.mean()

    def h_bd(x, var):
        return h_kl(x, 4 * var) + np.log(0.25) * x.shape[1] / 2

    acts = np.asarray(acts, dtype=np.float64)
    labels = np.asarray(labels)
    h_given_x = acts.shape[1] / 2 * (np.log(2 * np.pi * noise_var) + 1)
    out = {}
    for bound, entropy in (("upper", h_kl), ("lower", h_bd)):
        h = entropy(acts, noise_var)
        h_given_y = sum((labels == y).mean() * entropy(acts[labels == y], noise_var) for y in np.unique(labels))
        out[f"{bound}_i_xt"] = (h - h_given_x) / np.log(2)
        out[f"{bound}_i_ty"] = (h - h_given_y) / np.log(2)
    return out


# Unit roundoff of float32; the float32 kernel serves when its worst-case error bound is
# below _KDE_FLOAT32_TOLERANCE_BITS (see `kde_information`).
_EPS32 = 2.0 ** -24
_KDE_FLOAT32_TOLERANCE_BITS = 1e-4


def kde_information(
    acts: Tensor,
    labels: Tensor,
    noise_var: float,
    max_chunk_elements: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Pairwise-distance bounds on I(X;T) and I(T;Y) in bits for T plus Gaussian noise.

    Kolchinsky & Tracey 2017 bounds as used by Saxe et al. 2018 (artemyk/ibsgd kde.py):
    with D_ij = ||h_i - h_j||^2 and s2 = noise_var per dim,
      H_up(T)  = d/2 - mean_i log[(1/N) sum_j Normal(h_i; h_j, s2 I)]
      H(T|X)   = (d/2)(log(2 pi s2) + 1)
      I_up(X;T) = H_up(T) - H(T|X),  I_up(T;Y) = H_up(T) - sum_y p(y) H_up(T|Y=y),
    H_up(T|Y=y) over the rows of class y only; the lower bounds replace H_up with
    H_low = H_up at variance 4 s2 plus (d/2) log(1/4). The normalising constants
    cancel exactly, leaving (and computed as)
      I_up(X;T)  = -mean_i log[(1/N) sum_j exp(-D_ij / (2 s2))]
      I_up(T;Y)  = mean_i log[(N / n_{y_i}) sum_{j: y_j = y_i} e_ij / sum_j e_ij]
    and the same with 8 s2 in place of 2 s2 for the lower bounds.

    acts: (..., N, d), labels: (N,) int64. Returns a dict with "upper_i_xt",
    "upper_i_ty", "lower_i_xt", "lower_i_ty", each float64 (...).

    The cost is the N^2 exponentials per slice (17M at N = 4096), so the kernel spends
    as little as it can around them:
    - equal (row, label) pairs are merged into one item with a multiplicity w (exact:
      the sums over j become sums over items weighted by w, the means over i likewise);
      binary-like saturated layers shrink a lot, distinct rows cost one sort;
    - e_ij is symmetric: only blocks on and above the diagonal are computed, and each
      adds to the sums of its rows and of its columns (half the exponentials);
    - blocks of at most max_chunk_elements items pairs (default 2**17 on CPU, in the
      L2 cache, 2**24 elsewhere) hold -D_ij / (8 s2) from one small matmul of
      augmented rows [2z, -|z|^2, -1] . [z, 1, |z|^2] with z = x / sqrt(8 s2), then
      one exp serves both bounds (exp(-D/(2 s2)) = exp(-D/(8 s2))**4); items are
      sorted by label so that class sums are sums over contiguous column ranges;
      the N x N matrix is never held whole;
    - float32 when its worst-case error is below 1e-4 bits (else float64, or as dtype
      says): rounding perturbs the exponent -D/(2 s2) by at most
      16 u max|z|^2 = 2 u max||x - mean||^2 / s2 (u = 2**-24), which moves each log-sum,
      and so each bound, by at most that / ln 2 bits. For tanh layers (|x| <= 1,
      d <= 10) at Saxe et al.'s s2 = 0.1 that is below 1e-4 bits; the measured
      difference to the float64 reference is about 1e-7 bits. Per-block sums (at most a
      few hundred terms) are added into float64 accumulators.
    On CPU the kernel runs on one thread (its ops are small and in cache; see
    `binned_information`).
    """
    with _one_cpu_thread(acts.device), torch.no_grad():
        return _kde_information(acts, labels, noise_var, max_chunk_elements, dtype)


def _kde_items(x: Tensor, labels: Tensor, n_classes: int) -> tuple[Tensor, Tensor, list[int]]:
    """Distinct (row, label) pairs of x (N, d) float64, sorted by label: (items (U, d),
    multiplicities (U,) float64, class boundaries [0, .., U] of length C + 1)."""
    device = x.device
    keyed = torch.cat([labels.to(torch.float64)[:, None], x], 1)  # (N, 1 + d), label first
    if _numpy_path(device):
        rows, counts = np.unique(keyed.numpy(), axis=0, return_counts=True)
        rows, counts = torch.from_numpy(rows), torch.from_numpy(counts)
    else:
        rows, counts = torch.unique(keyed, dim=0, return_counts=True)
    # Sorted lexicographically, label first: each class is one contiguous range.
    order = torch.argsort(rows[:, 0], stable=True)
    rows, counts = rows[order], counts[order].to(torch.float64)
    bounds = torch.searchsorted(rows[:, 0].contiguous(), torch.arange(n_classes + 1, dtype=torch.float64,
                                                                      device=device) - 0.5)
    bounds[-1] = len(rows)
    return rows[:, 1:].contiguous(), counts, bounds.tolist()


def _segments(a0: int, a1: int, bounds: list[int]):
    """(class, start, stop) of each class range overlapping [a0, a1), positions relative to a0."""
    for c in range(len(bounds) - 1):
        s, t = max(a0, bounds[c]), min(a1, bounds[c + 1])
        if s < t:
            yield c, s - a0, t - a0


def _kde_information(acts, labels, noise_var, max_chunk_elements, dtype):
    """`kde_information` on the caller's threads."""
    *batch, N, d = acts.shape
    device = acts.device
    labels = labels.to(device=device, dtype=torch.int64)
    n_classes = int(labels.max().item()) + 1
    if max_chunk_elements is None:
        max_chunk_elements = 2 ** 17 if device.type == "cpu" else 2 ** 24
    flat = acts.reshape(-1, N, d)  # (B, N, d)
    B = flat.shape[0]
    log_class_size = torch.log(torch.bincount(labels, minlength=n_classes).to(torch.float64))  # (C,)
    # Square blocks on one grid: a block is on the diagonal or wholly above it.
    size = max(1, min(N, math.isqrt(max_chunk_elements)))
    f64 = dict(dtype=torch.float64, device=device)
    out = {key: torch.empty(B, **f64) for key in _KDE_KEYS}
    for b in range(B):
        x = flat[b].to(torch.float64)
        # Distances are translation invariant; centring shrinks the norms whose
        # difference the matmul form takes, and with it the cancellation error.
        x = x - x.mean(0)
        items, w, bounds = _kde_items(x, labels, n_classes)  # (U, d), (U,)
        U = len(items)
        z = items / math.sqrt(8.0 * noise_var)  # D_ij / (8 s2) = ||z_i - z_j||^2
        sq = (z * z).sum(1, keepdim=True)  # (U, 1)
        kind = dtype
        if kind is None:
            worst_bits = 16 * _EPS32 * sq.max().item() / _LN2
            kind = torch.float32 if worst_bits <= _KDE_FLOAT32_TOLERANCE_BITS else torch.float64
        ones = torch.ones_like(sq)
        left = torch.cat([2.0 * z, -sq, -ones], 1).to(kind)  # (U, d + 2)
        right_t = torch.cat([z, ones, sq], 1).T.to(kind).contiguous()  # (d + 2, U)
        weighted = bool((w != 1).any())
        w_k = w.to(kind)
        # sums[bound][u, c] = sum over items j of class c of w_j e_uj (times w_u when weighted).
        wide = torch.zeros(U, n_classes, **f64)
        narrow = torch.zeros(U, n_classes, **f64)
        buffer = torch.empty(size * size, dtype=kind, device=device)
        for i0 in range(0, U, size):
            i1 = min(U, i0 + size)
            row_segs = list(_segments(i0, i1, bounds))
            for j0 in range(i0, U, size):
                j1 = min(U, j0 + size)
                e = buffer[: (i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                torch.mm(left[i0:i1], right_t[:, j0:j1], out=e)  # -D / (8 s2)
                e.clamp_(max=0.0).exp_()
                on_diagonal = i0 == j0
                if on_diagonal:
                    # D_ii is exactly 0; the matmul form leaves rounding noise there.
                    e.fill_diagonal_(1.0)
                col_segs = list(_segments(j0, j1, bounds))
                for sums in (wide, narrow):
                    if sums is narrow:
                        e.square_().square_()
                    f = e
                    if weighted:
                        f = e * w_k[j0:j1]
                        f.mul_(w_k[i0:i1, None])  # w_i w_j e_ij, symmetric
                    for c, s, t in col_segs:  # each row i's sum over the class-c columns
                        sums[i0:i1, c] += f[:, s:t].sum(1)
                    if not on_diagonal:  # a diagonal block holds both (i, j) and (j, i)
                        for c, s, t in row_segs:  # each column j's sum over the class-c rows
                            sums[j0:j1, c] += f[s:t].sum(0)
        if weighted:
            wide /= w[:, None]
            narrow /= w[:, None]
        for bound, sums in (("upper", narrow), ("lower", wide)):
            # The j = i term keeps every sum >= 1: no underflow, no log of 0.
            log_all = torch.log(sums.sum(1)) - math.log(N)  # (U,)
            # Item u's own class: sum over class ranges of w_u log(sum of its class).
            own = torch.cat([torch.log(sums[s:t, c]) - log_class_size[c] for c, s, t in _segments(0, U, bounds)])
            out[f"{bound}_i_xt"][b] = -(w * log_all).sum() / N / _LN2
            out[f"{bound}_i_ty"][b] = (w * (own - log_all)).sum() / N / _LN2
    return {key: value.reshape(batch) for key, value in out.items()}
