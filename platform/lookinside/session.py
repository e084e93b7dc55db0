"""What a study's trainable sees while it trains: its members, rows, checkpoints, failures,
live metrics, kept files and other sweeps' tables.

A Tune trial trains one pack: one or more members (trials of the grid) at once. The study's
`train(configs, session)`:
- adds rows with `add_rows` (one member) or `add_pack_rows` (every member at once); they
  are written to the store in parts while the trial runs and become visible when it commits;
- calls `checkpoint(state_fn, files=...)` whenever it could stop and continue: at most every
  `checkpoint_seconds` it saves `state_fn()` (pickled) and, through `files(folder)`, any
  files (an RLlib checkpoint); a retried trial finds them in `state` and `state_dir`;
- calls `fail(i, why)` for a member that cannot go on (a NaN loss, say) while the others
  continue;
- may `report(**metrics)` (shown live), keep files with `artifact_dir`, and read another
  sweep's tables with `load`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookinside import results
from lookinside.rows import FLUSH_BYTES, MemorySink, RowBuffer, Sink, StoreSink, new_part_name

_STATE_FILE = "state.pkl"
# Live metrics reach Tune at most this often.
REPORT_SECONDS = 1.0
_FILES = "files"


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a trial's rows, kept files and other sweeps' tables live."""
    store: results.Store
    study: str
    sweep_id: str


class Session:
    def __init__(self, trial_ids: Sequence[str], schemas: Mapping[str, pa.Schema], *,
                 checkpoint_seconds: float = 60.0, device: str = "cpu", place: Place | None = None,
                 restore_dir: str | None = None, restored: dict | None = None, state_dir: str | None = None,
                 workdir: str | None = None, on_save: Callable[[str], None] | None = None,
                 on_report: Callable[[dict], None] | None = None, report_seconds: float = REPORT_SECONDS,
                 sink: Sink | None = None, flush_bytes: int = FLUSH_BYTES):
        self.trial_ids = list(trial_ids)
        self.schemas = dict(schemas)
        self.checkpoint_seconds = checkpoint_seconds
        # Where the study should put its tensors: "cuda" when the trial holds a GPU share.
        self.device = device
        self.place = place
        self._on_save, self._on_report = on_save, on_report
        self._report_seconds, self._last_report = report_seconds, -math.inf
        # The latest live metrics, sent at most every report_seconds (each send waits for Tune).
        self.live: dict[str, float] = {}
        self._live_sent = True
        self.sink = sink or (StoreSink(place.store, place.study, place.sweep_id) if place else MemorySink())
        self._buffer = RowBuffer(self.schemas, len(self.trial_ids))
        self._flush_bytes = flush_bytes
        self._last_save = time.monotonic()
        self._workdir = workdir
        # A checkpoint folder to continue from (Tune's latest), or a snapshot (one member's
        # share of a pack's, say) and its files' folder; neither on a fresh start.
        if restore_dir is not None:
            restored, state_dir = read_checkpoint(restore_dir)
        restored = restored or {}
        # A continued trial keeps the time its first attempt started.
        self.started_at: datetime = restored.get("started_at") or datetime.now(timezone.utc)
        self.state = restored.get("study_state")
        # A folder with the files its last checkpoint kept (None if it kept none, or on a fresh start).
        self.state_dir = state_dir
        self.last_checkpoint = restore_dir
        self.failures: dict[int, str] = dict(restored.get("failures") or {})
        self.checkpoints = restored.get("checkpoints", 0)
        # parts[table][member]: the member's parts written so far, in order.
        self.parts: dict[str, list[list[str]]] = restored.get("parts") or {
            t: [[] for _ in self.trial_ids] for t in self.schemas}
        # Parts written after the checkpoint this session continues from go: the rows they
        # hold will be added again.
        for member, trial_id in enumerate(self.trial_ids):
            self.sink.keep_only(trial_id, {t: self.parts[t][member] for t in self.schemas})

    # --- rows ----------------------------------------------------------------------------

    def add_rows(self, table: str, member: int, columns: Mapping[str, Any]) -> None:
        """Rows of `table` for one member: every column but `trial_id` by name, each a
        sequence, a numpy array ((n, d) for a fixed_size_list<d> column) or an Arrow array."""
        self._buffer.add(table, [member], columns, {})
        self._maybe_flush()

    def add_pack_rows(self, table: str, shared: Mapping[str, Any], per_member: Mapping[str, Any],
                      members: Sequence[int] | np.ndarray | None = None) -> None:
        """Rows of `table` for several members at once: `shared` columns (n, ...) are the
        same for each, `per_member` ones (len(members), n, ...) hold a slice per member.
        `members`: indices or a bool mask; default every member not failed."""
        if members is None:
            members = [m for m in range(len(self.trial_ids)) if m not in self.failures]
        members = np.asarray(members)
        if members.dtype == bool:
            per_member = {k: np.asarray(v)[members] for k, v in per_member.items()}
            members = np.flatnonzero(members)
        if len(members):
            self._buffer.add(table, members, shared, per_member)
            self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self._buffer.nbytes >= self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Writes every buffered row out, a part per table and member."""
        for table, by_member in self._buffer.take().items():
            for member, data in by_member.items():
                trial_id = self.trial_ids[member]
                data = data.add_column(0, "trial_id", pa.repeat(pa.scalar(trial_id, pa.string()), data.num_rows))
                part = new_part_name(len(self.parts[table][member]))
                self.sink.write(trial_id, table, part, data)
                self.parts[table][member].append(part)

    def drop_unwritten(self) -> None:
        """Forgets rows not yet written out (a pack that raised is trained again member by member)."""
        self._buffer.take()

    def member_table(self, table: str, member: int) -> pa.Table:
        """Every row of one member in one table so far (for tests and small tables)."""
        self.flush()
        return self.sink.read(self.trial_ids[member], table, self.parts[table][member], self.schemas[table])

    # --- failures, checkpoints --------------------------------------------------------------

    def fail(self, member: int, why: str) -> None:
        """Marks one member failed; the others go on and are recorded as usual."""
        self.failures.setdefault(member, why)

    def failed(self, member: int) -> bool:
        return member in self.failures

    def checkpoint(self, study_state: Callable[[], Any], force: bool = False,
                   files: Callable[[str], None] | None = None) -> bool:
        """Saves study_state() (pickled) and, when given, files(folder) written into an empty
        local folder, if `checkpoint_seconds` have passed (or `force`). The state is a
        function so that a trainer can call this every step for free."""
        if self._on_save is None:
            return False
        if not force and time.monotonic() - self._last_save < self.checkpoint_seconds:
            return False
        self.flush()
        self.checkpoints += 1
        directory = tempfile.mkdtemp(prefix="checkpoint-", dir=self.workdir())
        if files is not None:
            os.makedirs(os.path.join(directory, _FILES))
            files(os.path.join(directory, _FILES))
        save_snapshot(directory, {"study_state": study_state(), "parts": self.parts, "failures": self.failures,
                                  "checkpoints": self.checkpoints, "started_at": self.started_at})
        self._on_save(directory)
        if self.last_checkpoint is not None:
            shutil.rmtree(self.last_checkpoint, ignore_errors=True)
        self.last_checkpoint = directory
        self._last_save = time.monotonic()
        return True

    # --- live metrics, kept files, other sweeps ----------------------------------------------

    def report(self, **metrics: float) -> None:
        """A running trial's figures (env steps per second, mean return...), for the progress
        line and Tune. Call it as often as a training iteration: a report to Tune waits for
        the driver, so at most one goes every `report_seconds`; the latest always goes with
        the trial's end."""
        self.live.update({k: float(v) for k, v in metrics.items()})
        self._live_sent = False
        if self._on_report is not None and time.monotonic() - self._last_report >= self._report_seconds:
            self._on_report(dict(self.live))
            self._last_report, self._live_sent = time.monotonic(), True

    @contextlib.contextmanager
    def artifact_dir(self, name: str, member: int = 0) -> Iterator[str]:
        """A folder to write files into that are kept after the trial ends, under
        ROOT/<study>/<sweep_id>/artifacts/<trial_id>/<name>/. A retry that writes the same
        name replaces them; nothing is kept if the block raises."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"artifact names are plain folder names, got {name!r}")
        path = self._artifact_path(name, member)
        store = self._artifact_store()
        scratch = store.scratch_for(path)
        try:
            yield scratch
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        store.replace_dir(scratch, path)

    def artifact_uri(self, name: str, member: int = 0) -> str:
        """Where `artifact_dir(name, member)` keeps its files: a path or an s3:// URI."""
        return self._artifact_store().uri_of(self._artifact_path(name, member))

    def _artifact_store(self) -> results.Store:
        return self.place.store if self.place else results.Store(os.path.join(self.workdir(), "store"))

    def _artifact_path(self, name: str, member: int) -> str:
        store = self._artifact_store()
        study, sweep_id = (self.place.study, self.place.sweep_id) if self.place else ("study", "sweep")
        return store.artifact_dir(study, sweep_id, self.trial_ids[member], name)

    def load(self, study: str, table: str, sweep_id: str | Sequence[str] | None = None,
             columns: Sequence[str] | None = None, filter: pc.Expression | None = None,
             root: str | None = None) -> pa.Table:
        """Committed rows of another sweep's table (this sweep's results root by default),
        as `lookinside.results.load`."""
        if root is None and self.place is None:
            raise ValueError("this session has no results root; pass root=")
        return results.load(root or self.place.store.uri, study, table, sweep_id, columns, filter)

    # --- housekeeping -----------------------------------------------------------------------

    def workdir(self) -> str:
        """A local scratch folder for this session, removed by `close`."""
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="lookinside-session-")
        return self._workdir

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


def save_snapshot(directory: str, snapshot: dict) -> None:
    with open(os.path.join(directory, _STATE_FILE), "wb") as f:
        pickle.dump(snapshot, f, protocol=pickle.HIGHEST_PROTOCOL)


def read_checkpoint(directory: str) -> tuple[dict, str | None]:
    """A checkpoint folder's snapshot, and the folder of its files (None if it has none)."""
    with open(os.path.join(directory, _STATE_FILE), "rb") as f:
        snapshot = pickle.load(f)
    files = os.path.join(directory, _FILES)
    return snapshot, files if os.path.isdir(files) else None


def restore_from_tune(workdir: str) -> str | None:
    """This Tune trial's latest checkpoint, copied into a folder of `workdir`, if it has one."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    return checkpoint.to_directory(tempfile.mkdtemp(prefix="restored-", dir=workdir))


def tune_save(directory: str) -> None:
    """Hands a checkpoint folder to Ray Tune, which copies it to the sweep's storage."""
    from ray import tune
    tune.report({"checkpoint_saved": 1}, checkpoint=tune.Checkpoint.from_directory(directory))


def tune_report(metrics: dict) -> None:
    from ray import tune
    tune.report({"live": metrics})
