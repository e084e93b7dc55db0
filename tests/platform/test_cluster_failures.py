"""Sweeps on a local multi-node Ray cluster that lose a worker node, their driver, or the node
of a trial's own actor, and still end with every trial's rows exactly once; packs sized from
the cluster's (fake) GPUs share them as planned. The cluster is a head and worker nodes, each
its own `ray start` on 127.0.0.1 (listening on loopback only), with token authentication on:
the driver joins with RAY_AUTH_MODE=token and the token in RAY_AUTH_TOKEN, as on a real
cluster.

Nothing here races the clock: a trial of tests/platform/cluster_toy.py holds at a chosen
step (its rows past the last checkpoint already in the store) until the test puts a file
`go` in its marker folder, and leaves a note saying where it runs; the test kills what it
kills while the trials wait, and waits for the notes that prove where the next attempts run.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings

import pyarrow.fs as pafs
import pytest

from lookinside import results
from lookinside.results import Store

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import cluster_toy  # noqa: E402
from test_ray_setup import is_loopback, listening  # noqa: E402

STUDY = "cluster_toy"
# `ray start`, with Ray's lookup of this node's address pinned to loopback. On Linux, Ray 2.60
# replaces --node-ip-address=127.0.0.1 with the machine's own address (resolve_ip_for_localhost)
# and its servers then listen on every interface; a node whose address is loopback listens on
# loopback only, as lookinside's embedded Ray does (ray_setup._loopback_node).
RAY_START = [sys.executable, "-c", "import sys, ray._private.services as s; "
             "s.get_node_ip_address = lambda address=None: '127.0.0.1'; "
             "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())", "start"]
WAIT_S = 120
BUCKET = "cluster-results"

# Node liveness as the cluster's GCS sees it, from a child process (the test process stays
# out of Ray): node id -> [alive, node manager port, node address].
_NODES = """
import json, sys
from ray._raylet import GcsClient
from ray.core.generated.gcs_pb2 import GcsNodeInfo
nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)
print(json.dumps({n.node_id.hex(): [n.state == GcsNodeInfo.GcsNodeState.ALIVE, n.node_manager_port,
                                     n.node_manager_address] for n in nodes.values()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = WAIT_S, proc: subprocess.Popen | None = None, log=None):
    """Polls check() until it returns something true; fails naming `what` (with the driver's
    stderr when the driver ended first)."""
    deadline = time.time() + timeout
    while True:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver ended (exit {proc.returncode}) before {what}: {read(log)[-3000:]}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f": {read(log)[-3000:]}" if log else ""))
        time.sleep(0.2)


def read(path) -> str:
    try:
        return pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return ""


class LocalCluster:
    """A head (no CPU, as in cluster.yaml: it takes no trials) and worker nodes, each a
    `ray start --block` with its own process group, temp dir and ports, on 127.0.0.1, with
    token authentication. Killing a node SIGKILLs every process of it (raylet, agents, the
    trials' worker processes), as a lost machine would."""

    def __init__(self, workdir: str, env: dict):
        self.workdir, self.env = workdir, env
        # The driver joins at 127.0.0.1 as given: ray.init would otherwise resolve a loopback
        # address to the machine's own, where nothing of this cluster listens. (The variable
        # turns off that lookup; Ray reads it as "multi-node clusters on Windows or macOS".)
        self.driver_env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, dict] = {}
        self._count = 0

    def _start(self, name: str, head: bool, cpus: float, gpus: int, resources: dict | None) -> None:
        temp = tempfile.mkdtemp(prefix="lkc", dir="/tmp")     # short: Ray's socket paths live under it
        manager = free_port()
        args = [*RAY_START, "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
                "--disable-usage-stats", f"--num-cpus={cpus}", f"--num-gpus={gpus}",
                f"--node-manager-port={manager}", f"--object-manager-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                "--min-worker-port=0", "--max-worker-port=0", f"--object-store-memory={80 << 20}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        args += ["--head", f"--port={self.port}", "--include-dashboard=false"] if head else [
            f"--address={self.address}"]
        log = os.path.join(self.workdir, f"ray-start-{name}.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.nodes[name] = {"proc": proc, "temp": temp, "log": log, "port": manager, "id": None,
                            "standard": not head and gpus == 1 and cpus == 2 and not resources}

    def _wait_up(self, names: list[str]) -> None:
        for name in names:
            node = self.nodes[name]
            wait_until(f"node {name} to start", lambda n=node: self._started(n))
        for name in names:
            node = self.nodes[name]
            node["id"] = wait_until(f"node {name} to join", lambda n=node: next(
                (i for i, (alive, port, _) in self.node_states().items() if alive and port == n["port"]), None))
        assert {address for _, _, address in self.node_states().values()} == {"127.0.0.1"}

    def _started(self, node: dict) -> bool:
        if node["proc"].poll() is not None:
            pytest.fail(f"ray start ended: {read(node['log'])}")
        return "Ray runtime started" in read(node["log"])

    def start(self) -> None:
        self._start("head", True, 0, 0, None)
        self._wait_up(["head"])
        self.add_workers(2)

    def add_workers(self, n: int, cpus: float = 2, gpus: int = 1, resources: dict | None = None) -> list[str]:
        names = []
        for _ in range(n):
            self._count += 1
            names.append(f"w{self._count}")
            self._start(names[-1], False, cpus, gpus, resources)
        self._wait_up(names)
        return names

    def node_states(self) -> dict[str, list]:
        out = subprocess.run([sys.executable, "-c", _NODES, self.address], env=self.env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def alive(self) -> dict[str, str]:
        """name -> node id of the nodes alive now."""
        states = self.node_states()
        return {name: n["id"] for name, n in self.nodes.items() if n["id"] and states.get(n["id"], [False])[0]}

    def name_of(self, node_id: str) -> str:
        return next(name for name, n in self.nodes.items() if n["id"] == node_id)

    def kill(self, name: str) -> None:
        """SIGKILLs every process of the node, then waits until the GCS has it dead."""
        node = self.nodes[name]
        _kill_group(node["proc"])
        wait_until(f"the GCS to see node {name} dead", lambda: not self.node_states()[node["id"]][0])

    def reset(self) -> None:
        """Back to the head and two standard workers (2 CPUs, 1 fake GPU each), whatever a
        test left: extra nodes go, lost ones are replaced."""
        alive = self.alive()
        for name in list(alive):
            if name != "head" and not self.nodes[name]["standard"]:
                self.kill(name)
        standard = [name for name in alive if self.nodes[name]["standard"]]
        for name in standard[2:]:
            self.kill(name)
        if len(standard) < 2:
            self.add_workers(2 - len(standard))

    def standard_ids(self) -> set[str]:
        return {i for name, i in self.alive().items() if self.nodes[name]["standard"]}

    def shutdown(self) -> None:
        for node in self.nodes.values():
            _kill_group(node["proc"])
        for node in self.nodes.values():
            shutil.rmtree(node["temp"], ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILLs a process, its process group and every process below it (Ray's worker
    processes, children of the raylet, run in sessions of their own)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(found - {root})


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on loopback for the whole module (the nodes are started with its
    endpoint in their environment); None without moto."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", access_key="testing",
                           secret_key="testing", allow_bucket_creation=True)
    fs.create_dir(BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3_endpoint, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cluster")
    home = workdir / "home"          # no ~/.ray/auth_token: the token comes from the environment
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and not k.startswith("AWS_")}
    env.update(
        HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        LOOKINSIDE_STUDIES="cluster_toy",
        # A killed node (its raylet refuses the GCS's health checks) is declared dead after
        # about 1.5 s, not 15 s; a slow but live one still has 3 s to answer each check.
        RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="3000", RAY_health_check_failure_threshold="3")
    if s3_endpoint:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=s3_endpoint)
    c = LocalCluster(str(workdir), env)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


_DRIVERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_driver_left():
    """A test that fails half-way leaves no driver running into the next one."""
    yield
    while _DRIVERS:
        _kill_group(_DRIVERS.pop())


class Driver:
    """A `lookinside` command on the cluster, its output in files (a pipe nobody reads
    could fill up and stop it)."""

    def __init__(self, cluster: LocalCluster, args: list[str], workdir: pathlib.Path, name: str):
        self.log = workdir / f"{name}.err"
        with open(workdir / f"{name}.out", "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "lookinside.cli", *args, "--address", cluster.address,
                                          "--quiet"], env=cluster.driver_env, stdout=out, stderr=err,
                                         start_new_session=True)
        _DRIVERS.append(self.proc)

    def wait(self, timeout: float = 240) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the driver did not finish in {timeout} s: {read(self.log)[-3000:]}")
        return self.proc.returncode, read(self.log)

    def kill(self) -> None:
        _kill_group(self.proc)

    def sweep_id(self) -> str:
        found = wait_until("the sweep to be planned", lambda: re.search(r"^sweep (\S+):", read(self.log), re.M),
                           proc=self.proc, log=self.log)
        return found.group(1)


def run(cluster: LocalCluster, root: str, markers: pathlib.Path, workdir: pathlib.Path, *flags: str) -> Driver:
    markers.mkdir(exist_ok=True)
    return Driver(cluster, ["run", STUDY, "--preset", "smoke", "--results", root, "--set", f"marker_dir={markers}",
                            *flags], workdir, "run")


def wait_notes(driver: Driver, markers: pathlib.Path, n: int) -> list[dict]:
    """The notes of held attempts, once there are n."""
    def enough():
        found = cluster_toy.notes(str(markers))
        return found if len(found) >= n else None
    return wait_until(f"{n} held attempts", enough, proc=driver.proc, log=driver.log)


def release(markers: pathlib.Path) -> None:
    (markers / cluster_toy.GO).touch()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


NOTABLE = ("Error", "error", "fail", "starting it again", "died", "dead")


def why_retried(cluster: LocalCluster, *logs: str) -> str:
    """The lines of the drivers' stderr and of the nodes' logs that say why an attempt ended
    (for failure messages: a trial's own output stays on its node)."""
    found = [f"driver: {line}" for log in logs for line in log.splitlines() if any(n in line for n in NOTABLE)]
    for node in cluster.nodes.values():
        for path in sorted(pathlib.Path(node["temp"]).glob("session_2*/logs/*")):    # not session_latest
            if path.is_file() and path.suffix in (".err", ".out", ".log"):
                found += [f"{path.name}: {line}" for line in read(path).splitlines()
                          if any(n in line for n in NOTABLE)]
    return "\n".join(found[-60:])


def manifest_of(root: str, sweep_id: str) -> dict:
    return Store(root).read_json(f"{Store(root).sweep_dir(STUDY, sweep_id)}/sweep.json")


def check_every_row_once(root: str, sweep_id: str) -> dict[str, dict]:
    """Every trial of the sweep has one TERMINATED `trials` row and exactly one final set of
    rows in each table (each step once, with its value; one kept artifact per step, readable
    and not duplicated), and nothing is left in staging. Returns the trials rows by id."""
    manifest = manifest_of(root, sweep_id)
    store = Store(root)
    ids = sorted(t["trial_id"] for t in manifest["trials"])
    seeds = {t["trial_id"]: t["config"]["seed"] for t in manifest["trials"]}
    steps = {t["trial_id"]: t["config"]["steps"] for t in manifest["trials"]}
    trials = results.load(root, STUDY, "trials", sweep_id).to_pylist()
    assert sorted(t["trial_id"] for t in trials) == ids                           # one row each, none missing
    assert {t["status"] for t in trials} == {"TERMINATED"}, [t["error"] for t in trials]
    for table in ("values", "kept"):
        rows = results.load(root, STUDY, table, sweep_id).to_pylist()
        by_trial = collections.defaultdict(list)
        for r in rows:
            by_trial[r["trial_id"]].append(r)
        assert sorted(by_trial) == ids, table
        for tid, mine in by_trial.items():
            assert sorted(r["step"] for r in mine) == list(range(steps[tid])), (table, tid, mine)
            if table == "values":
                assert all(r["value"] == seeds[tid] * 100 + r["step"] for r in mine)
            else:     # the kept files, read back through the store's file system (local or S3)
                folder = store.artifact_dir(STUDY, sweep_id, tid, "x").rsplit("/", 1)[0]
                names = sorted(i.base_name for i in store.fs.get_file_info(pafs.FileSelector(folder)))
                assert names == [f"checkpoint-{s:04d}" for s in range(steps[tid])], (tid, names)
                for r in mine:
                    assert r["uri"] == store.uri_of(f"{folder}/checkpoint-{r['step']:04d}")
                    path = r["uri"].split("://", 1)[1] if "://" in r["uri"] else r["uri"]
                    with store.fs.open_input_stream(f"{path}/value.txt") as f:
                        assert f.read().decode() == str(seeds[tid] * 100 + r["step"])
    staged = store.fs.get_file_info(pafs.FileSelector(f"{store.sweep_dir(STUDY, sweep_id)}/staging",
                                                       recursive=True, allow_not_found=True))
    assert not [i.path for i in staged if i.type == pafs.FileType.File]
    return {t["trial_id"]: t for t in trials}


def attempts_of(root: str, sweep_id: str) -> dict[str, list[dict]]:
    """trial id -> what each of its attempts recorded, in order (first attempt first)."""
    found = collections.defaultdict(list)
    for r in results.load(root, STUDY, "attempts", sweep_id).to_pylist():
        found[r["trial_id"]].append(r)
    return {tid: sorted(rows, key=lambda r: r["resumed_from"]) for tid, rows in found.items()}


def values_of(root: str, sweep_id: str) -> dict[str, list[tuple[int, int]]]:
    """trial id -> (step, resumed_from) of its values rows, by step."""
    found = collections.defaultdict(list)
    for r in results.load(root, STUDY, "values", sweep_id).to_pylist():
        found[r["trial_id"]].append((r["step"], r["resumed_from"]))
    return {tid: sorted(rows) for tid, rows in found.items()}


# (3) Packs sized from the cluster's GPUs share each GPU as planned.

def test_packs_are_sized_from_the_clusters_gpus_and_share_each_gpu(cluster, tmp_path):
    cluster.reset()
    workers = cluster.standard_ids()
    root, markers = str(tmp_path / "results"), tmp_path / "markers"
    # 8 members; 2 workers x 1 GPU at 0.5 GPU per trial make 4 slots (their 4 CPUs at 0.5 per
    # trial would make 8): packs of 2, and each pack holds until all 4 run at once.
    driver = run(cluster, root, markers, tmp_path, "--grid", "seed=0,1,2,3,4,5,6,7", "--set", "hold_at=0",
                 "--set", "steps=2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5")
    sweep_id = driver.sweep_id()
    notes = wait_notes(driver, markers, 4)
    # Every server of the cluster, its trials' workers and the driver listens on loopback only.
    found = [entry for pid in [driver.proc.pid, *(n["proc"].pid for n in cluster.nodes.values())]
             for entry in listening(pid)]
    assert sum("raylet" in cmd for *_, cmd in found) >= 6 and sum("ImplicitFunc" in cmd for *_, cmd in found) >= 4
    assert not [entry for entry in found if not is_loopback(entry[0])]
    release(markers)
    code, err = driver.wait()
    assert code == 0, err[-3000:]
    assert "8 trials of cluster_toy (smoke) in 4 packs" in err and "8/8 trials finished" in err

    manifest = manifest_of(root, sweep_id)
    assert manifest["resources"]["pack"] == 2 and sorted(map(len, manifest["packs"])) == [2, 2, 2, 2]
    assert manifest["bundles"] == [[{"CPU": 0.5, "GPU": 0.5}]] * 4
    # While all four packs held at once, each GPU (a node's GPU id) served exactly two.
    assert len(notes) == 4
    shares = collections.Counter((n["node"], n["gpu_ids"]) for n in notes)
    assert shares == {(w, "0"): 2 for w in workers}, shares
    # The same from the committed tables: each member's attempt recorded its pack's node and
    # GPU, as its held note did, and `trials.node` is that node.
    trials = check_every_row_once(root, sweep_id)
    attempts = attempts_of(root, sweep_id)
    assert sorted(m for n in notes for m in n["trial_ids"]) == sorted(trials)
    for note in notes:
        members = note["trial_ids"]
        if any(trials[m]["attempt"] > 1 for m in members):
            # An attempt that ended early says nothing of the plan. This happened once in about
            # twenty CI-like runs, under load, and no log survived to say why: now the warning
            # does. The retry's rows were checked above (every row once); retries have their
            # own tests below.
            warnings.warn(f"pack of {members} was retried: {why_retried(cluster, err)}", stacklevel=1)
            continue
        for m in members:
            assert [(a["node"], a["gpu_ids"]) for a in attempts[m]] == [(note["node"], note["gpu_ids"])], (
                attempts[m], why_retried(cluster, err))
            assert trials[m]["node"] == note["node"]


# (1) A worker node is lost mid-sweep: its trials are retried elsewhere, from their checkpoints.

def test_a_worker_node_killed_mid_sweep_loses_and_duplicates_nothing(cluster, tmp_path):
    cluster.reset()
    root, markers = str(tmp_path / "results"), tmp_path / "markers"
    # 4 trials of 1 CPU on 2 workers of 2 CPUs: two on each; each holds at step 1 with the
    # rows of step 1 written out past its step-0 checkpoint.
    driver = run(cluster, root, markers, tmp_path, "--set", "hold_at=1", "--set", "steps=3", "--pack", "1",
                 "--max-failures", "2")
    sweep_id = driver.sweep_id()
    first = wait_notes(driver, markers, 4)
    by_node = collections.Counter(n["node"] for n in first)
    assert sorted(by_node.values()) == [2, 2] and set(by_node) == cluster.standard_ids()
    lost = first[0]["node"]
    survivor = next(n for n in by_node if n != lost)
    lost_trials = {n["trial_ids"][0] for n in first if n["node"] == lost}
    cluster.kill(cluster.name_of(lost))
    assert not any(pid_alive(n["pid"]) for n in first if n["node"] == lost)    # the trials died with it
    (replacement,) = cluster.add_workers(1)
    new = cluster.nodes[replacement]["id"]
    # The survivor's CPUs are held, so the retries can only run on the new node.
    retried = wait_notes(driver, markers, 6)
    again = [n for n in retried if n not in first]
    assert {n["trial_ids"][0] for n in again} == lost_trials and {n["node"] for n in again} == {new}
    release(markers)
    code, err = driver.wait()
    assert code == 0, err[-3000:]
    assert "4/4 trials finished" in err

    trials = check_every_row_once(root, sweep_id)
    attempts, values = attempts_of(root, sweep_id), values_of(root, sweep_id)
    for tid, t in trials.items():
        if tid in lost_trials:
            # Retried once, on the new node, from the checkpoint after step 0: step 1 (whose
            # rows the lost attempt had written out) and step 2 come from the retry, once.
            assert (t["attempt"], t["node"]) == (2, new)
            assert [(a["node"], a["resumed_from"]) for a in attempts[tid]] == [(lost, -1), (new, 1)]
            assert values[tid] == [(0, -1), (1, 1), (2, 1)]
        else:
            assert (t["attempt"], t["node"]) == (1, survivor)
            assert [(a["node"], a["resumed_from"]) for a in attempts[tid]] == [(survivor, -1)]
            assert values[tid] == [(0, -1), (1, -1), (2, -1)]
    assert {t["node"] for t in trials.values()} == {survivor, new}       # committed on two nodes


# (4) A trial whose own actor runs on another node loses that node.

def test_a_trial_that_loses_its_actors_node_is_retried_from_its_checkpoint(cluster, tmp_path):
    cluster.reset()
    workers = cluster.standard_ids()
    (helper_node,) = cluster.add_workers(1, cpus=1, gpus=0, resources={"helper": 1})
    helper_id = cluster.nodes[helper_node]["id"]
    root, markers = str(tmp_path / "results"), tmp_path / "markers"
    # Bundle 0 (the trial) needs 1 CPU, bundle 1 (its helper actor) 1 CPU and `helper`: only
    # the helper node has that, and its one CPU cannot hold bundle 0 too.
    driver = run(cluster, root, markers, tmp_path, "--grid", "seed=3", "--set", "helper=true", "--set", "hold_at=1",
                 "--set", "steps=3", "--max-failures", "2")
    sweep_id = driver.sweep_id()
    (note,) = wait_notes(driver, markers, 1)
    assert note["helper_node"] == helper_id and note["node"] in workers
    cluster.kill(helper_node)
    assert pid_alive(note["pid"])                 # the trial itself lives on; only its actor is gone
    (second,) = cluster.add_workers(1, cpus=1, gpus=0, resources={"helper": 1})
    release(markers)
    code, err = driver.wait()
    assert code == 0, err[-3000:]
    assert "1/1 trials finished" in err

    trials = check_every_row_once(root, sweep_id)
    ((tid, t),) = trials.items()
    (first_attempt, retry) = attempts_of(root, sweep_id)[tid]
    assert (first_attempt["helper_node"], first_attempt["resumed_from"]) == (helper_id, -1)
    assert (retry["helper_node"], retry["resumed_from"]) == (cluster.nodes[second]["id"], 1)
    assert first_attempt["node"] in workers and retry["node"] in workers and t["node"] == retry["node"]
    assert t["attempt"] == 2
    assert values_of(root, sweep_id)[tid] == [(0, -1), (1, 1), (2, 1)]


# (2) and S3: the driver is killed mid-sweep; `resume` finishes it (from a local root or S3).

@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_driver_killed_mid_sweep_resumes_without_loss_or_duplicates(cluster, s3_endpoint, tmp_path, where,
                                                                     monkeypatch):
    if where == "s3":
        if not s3_endpoint:
            pytest.skip("moto is not installed")
        for name, value in cluster.env.items():       # this process reads the tables back from S3 too
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
    cluster.reset()
    workers = cluster.standard_ids()
    root = str(tmp_path / "results") if where == "local" else f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/lab"
    markers = tmp_path / "markers"
    # 6 trials: 3 finish at once, 3 hold at step 1; 4 slots, so all of them get to run.
    driver = run(cluster, root, markers, tmp_path, "--grid", "seed=0,1,2", "--grid", "hold_at=-1,1",
                 "--set", "steps=3", "--pack", "1")
    sweep_id = driver.sweep_id()
    store = Store(root)
    held = wait_notes(driver, markers, 3)
    wait_until("the other 3 trials to commit", lambda: len(store.trial_files(STUDY, "trials", sweep_id)) == 3,
               proc=driver.proc, log=driver.log)
    held_trials = {n["trial_ids"][0] for n in held}
    assert len({n["node"] for n in held}) == 2            # 3 held trials on 2-CPU nodes: both nodes
    manifest = manifest_of(root, sweep_id)
    held_packs = {i for i, pack in enumerate(manifest["packs"])
                  if manifest["trials"][pack[0]]["trial_id"] in held_trials}
    # Ray Tune uploads its experiment state in the background: a driver killed before the
    # upload after a checkpoint lands resumes that trial from an older state (see
    # tune_checkpoints). Kill it once the stored state has each held trial's checkpoint.
    wait_until("Tune's stored experiment state to list the held trials' checkpoints",
               lambda: all(tune_checkpoints(store, sweep_id).get(i) == "checkpoint_000000" for i in held_packs),
               proc=driver.proc, log=driver.log)
    done_before = {tid: files for tid, files in committed_files(store, sweep_id).items() if tid not in held_trials}
    assert len(done_before) == 3
    driver.kill()
    # Ray ends the actors of a driver that is gone; only then may the held trials go on.
    wait_until("the dead driver's trials to end", lambda: not any(pid_alive(n["pid"]) for n in held))
    release(markers)
    resumed = Driver(cluster, ["resume", f"{root}/{STUDY}/{sweep_id}"], tmp_path, "resume")
    code, err = resumed.wait()
    assert code == 0, err[-3000:]
    assert "6/6 trials finished" in err

    trials = check_every_row_once(root, sweep_id)
    attempts, values = attempts_of(root, sweep_id), values_of(root, sweep_id)
    markers_per_pack = {i: store.count(f"{store.sweep_dir(STUDY, sweep_id)}/attempts/pack{i:05d}")
                        for i in range(len(manifest["packs"]))}
    for index, pack in enumerate(manifest["packs"]):
        tid = manifest["trials"][pack[0]]["trial_id"]
        if tid in held_trials:
            # Continued from the checkpoint after step 0, on one of the workers.
            assert trials[tid]["attempt"] == 2 and trials[tid]["node"] in workers
            assert [a["resumed_from"] for a in attempts[tid]] == [-1, 1], (
                tid, index, why_retried(cluster, read(driver.log), err))
            assert values[tid] == [(0, -1), (1, 1), (2, 1)]
        else:
            # Committed before the kill: not run again, its files untouched.
            assert trials[tid]["attempt"] == 1 and markers_per_pack[index] == 1
            assert committed_files(store, sweep_id)[tid] == done_before[tid]
            assert values[tid] == [(0, -1), (1, -1), (2, -1)]
    first_nodes = {attempts[tid][0]["node"] for tid in held_trials}
    assert first_nodes == {n["node"] for n in held} and len(first_nodes) == 2


def tune_checkpoints(store: Store, sweep_id: str) -> dict[int, str | None]:
    """pack index -> the latest checkpoint folder that Ray Tune's experiment state, as stored
    in the sweep folder now, has registered for that pack's trial (None before one; {} before
    there is a state). Tune writes the state on the driver and uploads it in the background;
    a resume reads it from the store and continues each trial from the checkpoint its
    checkpoint manager holds. Not `last_result.checkpoint_dir_name`: Tune sets that when the
    result arrives and registers the checkpoint only when its `save` task returns, so a state
    stored in between names a checkpoint the resume will not use (the trial starts again).
    (Read from Ray 2.60's experiment_state-*.json, where the manager is a pickle that holds
    its checkpoints' paths.)"""
    folder = store.sweep_dir(STUDY, sweep_id)
    names = sorted(i.path for i in store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
                   if os.path.basename(i.path).startswith("experiment_state-") and i.path.endswith(".json"))
    if not names:
        return {}
    try:
        with store.fs.open_input_stream(names[-1]) as f:
            state = json.loads(f.read())
    except (OSError, ValueError):      # being rewritten: ask again
        return {}
    found = {}
    for trial, meta in state["trial_data"]:
        manager = bytes.fromhex(json.loads(meta)["checkpoint_manager"]["value"])
        folders = re.findall(rb"checkpoint_\d{6}", manager)
        found[json.loads(trial)["config"]["pack"]] = max(folders).decode() if folders else None
    return found


def committed_files(store: Store, sweep_id: str) -> dict[str, list[str]]:
    """trial id -> its committed files in every table."""
    found = collections.defaultdict(list)
    for table in (*cluster_toy.TABLES, "trials"):
        for tid, paths in store.trial_files(STUDY, table, sweep_id).items():
            found[tid] += sorted(paths)
    return dict(found)
