"""Starting or joining Ray, and what it has to run trials on."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys

from lookinside.errors import UserError, one_line

# Where Ray 2.60 reads a client's token, first found wins (it sends one only in RAY_AUTH_MODE=token).
_GIVE_TOKEN = ("give the cluster's token (`ray get-auth-token` on its head) in RAY_AUTH_TOKEN, "
               "or in a file named by RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token)")


def start_ray(address: str | None) -> None:
    """Joins the cluster at `address`, or starts an embedded local Ray on this machine's
    CPUs (no dashboard; token authentication stays on, Ray's default; every server it
    starts listens on loopback only)."""
    import ray

    if ray.is_initialized():
        return
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address:
        _check_reachable(address)
        _check_token(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to join is the user's to fix
            from ray.exceptions import AuthenticationError
            if isinstance(err, AuthenticationError):
                raise UserError(_token_problem(address)) from None
            raise UserError(f"cannot join the Ray cluster at {address}: {_why(err)}") from None
    else:
        # address="local": a new Ray of our own, never one that happens to run on this machine
        # (RAY_ADDRESS, the last `ray start`, or the helpers a killed driver left behind).
        # Ray warns at every start that token authentication is on; the README says it once.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        with _loopback_node():
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **kwargs)


@contextlib.contextmanager
def _loopback_node():
    """Makes the embedded Ray's node address loopback, so that its GCS, raylet, workers and
    agents listen on loopback only (Ray's servers bind to loopback when the node address is
    a loopback one, else to every interface). Ray 2.60 takes the machine's address for a
    new node unless multi-node clusters are off, as they are by default on macOS and Windows
    (ray_constants.ENABLE_RAY_CLUSTER, from env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import):
    off while this Ray starts, as it was after (so that a later --address join is unchanged)."""
    try:
        from ray._private import ray_constants
        before = ray_constants.ENABLE_RAY_CLUSTER
    except (ImportError, AttributeError):  # another Ray: it binds as it does
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _host_port(address: str) -> tuple[str, int] | None:
    """A plain HOST:PORT address's parts; None for auto, ray:// (Ray Client) and the like."""
    if address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """Fails fast on an address nothing listens at (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


def _check_token(address: str) -> None:
    """Fails fast, with what to do, when the cluster turns this client's token (or its lack
    of one) away: ray.init would log InvalidAuthToken once a second for about 20 s and end
    with a message that leaves the cause out. A GCS client of Ray's own, which sends the
    token ray.init would, is turned away at once with AuthenticationError; it runs in a
    child process (its C++ log stays there, and a GCS that does not answer costs at most
    _TOKEN_CHECK_S). Any other outcome is left to ray.init."""
    if _host_port(address) is None:
        return
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    from ray.exceptions import AuthenticationError

    if is_token_auth_enabled():
        # Without a token, Ray's GCS client would abort the process (a failed check).
        try:
            missing = None if _has_token() else "no token was found"
        except AuthenticationError:  # RAY_AUTH_TOKEN_PATH names no readable file
            missing = f"RAY_AUTH_TOKEN_PATH ({os.environ.get('RAY_AUTH_TOKEN_PATH')}) is no readable token file"
        if missing:
            raise UserError(f"cannot join the Ray cluster at {address}: RAY_AUTH_MODE is 'token' but "
                            f"{missing}: {_GIVE_TOKEN}")
    try:
        turned_away = subprocess.run([sys.executable, "-c", _TOKEN_CHECK, address], stdin=subprocess.DEVNULL,
                                     capture_output=True, timeout=_TOKEN_CHECK_S).returncode == 3
    except (subprocess.TimeoutExpired, OSError):
        return
    if turned_away:
        raise UserError(_token_problem(address))


_TOKEN_CHECK_S = 15
_TOKEN_CHECK = """
import sys
from ray._raylet import GcsClient
from ray.exceptions import AuthenticationError
try:
    GcsClient(address=sys.argv[1])
except AuthenticationError:
    sys.exit(3)
except Exception:
    sys.exit(4)
"""


def _token_problem(address: str) -> str:
    """One line: the cluster wants a token, which one this client sent (if any), what to do."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    head = f"cannot join the Ray cluster at {address}: it requires token authentication"
    if not is_token_auth_enabled():
        return f"{head} and no token was sent (RAY_AUTH_MODE is not 'token'): set RAY_AUTH_MODE=token and {_GIVE_TOKEN}"
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "RAY_AUTH_TOKEN"
    else:
        source = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join("~", ".ray", "auth_token")
    return f"{head} and turned away the token from {source}: {_GIVE_TOKEN}"


def _has_token() -> bool:
    from ray._raylet import AuthenticationTokenLoader
    return AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)


def _why(err: BaseException) -> str:
    """ray.init's failure in one line, with its cause where Ray's own message leaves it out
    ("Failed to connect to Ray cluster at HOST:PORT" from a RuntimeError whose message ends
    with the last connection attempt's traceback: its last line names the error)."""
    line = one_line(err)
    if err.__cause__ is not None:
        cause = one_line(err.__cause__, last=True)
        if cause not in line:
            line = f"{line} ({cause})"
    return line


def check_fits(bundles: list[list[dict[str, float]]], wait: bool) -> str | None:
    """After Ray is joined: every placement-group bundle of every pack must fit on one alive
    node, or Tune waits for it forever. Raises UserError naming the first bundle that fits
    nowhere and the most any one node has of what it asks; with `wait` (the cluster
    autoscales) returns a one-line note instead. None when every bundle fits."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for bundle in _distinct(b for pack in bundles for b in pack):
        if any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items()) for node in nodes):
            continue
        most = ", ".join(f"{max((node.get(k, 0.0) for node in nodes), default=0.0):g} {k}" for k in bundle)
        if wait:
            return (f"no node has {_describe(bundle)} (at most {most} on one node): the sweep waits "
                    f"for the autoscaler to add a node with {_describe(bundle)}")
        raise UserError(f"a trial's bundle of {_describe(bundle)} fits on no node of the Ray cluster "
                        f"(at most {most} on one node); use a smaller --cpus-per-trial/--gpus-per-trial, "
                        f"or --wait-for-nodes if the cluster autoscales")
    return None


def _distinct(bundles) -> list[dict[str, float]]:
    seen, out = set(), []
    for bundle in bundles:
        need = {k: float(v) for k, v in bundle.items() if v}
        key = tuple(sorted(need.items()))
        if key not in seen:
            seen.add(key)
            out.append(need)
    return out


def _describe(bundle: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in bundle.items()) or "nothing"


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
