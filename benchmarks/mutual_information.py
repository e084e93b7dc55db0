"""Information-plane estimators: vectorised torch versus the plain per-epoch loops.

Workload: the study's 4096 inputs (every 12-bit pattern) through a random
12-10-7-5-4-3-2 tanh MLP (softmax output, as IDNNs) whose weights grow and wander
over E logged epochs, so activations saturate as they do in training. Labels are
random and balanced: only speed is measured here.

- binned I(X;T), I(T;Y) for all 6 layers at all E epochs: `binned_information`, one
  call per layer batched over epochs, against `binned_information_reference`
  (np.unique over rows, IDNNs style) looping layer by layer, epoch by epoch;
- KDE bounds (Saxe et al.) for all 6 layers at one epoch: `kde_information` against
  `kde_information_reference`, a numpy float64 transcription of artemyk/ibsgd's kde.py
  (full N x N matrices).

Both pairs must agree (binned to 1e-9 bits, KDE to 1e-8 bits) or the script fails.
Last stdout line: one JSON object of the figures.

    .venv/bin/python benchmarks/mutual_information.py [--quick] [--epochs E]
"""

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

from lookinside.studies.information_bottleneck.estimators import (
    binned_information,
    binned_information_reference,
    kde_information,
    kde_information_reference,
)

WIDTHS = (12, 10, 7, 5, 4, 3, 2)  # Shwartz-Ziv & Tishby's network


def twelve_bit_inputs() -> torch.Tensor:
    """All 4096 patterns of 12 bits in counting order, as IDNNs' var_u.mat: (4096, 12)."""
    codes = torch.arange(4096)
    return ((codes[:, None] >> torch.arange(11, -1, -1)) & 1).to(torch.float32)


def drifting_activations(epochs: int, seed: int = 0) -> list[torch.Tensor]:
    """Activations of every layer at every logged epoch: [(E, 4096, width)] * 6, float32."""
    gen = torch.Generator().manual_seed(seed)
    growth = torch.linspace(1.0, 4.0, epochs)[:, None, None]  # (E, 1, 1) saturation
    h = twelve_bit_inputs().expand(epochs, -1, -1)  # (E, N, 12)
    layers = []
    for fan_in, fan_out in zip(WIDTHS[:-1], WIDTHS[1:]):
        w0 = torch.randn(fan_in, fan_out, generator=gen) / fan_in ** 0.5
        walk = 0.05 * torch.randn(epochs, fan_in, fan_out, generator=gen).cumsum(0) / epochs ** 0.5
        bias = 0.1 * torch.randn(epochs, 1, fan_out, generator=gen)
        pre = torch.baddbmm(bias, h, w0 * growth + walk)  # (E, N, fan_out)
        h = pre.softmax(-1) if fan_out == WIDTHS[-1] else pre.tanh()
        layers.append(h.contiguous())
    return layers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 epochs: well under two minutes")
    parser.add_argument("--epochs", type=int, default=None, help="logged epochs (default 200, --quick 40)")
    parser.add_argument("--n-bins", type=int, default=30, help="equal bins over [-1, 1] (IDNNs: 30 edges)")
    parser.add_argument("--noise-var", type=float, default=0.1, help="KDE noise variance (Saxe et al.: 0.1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    epochs = args.epochs or (40 if args.quick else 200)
    torch.set_num_threads(2)
    device = torch.device(args.device)

    layers = [a.to(device) for a in drifting_activations(epochs)]
    n = layers[0].shape[1]
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(1)) % 2  # balanced
    labels = labels.to(device)
    labels_np = labels.cpu().numpy()

    # KDE first, so the peak-RSS growth it reports is its own.
    kde_epoch = epochs - 1  # saturated: the harder case for the exp underflow
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    kde = [kde_information(a[kde_epoch], labels, args.noise_var) for a in layers]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        kde_peak = torch.cuda.max_memory_allocated(device)
    else:
        kde_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    kde_s = time.perf_counter() - start
    # One (N, N) float64 distance buffer (max_chunk_elements = 2**24 >= N**2), plus
    # per layer the centred float64 activations and two (N, C) accumulators.
    kde_estimate = 8 * (n * n + n * (max(a.shape[-1] for a in layers) + 2 * 2))
    start = time.perf_counter()
    kde_ref = [kde_information_reference(a[kde_epoch].cpu().numpy(), labels_np, args.noise_var) for a in layers]
    kde_ref_s = time.perf_counter() - start
    kde_diff = max(abs(k[key].item() - r[key]) for k, r in zip(kde, kde_ref) for key in r)
    print(f"KDE, 6 layers at one epoch: vectorised {kde_s:.2f} s, numpy {kde_ref_s:.2f} s, "
          f"max |diff| {kde_diff:.2e} bits")

    # The vectorised pass is short, so one stray time slice of another process can
    # double it: take the median of three. The reference's long loop averages that out.
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fast = [binned_information(a, labels, args.n_bins, -1.0, 1.0) for a in layers]  # [(E,), (E,)] * 6
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    vectorised_s = sorted(times)[1]

    start = time.perf_counter()
    slow = [
        [binned_information_reference(a[e].cpu().numpy(), labels_np, args.n_bins, -1.0, 1.0) for e in range(epochs)]
        for a in layers  # plain loops: layer by layer, epoch by epoch
    ]
    reference_s = time.perf_counter() - start

    fast_np = np.array([[i_xt.cpu().numpy(), i_ty.cpu().numpy()] for i_xt, i_ty in fast])  # (6, 2, E)
    slow_np = np.array(slow).transpose(0, 2, 1)  # (6, 2, E)
    binned_diff = float(np.abs(fast_np - slow_np).max())
    print(f"binned, 6 layers x {epochs} epochs: vectorised {vectorised_s:.3f} s, reference {reference_s:.2f} s, "
          f"max |diff| {binned_diff:.2e} bits")
    print("I(X;T) per layer, first -> last epoch:",
          " ".join(f"{fast_np[k, 0, 0]:.2f}->{fast_np[k, 0, -1]:.2f}" for k in range(len(layers))))
    if not binned_diff < 1e-9:
        sys.exit(f"binned estimators disagree: max |diff| {binned_diff} bits")
    if not kde_diff < 1e-8:
        sys.exit(f"KDE estimators disagree: max |diff| {kde_diff} bits")

    print(json.dumps({
        "binned_mi_speedup": round(reference_s / vectorised_s, 1),
        "epochs": epochs,
        "layers": len(layers),
        "n": n,
        "n_bins": args.n_bins,
        "reference_s": round(reference_s, 3),
        "vectorised_s": round(vectorised_s, 4),
        "binned_max_abs_diff": binned_diff,
        "kde_s_per_epoch": round(kde_s, 3),
        "kde_reference_s_per_epoch": round(kde_ref_s, 3),
        "kde_speedup": round(kde_ref_s / kde_s, 1),
        "kde_max_abs_diff": kde_diff,
        "kde_peak_bytes_estimate": kde_estimate,
        "kde_peak_bytes_measured": int(kde_peak),
        "device": device.type,
    }))


if __name__ == "__main__":
    main()
