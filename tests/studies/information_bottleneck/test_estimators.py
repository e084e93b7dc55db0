"""Estimators of the information plane: closed forms, invariances, and plain references."""

import collections
import math

import numpy as np
import pytest
import torch

from lookinside.studies.information_bottleneck import estimators
from lookinside.studies.information_bottleneck.estimators import (
    bin_indices,
    binned_information,
    binned_information_reference,
    entropy_bits,
    kde_information,
    kde_information_reference,
)

N = 4096


def twelve_bits() -> torch.Tensor:
    """All 4096 12-bit patterns, (4096, 12) float32 of 0/1."""
    return ((torch.arange(N)[:, None] >> torch.arange(12)) & 1).to(torch.float32)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_labels(n: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=gen(seed))


def test_entropy_bits_of_uniform_and_degenerate_histograms():
    counts = torch.tensor([[5, 5, 5, 5], [7, 0, 0, 0], [1, 0, 1, 0]])
    assert torch.allclose(entropy_bits(counts), torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64))


def test_bin_indices_clip_to_the_edge_bins_and_guard_a_constant_layer():
    acts = torch.tensor([[-5.0, -1.0, -0.01, 0.0, 0.99, 1.0, 7.0]]).T  # (7, 1)
    assert bin_indices(acts, -1.0, 1.0, 4).flatten().tolist() == [0, 0, 1, 2, 3, 3, 3]
    assert bin_indices(acts, -1.0, 1.0, 4).dtype == torch.int64
    assert bin_indices(acts, 0.5, 0.5, 4).eq(0).all()


def test_an_injective_layer_carries_all_12_bits():
    x, y = twelve_bits(), random_labels(N, 2, 0)
    h_y = entropy_bits(torch.bincount(y)).item()
    i_xt, i_ty = binned_information(x, y, 2, 0.0, 1.0)
    assert abs(i_xt.item() - 12.0) < 1e-9
    # T determines X and hence Y.
    assert abs(i_ty.item() - h_y) < 1e-9
    # One unit holding the pattern's integer value, one bin per integer.
    code = (x * 2.0 ** torch.arange(12)).sum(-1, keepdim=True) / N  # (N, 1) in [0, 1)
    i_xt, i_ty = binned_information(code, y, N, 0.0, 1.0)
    assert abs(i_xt.item() - 12.0) < 1e-9 and abs(i_ty.item() - h_y) < 1e-9


def test_a_constant_layer_carries_nothing():
    y = random_labels(N, 3, 1)
    for lo, hi in ((-1.0, 1.0), (0.25, 0.25)):
        i_xt, i_ty = binned_information(torch.full((2, N, 5), 0.25), y, 30, lo, hi)
        assert i_xt.abs().max() < 1e-12 and i_ty.abs().max() < 1e-12


def test_information_about_the_label_is_bounded_by_both_entropies():
    for seed, classes in ((2, 2), (3, 3), (4, 4)):
        g = gen(seed)
        # Scales from near-constant to saturated, in one batch.
        scale = torch.logspace(-2, 1, 8)[:, None, None]  # (8, 1, 1)
        for d in (1, 3, 6):
            # Labels from three input bits that the layer weighs heavily, so that
            # I(T;Y) ranges from nothing to nearly H(Y).
            w = torch.randn(12, d, generator=g) * torch.tensor([10.0] * 3 + [1.0] * 9)[:, None]
            acts = torch.tanh(scale * (twelve_bits() @ w))  # (8, N, d)
            y = twelve_bits()[:, :3].sum(-1).long().clamp(max=classes - 1)
            i_xt, i_ty = binned_information(acts, y, 10, -1.0, 1.0)
            h_y = entropy_bits(torch.bincount(y))
            assert (i_ty <= torch.minimum(i_xt, h_y) + 1e-9).all()
            assert (i_ty >= -1e-9).all() and (i_xt <= 12.0 + 1e-9).all()
            # The scales span the plane: not every case is trivially 0 or 12 bits.
            assert i_xt.min() < 11.0 and i_ty.max() > 0.05


def test_relabelling_bins_or_reordering_inputs_changes_nothing():
    g = gen(5)
    n_bins, d = 7, 4
    bins = torch.randint(0, n_bins, (3, N, d), generator=g)  # (3, N, d)
    y = random_labels(N, 2, 5)
    centres = bins.to(torch.float64) + 0.5  # exactly in bin k of [0, n_bins) with n_bins bins
    expected = binned_information(centres, y, n_bins, 0.0, float(n_bins))
    # A different permutation of the bin labels for every unit.
    perms = torch.stack([torch.randperm(n_bins, generator=g) for _ in range(d)])  # (d, n_bins)
    relabelled = perms[torch.arange(d), bins].to(torch.float64) + 0.5  # (3, N, d)
    # The same bins on a shifted and scaled range.
    moved = centres * 0.25 - 3.0
    # The inputs in another order, labels along.
    order = torch.randperm(N, generator=g)
    for got in (
        binned_information(relabelled, y, n_bins, 0.0, float(n_bins)),
        binned_information(moved, y, n_bins, -3.0, n_bins * 0.25 - 3.0),
        binned_information(centres[:, order], y[order], n_bins, 0.0, float(n_bins)),
    ):
        for a, b in zip(got, expected):
            assert torch.allclose(a, b, rtol=0, atol=1e-9)
    # Not vacuous: merging two bins does change H(T).
    merged = torch.where(bins == 1, 0, bins).to(torch.float64) + 0.5
    assert binned_information(merged, y, n_bins, 0.0, float(n_bins))[0].max() < expected[0].min() - 0.01


@pytest.mark.parametrize(
    "d, n_bins",
    [(1, 30), (3, 2), (3, 30), (10, 30), (11, 30), (40, 30), (7, 1000)],
    # With 3 classes: keys exact in float64 up to n_bins**d = 2**51, exact int64 up
    # to 2**60, hashed beyond.
    ids=["d1", "d3-coarse", "d3", "d10-float-keys", "d11-int-keys", "d40-hashed", "d7-hashed"],
)
def test_batched_equals_per_slice_and_the_numpy_reference(d, n_bins):
    g = gen(d * 1000 + n_bins)
    # Heavy tails and saturation, so many rows share bins and some fall off the range.
    acts = torch.tanh(torch.randn(2, 3, N, d, generator=g) * torch.tensor([0.3, 1.0, 4.0])[:, None, None])
    y = random_labels(N, 3, d)
    i_xt, i_ty = binned_information(acts, y, n_bins, -1.0, 1.0)
    assert i_xt.shape == i_ty.shape == (2, 3)
    chunked = binned_information(acts, y, n_bins, -1.0, 1.0, max_chunk_elements=1)
    for m in range(2):
        for e in range(3):
            one = binned_information(acts[m, e], y, n_bins, -1.0, 1.0)
            ref = binned_information_reference(acts[m, e].numpy(), y.numpy(), n_bins, -1.0, 1.0)
            for got in (one, (chunked[0][m, e], chunked[1][m, e])):
                assert abs(got[0].item() - i_xt[m, e].item()) < 1e-9
                assert abs(got[1].item() - i_ty[m, e].item()) < 1e-9
            assert abs(ref[0] - i_xt[m, e].item()) < 1e-9
            assert abs(ref[1] - i_ty[m, e].item()) < 1e-9


def test_per_slice_ranges_match_one_range_at_a_time():
    # Saxe et al. bin ReLU layers between their observed min and max: one range per slice.
    acts = torch.relu(torch.randn(4, N, 3, generator=gen(6))) * torch.arange(1.0, 5.0)[:, None, None]
    y = random_labels(N, 2, 6)
    lo = acts.amin(dim=(-2, -1), keepdim=True)  # (4, 1, 1)
    hi = acts.amax(dim=(-2, -1), keepdim=True)  # (4, 1, 1)
    i_xt, i_ty = binned_information(acts, y, 100, lo, hi)
    for e in range(4):
        ref = binned_information_reference(acts[e].numpy(), y.numpy(), 100, lo[e].item(), hi[e].item())
        assert abs(ref[0] - i_xt[e].item()) < 1e-9 and abs(ref[1] - i_ty[e].item()) < 1e-9
    assert len(set(i_xt.tolist())) > 1


@pytest.mark.parametrize("d", [3, 11, 40], ids=["float-keys", "int-keys", "hashed"])
def test_feature_major_activations_give_the_same_bits(d):
    # The packed model hands over (..., N, d) views of feature-major (..., d, N) buffers;
    # they are binned in that layout, with scalar, per-slice and per-unit ranges alike.
    g = gen(7 + d)
    stored = torch.tanh(torch.randn(2, 3, d, N, generator=g) * 2.0)  # (2, 3, d, N)
    acts = stored.transpose(-1, -2)  # (2, 3, N, d), not contiguous
    y = random_labels(N, 2, d)
    lo = acts.amin(dim=(-2, -1), keepdim=True)  # (2, 3, 1, 1)
    per_unit = acts.amax(dim=-2, keepdim=True)  # (2, 3, 1, d)
    for bounds in ((-1.0, 1.0), (lo, per_unit)):
        got = binned_information(acts, y, 30, *bounds)
        expected = binned_information(acts.contiguous(), y, 30, *bounds)
        chunked = binned_information(acts, y, 30, *bounds, max_chunk_elements=1)
        for a, b, c in zip(got, expected, chunked):
            assert torch.equal(a, b) and torch.equal(c, b)
    ref = binned_information_reference(acts[1, 2].numpy(), y.numpy(), 30, -1.0, 1.0)
    got = binned_information(acts, y, 30, -1.0, 1.0)
    assert abs(ref[0] - got[0][1, 2].item()) < 1e-9 and abs(ref[1] - got[1][1, 2].item()) < 1e-9


def test_run_length_sums_of_the_numpy_and_torch_paths_agree():
    # The CPU counts runs with numpy, CUDA with torch's cumsum and scatter-add (run here on
    # the CPU): both must give the sum over distinct keys of c log2 c, checked against a
    # Counter, on rows of few long runs, of all-distinct keys and of one run.
    g = gen(3)
    rows = [torch.randint(0, 5, (N,), generator=g), torch.randperm(N, generator=g), torch.zeros(N, dtype=torch.int64),
            torch.randint(0, 900, (N,), generator=g)]
    keys = torch.sort(torch.stack(rows), dim=1).values  # (4, N) sorted int64
    expected = [sum(c * math.log2(c) for c in collections.Counter(r.tolist()).values()) for r in keys]
    clogc = torch.arange(N + 1, dtype=torch.float64)
    clogc = clogc * torch.log2(clogc.clamp(min=1.0))
    b = len(rows)
    run = torch.zeros(b, N, dtype=torch.int64)
    torch_path = estimators._sum_clogc(keys[:, 1:] != keys[:, :-1], clogc, run, torch.empty(b, N, dtype=torch.int64),
                                      torch.empty(b, N, dtype=torch.float64))
    starts = np.ones((b, N), dtype=bool)
    cpu_path = estimators._sum_clogc_numpy(keys.numpy(), starts, clogc.numpy())
    assert np.allclose(torch_path.numpy(), expected, rtol=1e-12, atol=1e-9)
    assert np.allclose(cpu_path, expected, rtol=1e-12, atol=1e-9)
    assert expected[2] == N * math.log2(N) and expected[1] == 0.0


@pytest.mark.parametrize("d", [3, 11, 40], ids=["float-keys", "int-keys", "hashed"])
def test_torch_path_for_cuda_gives_the_numpy_paths_bits(d, monkeypatch):
    # On CUDA, keys are sorted and runs counted by torch ops; run that path here on the CPU.
    g = gen(11 + d)
    # Rows drawn from 40 prototypes per slice: repeated symbols, so runs longer than 1.
    protos = torch.tanh(torch.randn(8, 40, d, generator=g) * 2.0)
    pick = torch.randint(0, 40, (8, N), generator=g)
    acts = torch.stack([p[i] for p, i in zip(protos, pick)]).view(4, 2, N, d)
    y = random_labels(N, 2, d)
    lo, hi = acts.amin(dim=(-2, -1), keepdim=True), acts.amax(dim=(-2, -1), keepdim=True)
    numpy_bits = binned_information(acts, y, 30, lo, hi)
    monkeypatch.setattr(estimators, "_numpy_path", lambda device: False)
    torch_bits = binned_information(acts, y, 30, lo, hi)
    for a, b in zip(numpy_bits, torch_bits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert (numpy_bits[0] < 6).all() and len(set(numpy_bits[0].flatten().tolist())) > 1


# KDE bounds (Kolchinsky & Tracey; Saxe et al.)


KEYS = ("upper_i_xt", "upper_i_ty", "lower_i_xt", "lower_i_ty")


def test_kde_of_a_single_point_is_the_noise_alone():
    # H_up(T) is then the entropy of N(h, s2 I), (d/2) log(2 pi e s2) = H(T|X).
    acts = torch.full((256, 4), 0.3)
    out = kde_information(acts, random_labels(256, 2, 7), noise_var=0.1)
    for key in KEYS:
        assert abs(out[key].item()) < 1e-9


def test_kde_of_two_far_clusters_is_one_bit():
    acts = torch.zeros(256, 3, dtype=torch.float64)
    acts[128:] = 5.0  # 75 noise standard deviations apart
    labels = (torch.arange(256) >= 128).long()
    out = kde_information(acts, labels, noise_var=1e-3)
    for key in KEYS:
        assert abs(out[key].item() - 1.0) < 1e-9


def test_kde_matches_a_plain_numpy_implementation():
    acts = torch.tanh(torch.randn(300, 3, generator=gen(8)) * 2)
    labels = random_labels(300, 3, 8)
    for noise_var in (0.1, 1e-3):
        expected = kde_information_reference(acts.double().numpy(), labels.numpy(), noise_var)
        # float64 throughout: rounding alone (measured below 1e-14 bits).
        out = kde_information(acts, labels, noise_var, dtype=torch.float64)
        for key in KEYS:
            assert abs(out[key].item() - expected[key]) < 1e-10, key
        # The default picks float32 where its error bound is below 1e-4 bits (here at
        # noise_var 0.1; measured max |diff| about 1e-7 bits) and float64 otherwise.
        out = kde_information(acts, labels, noise_var)
        for key in KEYS:
            assert abs(out[key].item() - expected[key]) < 1e-5, key
        assert 0.1 < out["upper_i_xt"].item() < math.log2(300)


@pytest.mark.parametrize("d, scale, duplicates", [(10, 1.0, False), (10, 3.0, False), (3, 30.0, True), (2, 2.0, True)],
                         ids=["tanh-d10", "saturated-d10", "binary-d3", "d2-repeated-rows"])
def test_fast_kde_matches_the_reference_on_layer_sized_inputs(d, scale, duplicates, monkeypatch):
    # The study's 4096 inputs through a random tanh layer: distinct rows, saturated rows
    # (many identical in float32), or rows drawn from 50 prototypes (merged with counts).
    g = gen(20 + d)
    if duplicates:
        protos = torch.tanh(torch.randn(50, d, generator=g) * scale)
        acts = protos[torch.randint(0, 50, (N,), generator=g)]
    else:
        acts = torch.tanh(twelve_bits() @ torch.randn(12, d, generator=g) * scale / math.sqrt(12))
    labels = random_labels(N, 2, d)
    expected = kde_information_reference(acts.double().numpy(), labels.numpy(), 0.1)
    fast = kde_information(acts, labels, 0.1)
    exact = kde_information(acts, labels, 0.1, dtype=torch.float64)
    # The torch path that CUDA takes (torch.unique instead of np.unique), run on the CPU.
    monkeypatch.setattr(estimators, "_numpy_path", lambda device: False)
    torch_path = kde_information(acts, labels, 0.1)
    for key in KEYS:
        # float32 within its stated 1e-4 bits (measured max |diff| 2e-7 bits over these
        # cases); float64 to rounding.
        assert abs(fast[key].item() - expected[key]) < 1e-5, key
        assert abs(exact[key].item() - expected[key]) < 1e-10, key
        assert abs(torch_path[key].item() - fast[key].item()) < 1e-12, key
    assert 0.5 < expected["upper_i_xt"] < 12.0


@pytest.mark.parametrize("d", [1, 7, 1024])
def test_kde_batched_and_chunked_agree_and_bounds_are_ordered(d):
    n = 96
    acts = torch.randn(2, 3, n, d, generator=gen(d)) * 0.05 / math.sqrt(d)
    labels = random_labels(n, 2, d)
    full = kde_information(acts, labels, noise_var=1e-3, dtype=torch.float64)
    # One block, and square blocks of 21 and of 7 items (50 distances): the upper
    # triangle of blocks, each added to its rows' and its columns' sums.
    for max_chunk_elements in (n * n, 5 * n, 50):
        chunked = kde_information(acts, labels, noise_var=1e-3, max_chunk_elements=max_chunk_elements,
                                  dtype=torch.float64)
        for key in KEYS:
            assert full[key].shape == (2, 3)
            assert torch.allclose(full[key], chunked[key], rtol=0, atol=1e-10)
        fast = kde_information(acts, labels, noise_var=1e-3, max_chunk_elements=max_chunk_elements)
        for key in KEYS:
            assert torch.allclose(full[key], fast[key], rtol=0, atol=1e-5)
    for m in range(2):
        one = kde_information(acts[m, 1], labels, noise_var=1e-3, dtype=torch.float64)
        for key in KEYS:
            assert abs(one[key].item() - full[key][m, 1].item()) < 1e-10
    assert (full["lower_i_xt"] <= full["upper_i_xt"] + 1e-12).all()
    assert (full["lower_i_ty"] <= full["upper_i_ty"] + 1e-12).all()
    # The noise is comparable to the spread here: bounds strictly between 0 and log2 n.
    assert (full["upper_i_xt"] > 0.05).all() and (full["upper_i_xt"] < math.log2(n) - 0.05).all()
