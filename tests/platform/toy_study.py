"""A tiny study for platform tests: counts steps, checkpoints each one (with a file beside its
state), keeps an artifact, reads another sweep's rows, fails on request."""

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
    raise_member: bool = param(False, "raise an error while training this member, from raise_from_step on")
    raise_from_step: int = param(0, "the step from which raise_member raises", low=0)
    marker_dir: str = param("", "where the first-attempt markers go")
    source_sweep: str = param("", "a sweep of this study whose `values` rows each trial counts")


TABLES = {
    "values": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("value", pa.int64()),
                         ("resumed_from", pa.int64()), ("file_step", pa.int64())]),
    "artifacts": pa.schema([("trial_id", pa.string()), ("name", pa.string()), ("uri", pa.string())]),
    "sources": pa.schema([("trial_id", pa.string()), ("source_rows", pa.int64())]),
}


def prepare(configs, store):
    for sweep_id in {c.source_sweep for c in configs if c.source_sweep}:
        store.require_sweep("toy", sweep_id)


def member_state(state, i):
    return dict(state)        # the toy's state is the same for every member


def train(configs, session):
    state = session.state or {"step": 0, "resumed_from": -1}
    file_step = -1
    if session.state is not None:
        state = {**state, "resumed_from": state["step"]}
        if session.state_dir is not None:          # the file the checkpoint kept beside its state
            with open(os.path.join(session.state_dir, "step.txt")) as f:
                file_step = int(f.read())
    c0 = configs[0]
    for p, c in enumerate(configs):
        if c.nan_member:
            session.fail(p, "loss is NaN")
        if c.source_sweep:
            session.add_rows("sources", p, {"source_rows": [session.load("toy", "values", c.source_sweep).num_rows]})
    for step in range(state["step"], c0.steps):
        for c in configs:
            if c.raise_member and step >= c.raise_from_step:
                raise ValueError(f"member with seed {c.seed} broke")
        for p, c in enumerate(configs):
            session.add_rows("values", p, {"step": [step], "value": [c.seed * 100 + step],
                                           "resumed_from": [state["resumed_from"]], "file_step": [file_step]})
            with session.artifact_dir("latest", p) as path:      # rewritten at every step: one copy kept
                with open(os.path.join(path, "value.txt"), "w") as f:
                    f.write(str(c.seed * 100 + step))
        state = {**state, "step": step + 1}
        session.checkpoint(lambda state=state: state, force=True, files=lambda d, s=step + 1: _write_step(d, s))
        session.report(step=step + 1)
        if c0.fail_always and step >= 1:
            raise RuntimeError("injected permanent failure")
        marker = os.path.join(c0.marker_dir, f"failed-{c0.seed}")
        if step == c0.fail_once_at and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure")
    for p in range(len(configs)):
        session.add_rows("artifacts", p, {"name": ["latest"], "uri": [session.artifact_uri("latest", p)]})


def _write_step(directory, step):
    with open(os.path.join(directory, "step.txt"), "w") as f:
        f.write(str(step))


STUDY = Study(
    name="toy", title="Toy", config=ToyConfig,
    presets={"smoke": Preset("tiny", {}, {"seed": [0, 1, 2]})},
    train=train, tables=TABLES, figures=lambda tables, out: [],
    pack_fields=frozenset({"seed", "nan_member", "raise_member"}),
    prepare=prepare, member_state=member_state)
