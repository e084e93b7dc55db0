"""Packs: trials of the grid that differ only in pack fields, trained together in one process."""

from __future__ import annotations

import dataclasses
from typing import Any

from lookinside.study import Study


def shape_key(study: Study, config: Any) -> tuple:
    """What members of one pack must share: every field that is not a pack field."""
    return tuple((f.name, repr(getattr(config, f.name))) for f in dataclasses.fields(config)
                 if f.name not in study.pack_fields)


def group(study: Study, configs: list[Any], k: int) -> list[list[int]]:
    """Indices of `configs` in packs of at most `k` members with the same shape key, in order."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(shape_key(study, config), []).append(i)
    packs = []
    for indices in groups.values():
        packs.extend(indices[j:j + k] for j in range(0, len(indices), k))
    return sorted(packs)


def choose_pack_size(study: Study, configs: list[Any], resources) -> int:
    """Members per pack when the user leaves it to us (refined by the packing issue)."""
    return 1
