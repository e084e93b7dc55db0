"""The `trials` table: one row per trial of a sweep, written last when the trial commits."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

from lookinside import config as cfg
from lookinside.results import TRIALS
from lookinside.study import Study

# The platform's columns; `schema` adds one column per scalar config field.
TRIALS_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("study", pa.string()),
    ("preset", pa.string()),          # the preset the sweep started from
    ("status", pa.string()),          # TERMINATED or ERROR
    ("attempt", pa.int64()),          # 1 for the first run of the trial
    ("node", pa.string()),            # the Ray node id of the attempt that committed it
    ("host", pa.string()),            # that node's hostname
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("config", pa.string()),          # the whole config as JSON
    ("error", pa.string()),           # why, when status is ERROR
])


def schema(study: Study) -> pa.Schema:
    """The `trials` table of a study: the platform's columns and one per config field
    (tuples as text such as 10-7-5)."""
    extra = []
    for name, tp in cfg.field_types(study.config).items():
        arrow = {int: pa.int64(), float: pa.float64(), bool: pa.bool_()}.get(cfg._is_optional(tp)[1], pa.string())
        extra.append(pa.field(name, arrow))
    return pa.schema(list(TRIALS_SCHEMA) + extra)


def all_schemas(study: Study) -> dict[str, pa.Schema]:
    return {**study.tables, TRIALS: schema(study)}


def row(study: Study, member: dict, status: str, attempt: int, started: datetime, finished: datetime,
        error: str | None, node: str | None = None, host: str | None = None) -> pa.Table:
    config = member["config"]
    values = {"trial_id": member["trial_id"], "study": study.name, "preset": member.get("preset"),
              "status": status, "attempt": attempt,
              "node": node, "host": host, "started_at": started, "finished_at": finished,
              "config": json.dumps(config, sort_keys=True), "error": error}
    for name, v in config.items():
        values[name] = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return pa.Table.from_pylist([values], schema=schema(study))
