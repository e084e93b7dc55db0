"""One trial: a pack of configs of one experiment and method, dispatched to its module."""

from __future__ import annotations

from lookinside.studies.gradient_failures.config import GFConfig


def _module(experiment: str):
    # Imported on use: a trial loads only its own experiment's code.
    if experiment == "parity":
        from lookinside.studies.gradient_failures import parity as module
    elif experiment in ("tuples", "tuples_snr"):
        from lookinside.studies.gradient_failures import tuples as module
    elif experiment == "stocks":
        from lookinside.studies.gradient_failures import stocks as module
    elif experiment == "piecewise_linear":
        from lookinside.studies.gradient_failures import curves as module
    else:
        from lookinside.studies.gradient_failures import flat as module
    return module


def train(configs: list[GFConfig], session) -> None:
    _module(configs[0].experiment).train(configs, session)


def member_bytes(c: GFConfig) -> int:
    """Parameters, gradients and optimiser state, plus a batch's activations, in float32 (rough)."""
    width = {"parity": 10 * (c.d or 1) * ((c.d or 1) + 2), "stocks": (c.d or 1) * (c.k or 1),
             "piecewise_linear": 100 * 500 + (c.curve_length or 1) ** 2, "flat_activation": 3 * c.hidden**2,
             }.get(c.experiment, 300_000)
    return 4 * (4 * width + (c.batch_size or 1) * 20_000)
