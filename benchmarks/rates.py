"""What one core of this machine does at best, for the benchmarks' arithmetic floors."""

import time

import torch


def matmul_rate() -> float:
    """FLOP/s of one thread on a large float32 matmul, the best this core does."""
    torch.set_num_threads(1)
    a = torch.randn(1024, 1024)
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * 1024 ** 3 / (time.perf_counter() - start)
