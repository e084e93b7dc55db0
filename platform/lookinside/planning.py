"""Planning a sweep: its trials, their packs and each pack's resources, as a manifest."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from lookinside import config as cfg
from lookinside import packing
from lookinside.errors import UserError
from lookinside.results import Store
from lookinside.study import Study


@dataclasses.dataclass
class Resources:
    """What the command line says about resources (a study's `resources` reads it too)."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    checkpoint_seconds: float = 60.0
    pack: int | None = None   # members per pack; None chooses from memory and resources


def new_sweep_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def bundles(study: Study, config: Any, resources: Resources) -> list[dict[str, float]]:
    """A trial's placement-group bundles: the study's own (a learner and its env runners,
    say), or one bundle of --cpus-per-trial and --gpus-per-trial."""
    if study.resources is not None:
        found = [{k: float(v) for k, v in b.items() if v} for b in study.resources(config, resources)]
    else:
        found = [{"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}]
        found = [{k: v for k, v in found[0].items() if v}]
    return [b for b in found if b] or [{"CPU": 0.0}]


def slots(per_trial: list[dict[str, float]], capacity: Mapping[str, float]) -> int:
    """How many such trials fit at once in `capacity`; 0 if not even one does."""
    need = {k: sum(b.get(k, 0.0) for b in per_trial) for k in ("CPU", "GPU")}
    fits = [capacity.get(k, 0.0) / v for k, v in need.items() if v > 0]
    return int(math.floor(min(fits) + 1e-9)) if fits else 1


def plan(study: Study, preset: str, values: Mapping[str, Any], grid: Mapping[str, Sequence[Any]],
         store: Store, resources: Resources, capacity: Mapping[str, float], autoscaling: bool = False) -> dict:
    """The manifest of a new sweep (validated; nothing written yet). Packs are sized for
    `capacity` (this machine's, or the cluster's on --address). With `autoscaling`
    (--wait-for-nodes), a trial that does not fit yet is left for the autoscaler, and each
    trial is its own pack unless --pack says otherwise (how many nodes come is unknown)."""
    configs = study.configs(preset, values, grid)
    sweep_id = new_sweep_id()
    trials = [{"trial_id": f"{sweep_id}-{i:05d}", "preset": preset, "config": cfg.to_dict(c)}
              for i, c in enumerate(configs)]
    # Every trial must fit; packs are sized for the largest.
    needs = {}
    for c in configs:
        need = bundles(study, c, resources)
        needs[repr(need)] = need
        if slots(need, capacity) == 0 and not autoscaling:
            raise UserError(f"a trial needs {_describe(need)}, more than there is ({_describe([capacity])}); "
                            f"--wait-for-nodes if the cluster autoscales")
    n_slots = min(slots(need, capacity) for need in needs.values())
    if n_slots == 0:    # nothing fits until the autoscaler adds nodes: a pack per trial
        n_slots = len(configs)
    k = resources.pack or packing.choose_pack_size(study, configs, n_slots, packing.machine_memory())
    packs = packing.group(study, configs, k)
    return {
        "study": study.name, "sweep_id": sweep_id, "preset": preset,
        "values": dict(values), "grid": {k: list(v) for k, v in grid.items()},
        "swept": sorted(study.preset(preset).swept() | set(grid)),
        "trials": trials, "packs": packs,
        "bundles": [bundles(study, configs[p[0]], resources) for p in packs],
        "resources": dataclasses.asdict(resources) | {"pack": k},
        "root": store.uri, "created_at": datetime.now(timezone.utc).isoformat(),
    }


def _describe(bundle_list: list[Mapping[str, float]]) -> str:
    total = {k: sum(b.get(k, 0.0) for b in bundle_list) for k in ("CPU", "GPU")}
    return ", ".join(f"{v:g} {k}" for k, v in total.items() if v or k == "CPU")
