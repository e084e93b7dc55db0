"""A slice of an information-bottleneck preset, timed by stage, with the KDE side by side.

Runs S networks of a preset (default 8 of `paper`, tanh, 85% training data) as one pack
in this process on one torch thread, as a sweep's trial does, and times each stage per
network: training (with the forward passes and metrics of the logged epochs), binning
(fixed and observed ranges) and the KDE bounds. Every KDE call is also made, on the same
activations and just after it, with `previous_kde_information` below (the float64
kernel the estimator had before the fused, symmetric, deduplicated float32 one; kept
here as the baseline), so that both are timed side by side under the same load, and
the run fails unless they agree to 1e-4 bits (the new kernel's stated tolerance).

From the per-network figures it projects the full preset on this machine, one pack
per core: training per network-epoch x the preset's epochs, binning per logged epoch x
its logged epochs, KDE per KDE epoch x its KDE epochs, x its networks / cores, with the
new KDE and with the previous one. Training per network in a pack of S is dearer than in
the preset's packs of ~networks/cores, so the projection is an upper bound. The
arithmetic floor is the training and forward FLOPs over this core's float32 matmul rate
plus the KDE's N(N+1)/2 exponentials per layer and KDE epoch at this core's float32 exp
rate (binning is not counted). Last line: one JSON object.

    python benchmarks/ib_scale.py            # 8 networks of paper, 10^4 epochs, its 48 KDE epochs
    python benchmarks/ib_scale.py --quick    # 2 networks, 400 epochs, 12 KDE epochs (< 2 min)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from rates import matmul_rate  # benchmarks/rates.py, beside this script

from lookinside.session import Session
from lookinside.studies.information_bottleneck import STUDY, estimators, trial
from lookinside.studies.information_bottleneck.estimators import _KDE_KEYS, _LN2

TOLERANCE_BITS = 1e-4


def previous_kde_information(acts, labels, noise_var: float, max_chunk_elements: int = 2 ** 24) -> dict:
    """`estimators.kde_information` as it was before the fused kernel (float64, the whole
    N x N block at once, every pair twice): the baseline."""
    *batch, N, d = acts.shape
    device = acts.device
    labels = labels.to(device=device, dtype=torch.int64)
    n_classes = int(labels.max().item()) + 1
    flat = acts.reshape(-1, N, d)
    B = flat.shape[0]
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
    log_class_size = torch.log(onehot.sum(0))[labels]
    cols = min(N, max_chunk_elements)
    rows = min(N, max(1, max_chunk_elements // cols))
    members = min(B, max(1, max_chunk_elements // (rows * cols)))
    buffer = torch.empty(members * rows * cols, dtype=torch.float64, device=device)
    out = {key: torch.empty(B, dtype=torch.float64, device=device) for key in _KDE_KEYS}
    for b0 in range(0, B, members):
        b1 = min(B, b0 + members)
        x = flat[b0:b1].to(torch.float64)
        x = x - x.mean(-2, keepdim=True)
        sq_norm = (x * x).sum(-1)
        sums_wide = torch.zeros(b1 - b0, N, n_classes, dtype=torch.float64, device=device)
        sums_narrow = torch.zeros_like(sums_wide)
        for i0 in range(0, N, rows):
            i1 = min(N, i0 + rows)
            for j0 in range(0, N, cols):
                j1 = min(N, j0 + cols)
                dist = buffer[: (b1 - b0) * (i1 - i0) * (j1 - j0)].view(b1 - b0, i1 - i0, j1 - j0)
                torch.add(sq_norm[:, i0:i1, None], sq_norm[:, None, j0:j1], out=dist)
                dist.baddbmm_(x[:, i0:i1], x[:, j0:j1].transpose(1, 2), alpha=-2.0).clamp_(min=0.0)
                lo_diag, hi_diag = max(i0, j0), min(i1, j1)
                if lo_diag < hi_diag:
                    diag = torch.arange(lo_diag, hi_diag, device=device)
                    dist[:, diag - i0, diag - j0] = 0.0
                kernel = dist.mul_(-1.0 / (8.0 * noise_var)).exp_()
                sums_wide[:, i0:i1] += kernel @ onehot[j0:j1]
                kernel.square_().square_()
                sums_narrow[:, i0:i1] += kernel @ onehot[j0:j1]
        for bound, sums in (("upper", sums_narrow), ("lower", sums_wide)):
            log_all = torch.log(sums.sum(-1)) - math.log(N)
            same = sums.gather(-1, labels.expand(b1 - b0, N)[..., None])[..., 0]
            log_same = torch.log(same) - log_class_size
            out[f"{bound}_i_xt"][b0:b1] = -log_all.mean(-1) / _LN2
            out[f"{bound}_i_ty"][b0:b1] = (log_same - log_all).mean(-1) / _LN2
    return {key: value.reshape(batch) for key, value in out.items()}


class Timed:
    """Wraps the estimators that trial.py calls: seconds spent in each, and for the KDE the
    baseline's seconds on the same calls and the largest difference between the two."""

    def __init__(self):
        self.binning_s = self.kde_s = self.previous_kde_s = 0.0
        self.kde_calls = 0
        self.max_diff = 0.0
        self.binned, self.kde = estimators.binned_information, estimators.kde_information

    def binned_information(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.binned(*args, **kwargs)
        finally:
            self.binning_s += time.perf_counter() - start

    def kde_information(self, acts, labels, noise_var, **kwargs):
        # Alternate which goes first, so that neither always meets a warm or cold cache.
        first_new = self.kde_calls % 2 == 0
        for new in (first_new, not first_new):
            start = time.perf_counter()
            if new:
                got = self.kde(acts, labels, noise_var, **kwargs)
                self.kde_s += time.perf_counter() - start
            else:
                before = previous_kde_information(acts, labels, noise_var)
                self.previous_kde_s += time.perf_counter() - start
        self.kde_calls += 1
        for key in _KDE_KEYS:
            self.max_diff = max(self.max_diff, float((got[key] - before[key]).abs().max()))
        return got

    def __enter__(self):
        estimators.binned_information, estimators.kde_information = self.binned_information, self.kde_information
        return self

    def __exit__(self, *exc):
        estimators.binned_information, estimators.kde_information = self.binned, self.kde


def exp_rate() -> float:
    """float32 exponentials per second on one thread, on an in-cache buffer."""
    x = -torch.rand(2 ** 16) * 20
    y = torch.empty_like(x)
    torch.exp(x, out=y)
    start = time.perf_counter()
    for _ in range(200):
        torch.exp(x, out=y)
    return 200 * x.numel() / (time.perf_counter() - start)


def preset_shape(preset: str) -> dict:
    """The full preset's networks, epochs, logged and KDE epochs, widths and training rows."""
    configs = STUDY.configs(preset)
    c = configs[0]
    logged = trial.logged_epochs(c)
    n_train = sum(round(k.train_fraction * 4096) for k in configs) / len(configs)
    return {"networks": len(configs), "epochs": c.epochs, "logged": len(logged),
            "kde": len(trial.kde_epochs(c, logged)), "widths": [12, *c.hidden, 2], "n_train": n_train}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 networks x 400 epochs, 12 KDE epochs")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--networks", type=int, default=None, help="networks in the slice (default 8, --quick 2)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the slice (default the preset's)")
    parser.add_argument("--cores", type=int, default=None, help="cores for the projection (default all)")
    args = parser.parse_args(argv)
    cores = args.cores or os.cpu_count() or 1
    full = preset_shape(args.preset)
    networks = args.networks or (2 if args.quick else 8)
    values = {"activation": "tanh", "train_fraction": 0.85}
    if args.quick or args.epochs:
        values["epochs"] = args.epochs or 400
    if args.quick:
        values["kde_epochs"] = 12
    configs = STUDY.configs(args.preset, values, {"seed": list(range(networks))})
    c = configs[0]
    logged = trial.logged_epochs(c)
    n_kde = len(trial.kde_epochs(c, logged))

    torch.set_num_threads(1)
    trial.load_dataset(c.dataset_path, c.data_seed)  # not part of any stage
    with Timed() as timed:
        start = time.perf_counter()
        trial.train(configs, Session([f"seed{k.seed}" for k in configs], STUDY.tables))
        total = time.perf_counter() - start
    training = total - timed.binning_s - timed.kde_s - timed.previous_kde_s
    per_net = {"training_s": training / networks, "binning_s": timed.binning_s / networks,
               "kde_s": timed.kde_s / networks, "previous_kde_s": timed.previous_kde_s / networks}
    print(f"{networks} networks of {args.preset}, {c.epochs} epochs, {len(logged)} logged, {n_kde} with KDE; "
          "seconds per network:", file=sys.stderr)
    for stage, seconds in per_net.items():
        print(f"  {stage:15s} {seconds:8.2f}", file=sys.stderr)
    if not timed.max_diff <= TOLERANCE_BITS:
        sys.exit(f"new and previous KDE disagree: max |diff| {timed.max_diff:.3g} bits > {TOLERANCE_BITS}")

    # The full preset, one pack per core: per-network seconds scaled by its epochs.
    kde_per_epoch = per_net["kde_s"] / max(1, n_kde)
    previous_per_epoch = per_net["previous_kde_s"] / max(1, n_kde)
    base = (per_net["training_s"] / c.epochs * full["epochs"] + per_net["binning_s"] / len(logged) * full["logged"])
    scale = full["networks"] / cores
    projected = scale * (base + kde_per_epoch * full["kde"])
    projected_previous = scale * (base + previous_per_epoch * full["kde"])
    widths = full["widths"]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    flops = full["epochs"] * full["n_train"] * macs * 6 + full["logged"] * 4096 * macs * 2
    exps = full["kde"] * (len(widths) - 1) * 4096 * 4097 / 2
    floor = scale * (flops / matmul_rate() + exps / exp_rate())
    print(f"KDE per network-epoch: {kde_per_epoch:.3f} s, previous {previous_per_epoch:.3f} s "
          f"({previous_per_epoch / kde_per_epoch:.1f}x); max |diff| {timed.max_diff:.2e} bits", file=sys.stderr)
    print(f"full {args.preset} ({full['networks']} networks, {full['epochs']} epochs, {full['kde']} KDE epochs) "
          f"on {cores} cores: {projected / 60:.1f} min, previous KDE {projected_previous / 60:.1f} min, "
          f"floor {floor / 60:.2f} min", file=sys.stderr)
    print(json.dumps({
        "preset": args.preset, "networks": networks, "epochs": c.epochs, "logged_epochs": len(logged),
        "kde_epochs": n_kde, **{k: round(v, 3) for k, v in per_net.items()},
        "kde_s_per_network_epoch": round(kde_per_epoch, 4),
        "previous_kde_s_per_network_epoch": round(previous_per_epoch, 4),
        "kde_speedup": round(previous_per_epoch / kde_per_epoch, 2), "kde_max_abs_diff_bits": timed.max_diff,
        "projected_full_min": round(projected / 60, 1),
        "projected_full_previous_kde_min": round(projected_previous / 60, 1),
        "arithmetic_floor_min": round(floor / 60, 2), "projected_over_floor": round(projected / floor, 1),
        "full_kde_epochs": full["kde"], "cores": cores,
    }))


if __name__ == "__main__":
    main()
