"""The study protocol and the registry of studies.

A study package (lookinside.studies.<name>) exposes `STUDY`, a `Study`: its config
dataclass, presets and their grids, its trainable, its tables' schemas and its figures.
The platform never imports a study by name; it finds them here.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from lookinside import config as cfg
from lookinside.errors import UserError


class StudyError(UserError, ValueError):
    """An unknown study or preset; its message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Deferred:
    """A study hook whose module is imported on the first call: trial workers never draw or
    summarise, and matplotlib and pandas cost them about a second to import.
    Study(figures=Deferred("lookinside.studies.x.figures", "draw"), ...)."""
    module: str
    function: str

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.function)(*args)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Base field values plus a grid: the trials are every combination of the grid's values.
    With `cases`, each case is a grid of its own laid over `grid`, and the trials are the
    union of the cases' combinations: a preset can then hold experiments whose fields
    differ (cases=[{"experiment": ["a"], "depth": [1, 2]}, {"experiment": ["b"]}])."""
    description: str
    values: Mapping[str, Any]
    grid: Mapping[str, Sequence[Any]]
    cases: Sequence[Mapping[str, Sequence[Any]]] = ()

    def swept(self) -> set[str]:
        return set(self.grid).union(*map(set, self.cases))


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
    # prepare(configs, store): checks that need more than the config (a dataset loads, a
    # source sweep exists in the results store: store.require_sweep(study, sweep_id)), run
    # before anything starts or is written; raises a UserError.
    prepare: Callable[[list[Any], Any], None] | None = None
    # Bytes one member holds while it trains, to size packs; None if unknown.
    member_bytes: Callable[[Any], int] | None = None
    # resources(config, options) -> the trial's placement-group bundles, e.g. a learner's
    # and one per RLlib env runner: [{"CPU": 1, "GPU": 0.5}, {"CPU": 1}]. Actors and tasks
    # the trial starts run inside them. options: lookinside.planning.Resources (the
    # --cpus-per-trial and --gpus-per-trial flags). Default: one bundle of those flags.
    resources: Callable[[Any, Any], list[dict[str, float]]] | None = None
    # member_state(state, i) -> the checkpoint state a pack of member i alone would have
    # saved; lets a pack that raised be split member by member from its last checkpoint.
    member_state: Callable[[Any, int], Any] | None = None
    # table -> the columns the figures read, so that `report` loads only those.
    figure_columns: Mapping[str, Sequence[str]] | None = None
    # findings(tables) -> the study's findings as short lines with their numbers, listed
    # in the report's index (and printed by `report --findings`).
    findings: Callable[[Mapping[str, pa.Table]], list[str]] | None = None

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
        configs = []
        # A --set of a field the cases sweep picks the cases that list its value (--set experiment=x);
        # where none lists it, it fixes the field in every case.
        cases = list(p.cases or [{}])
        for name, value in values.items():
            listing = [case for case in cases if value in case.get(name, ())]
            cases = listing or cases
        for case in cases:
            base = {**p.values, **values}
            # A --set of a field the preset sweeps fixes it; a --grid replaces or adds a sweep.
            sweep = {**{k: v for k, v in {**p.grid, **case}.items() if k not in values}, **grid}
            for name in sweep:
                base.pop(name, None)
            names = list(sweep)
            for combo in itertools.product(*(sweep[n] for n in names)):
                config = cfg.build(self.config, {**base, **dict(zip(names, combo))})
                if config not in configs:    # a --set can make two cases one
                    configs.append(config)
        return configs

    def grid_size(self, preset: str) -> int:
        p = self.preset(preset)
        return sum(math.prod(len(v) for v in {**p.grid, **case}.values()) for case in p.cases or [{}])


# Studies outside the package: modules (importable by every Ray worker) that expose STUDY,
# comma-separated, e.g. LOOKINSIDE_STUDIES=my_lab.my_study.
EXTRA_STUDIES = "LOOKINSIDE_STUDIES"


def _modules() -> dict[str, str]:
    """Study name -> its module: lookinside.studies.<name>, then the EXTRA_STUDIES modules
    (imported here, to read their study's name)."""
    import lookinside.studies as pkg
    found = {m.name: f"lookinside.studies.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg}
    for module in filter(None, (m.strip() for m in os.environ.get(EXTRA_STUDIES, "").split(","))):
        found[_load(module).name] = module
    return found


def _load(module: str) -> Study:
    try:
        study = importlib.import_module(module).STUDY
    except (ImportError, AttributeError) as err:
        raise StudyError(f"study module {module} cannot be loaded: {err}") from None
    if not isinstance(study, Study):
        raise StudyError(f"{module}.STUDY is not a lookinside.study.Study")
    return study


def names() -> list[str]:
    return sorted(_modules())


def get(name: str) -> Study:
    modules = _modules()
    if name not in modules:
        raise StudyError(f"unknown study '{name}'; known: {', '.join(sorted(modules))}")
    return _load(modules[name])
