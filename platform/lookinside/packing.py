"""Packs: trials of the grid that differ only in pack fields, trained together in one process.

Ray Tune runs one trial per actor; for networks of a few hundred parameters that wastes
nearly all of a core on per-step overhead. A study names the config fields that leave
tensor shapes alone (seed, learning rate, training fraction...); trials that agree on every
other field form a group, and each group is cut into packs of at most K members. A pack is
one Tune trial whose trainable trains all its members at once, each with its own random
stream, data order and optimiser state, and whose rows are written per member, exactly as
if each had run alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from lookinside.study import Study

# No more members than this in one pack: beyond it a step's arithmetic dominates anyway,
# and a failed or retried pack costs more.
MAX_PACK = 64
# Share of the machine's memory that packs running at once may fill.
MEMORY_SHARE = 0.5


def shape_key(study: Study, config: Any) -> tuple:
    """What members of one pack must share: every field that is not a pack field."""
    return tuple((f.name, repr(getattr(config, f.name))) for f in dataclasses.fields(config)
                 if f.name not in study.pack_fields)


def group(study: Study, configs: list[Any], k: int) -> list[list[int]]:
    """Indices of `configs` in packs of at most `k` members with the same shape key, in order."""
    packs = []
    for indices in _groups(study, configs):
        # Even sizes, differing by one at most: 10 members with k=8 make packs of 5 and 5,
        # not 8 and 2; with k=4, of 4, 3 and 3, not 4, 4 and 2.
        n_packs = math.ceil(len(indices) / k)
        small, extra = divmod(len(indices), n_packs)
        start = 0
        for j in range(n_packs):
            size = small + (j < extra)
            packs.append(indices[start:start + size])
            start += size
    return sorted(packs)


def choose_pack_size(study: Study, configs: list[Any], slots: int, memory_bytes: int) -> int:
    """K for `--pack auto`: large enough that the sweep makes about one pack per slot (a CPU
    or GPU share that runs a trial), small enough that `slots` packs fit in `memory_bytes`."""
    if not study.pack_fields or not configs:
        return 1
    largest = max(len(indices) for indices in _groups(study, configs))
    k = math.ceil(largest / max(slots, 1))
    if study.member_bytes is not None:
        per_member = max(study.member_bytes(c) for c in configs)
        k = min(k, max(1, int(memory_bytes * MEMORY_SHARE / max(slots, 1) // max(per_member, 1))))
    return max(1, min(k, MAX_PACK))


def _groups(study: Study, configs: list[Any]) -> list[list[int]]:
    """Indices of configs that may share a pack, group by group, in order."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(shape_key(study, config), []).append(i)
    return list(groups.values())


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
