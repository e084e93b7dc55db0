"""Starting or joining Ray, and what it has to run trials on."""

from __future__ import annotations

import logging
import os
import socket

from lookinside.errors import UserError, one_line


def start_ray(address: str | None) -> None:
    """Joins the cluster at `address`, or starts an embedded local Ray on this machine's
    CPUs (no dashboard; token authentication stays on, Ray's default)."""
    import ray

    if ray.is_initialized():
        return
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to join is the user's to fix
            raise UserError(f"cannot join the Ray cluster at {address}: {one_line(err)}") from None
    else:
        # address="local": a new Ray of our own, never one that happens to run on this machine.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **kwargs)


def _check_reachable(address: str) -> None:
    """Fails fast on an address nothing listens at (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


def capacity() -> dict[str, float]:
    """CPUs and GPUs that trials can use: those of the Ray started or joined (start_ray
    first), the whole cluster's on --address."""
    import ray
    total = ray.cluster_resources()
    return {"CPU": float(total.get("CPU", 0)), "GPU": float(total.get("GPU", 0))}


def local_gpus() -> int:
    import torch
    return torch.cuda.device_count()


def node() -> tuple[str | None, str]:
    """The Ray node id this process runs on (None outside Ray) and its hostname."""
    try:
        import ray
        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - outside a Ray worker there is no node id
        node_id = None
    return node_id, socket.gethostname()
