"""The study protocol and the registry of studies.

A study package (lookinside.studies.<name>) exposes `STUDY`, a `Study`: its config
dataclass, presets and their grids, its trainable, its tables' schemas and its figures.
The platform never imports a study by name; it finds them here.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from lookinside import config as cfg
from lookinside.errors import UserError


class StudyError(UserError, ValueError):
    """An unknown study or preset; its message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """Base field values plus a grid: the trials are every combination of the grid's values."""
    description: str
    values: Mapping[str, Any]
    grid: Mapping[str, Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class Figure:
    filename: str
    title: str
    caption: str


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    config: type
    presets: Mapping[str, Preset]
    # train(configs, session): trains every config of a pack (one or more members) and
    # adds their rows through the session; see lookinside.session.
    train: Callable[[list[Any], Any], None]
    # The study's own tables; `trials` is the platform's and is added to every study.
    tables: Mapping[str, pa.Schema]
    # figures(tables, out_dir) draws PNGs from the Arrow tables and says what it drew.
    figures: Callable[[Mapping[str, pa.Table], str], list[Figure]]
    # summary(tables) -> table with trial_id and a few key metrics, for the report.
    summary: Callable[[Mapping[str, pa.Table]], pa.Table] | None = None
    # Fields that may differ between members of one pack (they leave tensor shapes alone).
    pack_fields: frozenset[str] = frozenset()
    # prepare(configs): checks that need more than the config (a dataset loads, say), run
    # before anything starts; raises a UserError.
    prepare: Callable[[list[Any]], None] | None = None
    # Bytes one member holds while it trains, to size packs; None if unknown.
    member_bytes: Callable[[Any], int] | None = None

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise StudyError(f"unknown preset '{name}' for study {self.name}; "
                             f"known: {', '.join(self.presets)}")
        return self.presets[name]

    def configs(self, preset: str, values: Mapping[str, Any] | None = None,
                grid: Mapping[str, Sequence[Any]] | None = None) -> list[Any]:
        """Every trial config of `preset`, with `values` overriding its base values (and
        fixing a field the preset sweeps) and `grid` replacing or adding swept fields; all
        validated before anything runs."""
        p = self.preset(preset)
        values, grid = dict(values or {}), dict(grid or {})
        base = {**p.values, **values}
        # A --set of a field the preset sweeps fixes it; a --grid replaces or adds a sweep.
        sweep = {**{k: v for k, v in p.grid.items() if k not in values}, **grid}
        for name in sweep:
            base.pop(name, None)
        names = list(sweep)
        configs = []
        for combo in itertools.product(*(sweep[n] for n in names)):
            configs.append(cfg.build(self.config, {**base, **dict(zip(names, combo))}))
        return configs

    def grid_size(self, preset: str) -> int:
        n = 1
        for values in self.preset(preset).grid.values():
            n *= len(values)
        return n


def names() -> list[str]:
    import lookinside.studies as pkg
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg)


def get(name: str) -> Study:
    known = names()
    if name not in known:
        raise StudyError(f"unknown study '{name}'; known: {', '.join(known)}")
    module = importlib.import_module(f"lookinside.studies.{name}")
    return module.STUDY
