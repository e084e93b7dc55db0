"""How the SAMDP builder's map steps run: in this process, or as Ray tasks.

The builder splits its rows (sorted by trajectory) into a fixed number of shards of whole
trajectories, whatever the number of workers, and every map step computes one result per
shard; reductions add those results in shard order. So the labels, P and values are the
same bit for bit on one worker and on several: only where each shard's work runs changes.

`LocalMap` runs every shard here (the single-process reference). `RayMap(workers)` splits
the shards into `workers` groups: group 0 runs in the calling process while Ray actors run
the others, one CPU each, for the whole build. Inside a Tune trial whose placement group
has one bundle per worker (trial.resources), actor i runs in bundle i (bundle 0 holds the
trial process).
Shard data is put in Ray's object store once (`put`) and reused by every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def bounds(traj: np.ndarray, shards: int) -> list[tuple[int, int]]:
    """[start, stop) rows of `shards` runs of whole trajectories (traj sorted), near-equal in
    rows; fewer when there are fewer trajectories."""
    starts = np.flatnonzero(np.r_[True, traj[1:] != traj[:-1]])
    targets = np.linspace(0, len(traj), shards + 1)[1:-1]
    cuts = np.unique(starts[np.clip(np.searchsorted(starts, targets), 0, len(starts) - 1)])
    edges = [0, *[int(c) for c in cuts if 0 < c < len(traj)], len(traj)]
    return list(zip(edges[:-1], edges[1:]))


class LocalMap:
    workers = 1

    def put(self, value: Any) -> Any:
        return value

    def __call__(self, fn: Callable, per_shard: Sequence[tuple], *shared: Any) -> list:
        return [fn(*args, *shared) for args in per_shard]


def _resolve(values: Sequence) -> list:
    """`values` with each Ray ObjectRef among them fetched (refs inside a list are not)."""
    import ray

    refs = [v for v in values if isinstance(v, ray.ObjectRef)]
    fetched = iter(ray.get(refs)) if refs else iter(())
    return [next(fetched) if isinstance(v, ray.ObjectRef) else v for v in values]


def _run_group(fn: Callable, group: list[tuple], *shared: Any) -> list:
    """A Ray task: `fn` on each shard of a group (shared arguments arrive resolved)."""
    return [fn(*_resolve(args), *shared) for args in group]


class _Worker:
    """A Ray actor (one CPU) that runs map steps on its group of shards; one actor per
    worker for the whole build, so that K-means' many short rounds cost an actor call each,
    not a task's scheduling."""

    def run(self, fn: Callable, group: list[tuple], *shared: Any) -> list:
        return _run_group(fn, group, *shared)


class RayMap:
    """Shards in `workers` groups: group 0 here, the others on Ray actors (one CPU each)."""

    def __init__(self, workers: int):
        import ray

        self.ray, self.workers = ray, workers
        self.placement_group = ray.util.get_current_placement_group()
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.options(**self._options(i)).remote() for i in range(1, workers)]

    def put(self, value: Any) -> Any:
        return self.ray.put(value)

    def _options(self, i: int) -> dict:
        if self.placement_group is None:
            return {}
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        index = i if i < self.placement_group.bundle_count else -1
        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(self.placement_group, index)}

    def __call__(self, fn: Callable, per_shard: Sequence[tuple], *shared: Any) -> list:
        groups = [list(g) for g in np.array_split(np.arange(len(per_shard)), self.workers) if len(g)]
        shared_refs = [self.put(s) for s in shared]
        futures = [actor.run.remote(fn, [per_shard[j] for j in group], *shared_refs)
                   for actor, group in zip(self.actors, groups[1:])]
        out = [fn(*_resolve(per_shard[j]), *shared) for j in groups[0]]
        for chunk in self.ray.get(futures):
            out.extend(chunk)
        return out


def mapper(workers: int) -> LocalMap | RayMap:
    """RayMap when Ray runs here and more than one worker is asked for; else LocalMap."""
    if workers > 1:
        import ray

        if ray.is_initialized():
            return RayMap(workers)
    return LocalMap()
