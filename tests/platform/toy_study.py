"""A tiny study for platform tests: counts steps, checkpoints each one, fails on request."""

import dataclasses
import os

import pyarrow as pa

from lookinside.config import param
from lookinside.study import Preset, Study


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    steps: int = param(5, "steps to count", low=1, high=1000)
    seed: int = param(0, "member seed", low=0)
    fail_once_at: int = param(-1, "raise at this step on the first attempt only", low=-1)
    fail_always: bool = param(False, "raise from step 1 on, on every attempt")
    nan_member: bool = param(False, "report this member as failed (as a NaN loss would)")
    raise_member: bool = param(False, "raise an error while training this member")
    marker_dir: str = param("", "where the first-attempt markers go")


TABLES = {"values": pa.schema([("trial_id", pa.string()), ("step", pa.int64()),
                               ("value", pa.int64()), ("resumed_from", pa.int64())])}


def train(configs, session):
    state = session.state or {"step": 0, "resumed_from": -1}
    if session.state is not None:
        state = {**state, "resumed_from": state["step"]}
    c0 = configs[0]
    for c in configs:
        if c.raise_member:
            raise ValueError(f"member with seed {c.seed} broke")
    for p, c in enumerate(configs):
        if c.nan_member:
            session.fail(p, "loss is NaN")
    for step in range(state["step"], c0.steps):
        for p, c in enumerate(configs):
            session.add_rows("values", p, {"step": [step], "value": [c.seed * 100 + step],
                                           "resumed_from": [state["resumed_from"]]})
        state = {**state, "step": step + 1}
        session.checkpoint(lambda state=state: state, force=True)
        if c0.fail_always and step >= 1:
            raise RuntimeError("injected permanent failure")
        marker = os.path.join(c0.marker_dir, f"failed-{c0.seed}")
        if step == c0.fail_once_at and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure")


STUDY = Study(
    name="toy", title="Toy", config=ToyConfig,
    presets={"smoke": Preset("tiny", {}, {"seed": [0, 1, 2]})},
    train=train, tables=TABLES, figures=lambda tables, out: [],
    pack_fields=frozenset({"seed", "nan_member", "raise_member"}))
