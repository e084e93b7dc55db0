"""Starting and joining Ray: bundles no node can hold fail at once (or wait, on an autoscaling
cluster); a cluster that wants another token fails fast in one line; the helpers a killed
driver leaves behind do not disturb the next run; the embedded Ray listens on loopback only."""

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from lookinside import ray_setup, results
from lookinside.errors import UserError

STUDY = "information_bottleneck"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_started(proc: subprocess.Popen, log: str, timeout: float = 90) -> None:
    """Until `ray start --block` says its node is up (GCS, raylet and agents)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log) as f:
            text = f.read()
        if "Ray runtime started" in text:
            return
        if proc.poll() is not None:
            pytest.fail("ray start ended: " + text)
        time.sleep(0.3)
    pytest.fail("ray start did not finish in time: " + text)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# (10) Bundles that no node of a fixed-size cluster can hold.

def test_check_fits_wants_each_bundle_on_one_node():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        assert ray_setup.check_fits([[{"CPU": 1.0}, {"CPU": 2.0}], [{"CPU": 0.0}]], wait=False) is None
        # 3 CPUs in all, but no node has 3.
        with pytest.raises(UserError) as err:
            ray_setup.check_fits([[{"CPU": 1.0}], [{"CPU": 3.0}]], wait=False)
        message = str(err.value)
        assert "\n" not in message and "3 CPU" in message and "at most 2 CPU on one node" in message
        with pytest.raises(UserError) as err:
            ray_setup.check_fits([[{"CPU": 1.0, "GPU": 0.5}]], wait=False)
        assert "0.5 GPU" in str(err.value) and "0 GPU on one node" in str(err.value)
        # The user says the cluster autoscales: a note to print, no error.
        note = ray_setup.check_fits([[{"CPU": 3.0}]], wait=True)
        assert "\n" not in note and "autoscaler" in note and "3 CPU" in note
    finally:
        ray.shutdown()
        cluster.shutdown()


# (11) A head that wants a token this driver does not have.

HEAD_TOKEN = "head-token-" + "7" * 24

@pytest.fixture(scope="module")
def token_head():
    """A one-node cluster with token authentication on (its own HOME, token and temp dir, so
    nothing of it is seen by other Rays on this machine); killed, with its helpers, at the end."""
    home = tempfile.mkdtemp(prefix="lkh")
    temp_dir = tempfile.mkdtemp(prefix="lkr")   # short: Ray's socket paths live under it
    port = free_port()
    env = {**os.environ, "HOME": home, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": HEAD_TOKEN}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.pop("RAY_ADDRESS", None)
    log = os.path.join(home, "ray-start.log")
    with open(log, "w") as out:
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head",
                                 f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                                 "--disable-usage-stats", f"--temp-dir={temp_dir}", "--block"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_started(proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        kill_group(proc)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.parametrize("token", [None, "wrong-token-" + "3" * 24])
def test_join_without_the_clusters_token_fails_fast_in_one_line(token_head, tmp_path, token):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env["HOME"] = str(home)
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--preset", "smoke",
                          "--address", token_head, "--quiet", "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=120)
    took = time.time() - start
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "token authentication" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
    assert ("RAY_AUTH_MODE=token" in lines[0]) == (token is None)
    assert took < 30, took
    assert not (tmp_path / "r" / STUDY).exists()


def test_join_with_the_clusters_token_runs(token_head, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=HEAD_TOKEN)
    out = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--preset", "smoke",
                          "--set", "epochs=20", "--set", "kde_epochs=0", "--set", "logged_epochs=2", "--grid", "seed=0",
                          "--address", token_head, "--quiet", "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr


# (15) The helpers of a SIGKILLed driver's embedded Ray.

RUN_ARGS = ["--preset", "smoke", "--set", "epochs=3000", "--set", "kde_epochs=0", "--set", "logged_epochs=10",
            "--grid", "seed=0,1,2", "--checkpoint-seconds", "1", "--quiet"]


def test_resume_beside_the_helpers_of_a_killed_driver(tmp_path):
    root = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.Popen([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--results", str(root), *RUN_ARGS],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        deadline = time.time() + 240
        trials = root / STUDY / "trials"
        while not (trials.exists() and any(trials.rglob("part-*.parquet"))):
            if first.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed: {first.stderr.read()}")
            assert time.time() < deadline, "no trial committed in time"
            time.sleep(0.1)
        first.kill()            # the driver only: its Ray's helpers live on
        first.wait()
        (sweep,) = [p for p in (root / STUDY).iterdir() if p.name[:2] == "20"]
        out = subprocess.run([sys.executable, "-m", "lookinside.cli", "resume", str(sweep), "--quiet"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        n = len(json.loads((sweep / "sweep.json").read_text())["trials"])
        assert f"{n}/{n} trials finished" in out.stderr
        table = results.load(str(root), STUDY, "trials")
        assert table.num_rows == n == len(set(table["trial_id"].to_pylist()))
        assert set(table["status"].to_pylist()) == {"TERMINATED"}
    finally:
        kill_group(first)


# (16) The embedded Ray's servers listen on loopback only.

LISTENERS = textwrap.dedent('''
    import json, os, sys
    import ray
    from lookinside import ray_setup

    ray_setup.start_ray(None)

    @ray.remote
    class Alive:
        def ping(self):
            return 1

    actor = Alive.remote()
    ray.get(actor.ping.remote())                          # a worker up, listening too
    ray.get(ray.remote(lambda: 1).remote())
    sys.path.insert(0, sys.argv[1])
    from test_ray_setup import listening
    from ray._private import ray_constants
    print(json.dumps({"listening": listening(os.getpid()), "clusters_after": ray_constants.ENABLE_RAY_CLUSTER}))
    ray.shutdown()
''')


def test_embedded_ray_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", LISTENERS, os.path.dirname(__file__)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    found = report["listening"]
    names = " ".join(cmd for *_, cmd in found)
    assert "gcs_server" in names and "raylet" in names, found       # the listing sees Ray's servers
    exposed = [entry for entry in found if not is_loopback(entry[0])]
    assert not exposed, exposed
    assert report["clusters_after"]       # a later --address join resolves addresses as before


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def listening(root_pid: int) -> list[tuple[str, int, int, str]]:
    """(address, port, pid, command) of each TCP socket that root_pid or a descendant
    listens on, from /proc (psutil is not a dependency)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    pids, grew = {root_pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in pids} - pids
        pids |= more
        grew = bool(more)
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in owner:    # 0A: LISTEN
                continue
            hexhost, hexport = fields[1].split(":")
            raw = bytes.fromhex(hexhost)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))   # per-word byte order
            pid = owner[fields[9]]
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = "?"
            found.append((socket.inet_ntop(family, raw), int(hexport, 16), pid, cmd[:120]))
    return found
