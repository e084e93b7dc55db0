"""cluster_toy: a toy study for tests on a local multi-node Ray cluster (test_cluster_failures.py).

Each trial counts `steps` steps. At every step it adds a `values` row, keeps a small file as an
artifact (`checkpoint-<step>`, listed in `kept`) and saves a checkpoint. Each attempt records
where it ran in `attempts`: the Ray node id, the GPU ids Ray gave it and, with `helper`, the
node of its helper actor. What a test needs to act at a known moment:

- `hold_at`: at that step, once the step's rows are written out past the last checkpoint
  (so a retry that kept them would duplicate them), the trial leaves a note
  `held-*.json` in `marker_dir` (trial ids, node, GPU ids, helper node, pid) and waits until
  the test puts a file `go` there. Every attempt holds until `go` exists.
- `helper`: the trial starts a Ray actor in bundle 1 of its placement group, which asks for
  the custom resource `helper` (so it runs on a node that has it), takes every value from it,
  and asks it once more after a hold: a helper lost meanwhile fails the attempt.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
import uuid

import pyarrow as pa

from lookinside.config import param
from lookinside.study import Preset, Study

GO = "go"
HOLD_LIMIT_S = 300      # a hold that is never released fails the trial instead of hanging


@dataclasses.dataclass(frozen=True)
class ClusterToyConfig:
    steps: int = param(3, "steps to count", low=1, high=1000)
    seed: int = param(0, "member seed (values are seed * 100 + step)", low=0)
    hold_at: int = param(-1, "at this step, after its rows are written out and before its checkpoint, "
                             "leave a note in marker_dir and wait for the file `go` there; -1 never", low=-1)
    marker_dir: str = param("", "where held trials leave their notes and the test puts `go`")
    helper: bool = param(False, "values come from an actor in bundle 1 of the trial's placement group, "
                                "on a node with the custom resource `helper`")


TABLES = {
    "values": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("value", pa.int64()),
                         ("resumed_from", pa.int64())]),
    "attempts": pa.schema([("trial_id", pa.string()), ("node", pa.string()), ("gpu_ids", pa.string()),
                           ("helper_node", pa.string()), ("resumed_from", pa.int64())]),
    "kept": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("uri", pa.string())]),
}


class Helper:
    """The trial's own actor (in bundle 1)."""

    def node(self) -> str:
        import ray
        return ray.get_runtime_context().get_node_id()

    def values(self, seeds: list[int], step: int) -> list[int]:
        return [seed * 100 + step for seed in seeds]


def resources(config: ClusterToyConfig, options) -> list[dict]:
    trial = {"CPU": options.cpus_per_trial, "GPU": options.gpus_per_trial}
    return [trial, {"CPU": 1, "helper": 1}] if config.helper else [trial]


def _start_helper():
    import ray
    from ray.util.placement_group import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(get_current_placement_group(), placement_group_bundle_index=1)
    return ray.remote(Helper).options(num_cpus=1, scheduling_strategy=strategy).remote()


def _hold(config: ClusterToyConfig, note: dict) -> None:
    with open(os.path.join(config.marker_dir, f".held-{uuid.uuid4().hex}"), "w") as f:
        json.dump(note, f)
    os.replace(f.name, os.path.join(config.marker_dir, f"held-{uuid.uuid4().hex}.json"))
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not os.path.exists(os.path.join(config.marker_dir, GO)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody released the hold in {config.marker_dir}")
        time.sleep(0.1)


def notes(marker_dir: str) -> list[dict]:
    """The notes held trials left so far (for tests)."""
    found = []
    for path in sorted(glob.glob(os.path.join(marker_dir, "held-*.json"))):
        with open(path) as f:
            found.append(json.load(f))
    return found


def train(configs: list[ClusterToyConfig], session) -> None:
    import ray

    c0 = configs[0]
    state = session.state or {"step": 0}
    resumed_from = state["step"] if session.state is not None else -1
    node = ray.get_runtime_context().get_node_id()
    gpu_ids = ",".join(str(g) for g in ray.get_gpu_ids())
    helper = _start_helper() if c0.helper else None
    try:
        helper_node = ray.get(helper.node.remote()) if helper else ""
        for p in range(len(configs)):
            session.add_rows("attempts", p, {"node": [node], "gpu_ids": [gpu_ids], "helper_node": [helper_node],
                                             "resumed_from": [resumed_from]})
        seeds = [c.seed for c in configs]
        for step in range(state["step"], c0.steps):
            values = ray.get(helper.values.remote(seeds, step)) if helper else [s * 100 + step for s in seeds]
            for p, value in enumerate(values):
                session.add_rows("values", p, {"step": [step], "value": [value], "resumed_from": [resumed_from]})
                name = f"checkpoint-{step:04d}"
                with session.artifact_dir(name, p) as path:
                    with open(os.path.join(path, "value.txt"), "w") as f:
                        f.write(str(value))
                session.add_rows("kept", p, {"step": [step], "uri": [session.artifact_uri(name, p)]})
            if step == c0.hold_at:
                session.flush()     # rows past the last checkpoint, in the store: a retry must drop them
                _hold(c0, {"trial_ids": session.trial_ids, "node": node, "gpu_ids": gpu_ids,
                           "helper_node": helper_node, "pid": os.getpid(), "step": step})
                if helper:
                    ray.get(helper.node.remote())     # raises if the helper's node was lost meanwhile
            session.checkpoint(lambda s=step + 1: {"step": s}, force=True)
    finally:
        if helper is not None:
            ray.kill(helper)


STUDY = Study(
    name="cluster_toy", title="Cluster toy (node and driver failures, GPU shares, a trial's own actors)",
    config=ClusterToyConfig,
    presets={"smoke": Preset("tiny", {}, {"seed": [0, 1, 2, 3]})},
    train=train, tables=TABLES, figures=lambda tables, out: [],
    pack_fields=frozenset({"seed"}), resources=resources)
