"""A toy study whose trial starts Ray tasks inside its own placement group, as RLlib's env
runners and the SAMDP builder's map tasks do; it asks for a bundle for them."""

import dataclasses

import pyarrow as pa

from lookinside.config import param
from lookinside.study import Preset, Study


@dataclasses.dataclass(frozen=True)
class TasksConfig:
    seed: int = param(0, "member seed", low=0)
    tasks: int = param(2, "Ray tasks the trial starts", low=1)


TABLES = {"tasks": pa.schema([("trial_id", pa.string()), ("task", pa.int64()), ("value", pa.int64()),
                              ("same_placement_group", pa.bool_()), ("node", pa.string())])}


def resources(config, options):
    # The trial itself, then one CPU shared by its tasks (half a CPU each).
    return [{"CPU": 1}, {"CPU": 1}]


def train(configs, session):
    import ray

    @ray.remote(num_cpus=0.5)
    def square(x):
        context = ray.get_runtime_context()
        return x * x, context.get_placement_group_id(), context.get_node_id()

    mine = ray.get_runtime_context().get_placement_group_id()
    for p, c in enumerate(configs):
        # A task that found no room in the trial's bundles would wait forever: time out instead.
        out = ray.get([square.remote(c.seed + t) for t in range(c.tasks)], timeout=120)
        session.add_rows("tasks", p, {"task": list(range(c.tasks)), "value": [v for v, _, _ in out],
                                      "same_placement_group": [g == mine for _, g, _ in out],
                                      "node": [n for _, _, n in out]})


STUDY = Study(name="tasks_study", title="Tasks in a trial's bundles (platform test)", config=TasksConfig,
              presets={"smoke": Preset("six members", {}, {"seed": list(range(6))})},
              train=train, tables=TABLES, figures=lambda tables, out: [], pack_fields=frozenset({"seed"}),
              resources=resources)
