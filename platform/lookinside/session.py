"""What a study's trainable sees while it trains: its members, rows, checkpoints, failures.

A Tune trial trains one pack: one or more members (trials of the grid) at once. The study's
`train(configs, session)` adds each member's rows with `session.add_rows`, calls
`session.checkpoint(lambda: state)` whenever it can stop and continue (it saves at most every
`checkpoint_seconds`), and calls `session.fail(i, why)` for a member that cannot go on
(a NaN loss, say) while the others continue. The rows live in memory and in checkpoints
until the pack ends; `commit` then writes each member's rows and its `trials` row.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

_STATE_FILE = "state.pkl"


class Session:
    def __init__(self, trial_ids: Sequence[str], schemas: Mapping[str, pa.Schema],
                 checkpoint_seconds: float = 60.0, restored: dict | None = None,
                 save_fn=None, device: str = "cpu"):
        self.trial_ids = list(trial_ids)
        self.schemas = dict(schemas)
        self.checkpoint_seconds = checkpoint_seconds
        self._save_fn = save_fn
        self._last_save = time.monotonic()
        # Where the study should put its tensors: "cuda" when the trial holds a GPU share.
        self.device = device
        restored = restored or {}
        # A continued trial keeps the time its first attempt started.
        self.started_at = restored.get("started_at") or datetime.now(timezone.utc)
        self.state = restored.get("study_state")
        # rows[table][member] -> list of RecordBatches
        self.rows: dict[str, list[list[pa.RecordBatch]]] = restored.get("rows") or {
            t: [[] for _ in self.trial_ids] for t in self.schemas}
        self.failures: dict[int, str] = restored.get("failures") or {}
        self.checkpoints = restored.get("checkpoints", 0)

    def add_rows(self, table: str, member: int, columns: Mapping[str, Any]) -> None:
        """Adds rows of `table` for member `member`: columns by name, `trial_id` added here."""
        if table not in self.schemas:
            raise KeyError(f"unknown table {table!r}; declared: {', '.join(self.schemas)}")
        schema = self.schemas[table]
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns of {table} differ in length: {lengths}")
        n = lengths.pop()
        data = {"trial_id": pa.array([self.trial_ids[member]] * n, pa.string()), **columns}
        # The declared schema decides every type; a missing or extra column is an error.
        self.rows[table][member].append(pa.record_batch(
            [pa.array(data[f.name], f.type) for f in schema], schema=schema))

    def fail(self, member: int, why: str) -> None:
        """Marks one member failed; the others go on and are recorded as usual."""
        self.failures.setdefault(member, why)

    def failed(self, member: int) -> bool:
        return member in self.failures

    def checkpoint(self, study_state: Callable[[], Any], force: bool = False) -> bool:
        """Saves study_state() and the rows so far if `checkpoint_seconds` have passed.
        The state is a function so that a trainer can call this every step for free."""
        if self._save_fn is None:
            return False
        if not force and time.monotonic() - self._last_save < self.checkpoint_seconds:
            return False
        self.checkpoints += 1
        self._save_fn(self._snapshot(study_state()))
        self._last_save = time.monotonic()
        return True

    def _snapshot(self, study_state: Any) -> dict:
        return {"study_state": study_state, "rows": self.rows, "failures": self.failures,
                "checkpoints": self.checkpoints, "started_at": self.started_at}

    def member_table(self, table: str, member: int) -> pa.Table:
        return pa.Table.from_batches(self.rows[table][member], schema=self.schemas[table])


def save_snapshot(directory: str, snapshot: dict) -> None:
    with open(os.path.join(directory, _STATE_FILE), "wb") as f:
        pickle.dump(snapshot, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_snapshot(directory: str) -> dict:
    with open(os.path.join(directory, _STATE_FILE), "rb") as f:
        return pickle.load(f)


def restore_from_tune() -> dict | None:
    """The snapshot in this Tune trial's latest checkpoint, if it has one."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return load_snapshot(directory)


def tune_save_fn(metrics_fn):
    """A save function that hands a snapshot to Ray Tune as the trial's checkpoint."""
    from ray import tune

    def save(snapshot: dict) -> None:
        with tempfile.TemporaryDirectory() as directory:
            save_snapshot(directory, snapshot)
            tune.report(metrics_fn(), checkpoint=tune.Checkpoint.from_directory(directory))
    return save
