"""A running trial's rows: buffered as numpy columns, written out in parts.

Rows arrive a few at a time (a logged epoch, a recorded step) for one member or for every
member of a pack at once. They are kept as numpy arrays (copied, so the caller may reuse
its buffers) and turned into Arrow once per table and member when the buffer is written
out: at each checkpoint, whenever it passes `flush_bytes`, and at the end. Each write makes
one part per table and member, which goes to a sink: the store's staging folder for a
trial run by Tune, or memory for a session made by hand (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from lookinside.results import Store, new_part_name

# Rows a trial may hold in memory before they are written out. Writing a part holds about
# as much again (Parquet encodes a row group in memory), so a trial's rows cost it about
# twice this at most.
FLUSH_BYTES = 32 << 20
# Pieces of a column smaller than this in all are joined into one array; larger ones
# become a chunked column without a copy.
_JOIN_BYTES = 4 << 20


class RowsError(ValueError):
    """Rows that do not fit their table's schema (a bug in a study, not bad user input)."""


class RowBuffer:
    """Rows not yet written, per table, as chunks (members, shared columns, own columns):
    shared columns (n, ...) hold the same values for every listed member, own columns
    (len(members), n, ...) a slice per member."""

    def __init__(self, schemas: Mapping[str, pa.Schema], members: int):
        self.schemas = schemas
        self.members = members
        self.chunks: dict[str, list[tuple[np.ndarray, dict, dict]]] = {}
        self.nbytes = 0

    def add(self, table: str, members: Sequence[int], shared: Mapping[str, Any], own: Mapping[str, Any]) -> None:
        if table not in self.schemas:
            raise RowsError(f"unknown table {table!r}; declared: {', '.join(self.schemas)}")
        expected = set(self.schemas[table].names) - {"trial_id"}
        given = set(shared) | set(own)
        if given != expected or set(shared) & set(own):
            unknown, missing = sorted(given - expected), sorted(expected - given)
            raise RowsError(f"rows of {table}: unknown columns {unknown}, missing columns {missing}")
        members = np.asarray(members, dtype=np.int64)
        shared = {k: _copy(v) for k, v in shared.items()}
        own = {k: _copy(v) for k, v in own.items()}
        lengths = {len(v) for v in shared.values()} | {v.shape[1] if v.ndim > 1 else -1 for v in own.values()}
        if len(lengths) != 1 or -1 in lengths or any(len(v) != len(members) for v in own.values()):
            raise RowsError(f"columns of {table} differ in length (shared (n,), per member (members, n))")
        schema = self.schemas[table]
        for name, v, lead in [*((k, v, 1) for k, v in shared.items()), *((k, v, 2) for k, v in own.items())]:
            tp = schema.field(name).type
            if pa.types.is_fixed_size_list(tp) and not isinstance(v, (pa.Array, pa.ChunkedArray)) and (
                    v.ndim != lead + 1 or v.shape[-1] != tp.list_size):
                raise RowsError(f"column {table}.{name} ({tp}) takes arrays of shape (n, {tp.list_size}); "
                                f"got {v.shape}")
        self.chunks.setdefault(table, []).append((members, shared, own))
        # Shared columns are written once per member.
        self.nbytes += sum(_nbytes(v) for v in shared.values()) * len(members)
        self.nbytes += sum(_nbytes(v) for v in own.values())

    def take(self) -> dict[str, dict[int, pa.Table]]:
        """table -> member -> that member's buffered rows (without trial_id); empties the buffer."""
        out: dict[str, dict[int, pa.Table]] = {}
        for table, chunks in self.chunks.items():
            schema = self.schemas[table]
            fields = [f for f in schema if f.name != "trial_id"]
            for member in range(self.members):
                mine = []
                for members, shared, own in chunks:
                    where = np.flatnonzero(members == member)
                    if len(where):
                        mine.append({**shared, **{k: v[where[0]] for k, v in own.items()}})
                if mine:
                    out.setdefault(table, {})[member] = pa.Table.from_arrays(
                        [_column([m[f.name] for m in mine], f.type) for f in fields],
                        schema=pa.schema(fields))
        self.chunks.clear()
        self.nbytes = 0
        return out


def _copy(value: Any) -> Any:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value          # immutable already
    return np.array(value, copy=True)


def _nbytes(value: Any) -> int:
    return value.nbytes if hasattr(value, "nbytes") else 0


def _column(pieces: list, tp: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """One Arrow column from a member's pieces, in order; 2-D numpy pieces (n, d) for
    fixed_size_list<d> columns."""
    arrow = any(isinstance(p, (pa.Array, pa.ChunkedArray)) for p in pieces)
    if arrow or len(pieces) > 1 and sum(_nbytes(p) for p in pieces) > _JOIN_BYTES:
        arrays = [p if isinstance(p, (pa.Array, pa.ChunkedArray)) else _column([p], tp) for p in pieces]
        flat = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
        return pa.chunked_array([a.cast(tp) if a.type != tp else a for a in flat], type=tp)
    values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    if pa.types.is_fixed_size_list(tp):
        d = tp.list_size
        if values.ndim != 2 or values.shape[1] != d:
            raise RowsError(f"a {tp} column takes arrays of shape (n, {d}); got {values.shape}")
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=tp.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, d)
    return pa.array(values, type=tp)


class Sink(Protocol):
    """Where a session's parts go, by (trial_id, table, part name)."""

    def write(self, trial_id: str, table: str, part: str, data: pa.Table) -> None: ...

    def read(self, trial_id: str, table: str, parts: Sequence[str], schema: pa.Schema) -> pa.Table: ...

    def keep_only(self, trial_id: str, parts: Mapping[str, Sequence[str]]) -> None: ...


class StoreSink:
    """Parts in the store's staging folder of one sweep (see lookinside.results)."""

    def __init__(self, store: Store, study: str, sweep_id: str):
        self.store, self.study, self.sweep_id = store, study, sweep_id

    def write(self, trial_id: str, table: str, part: str, data: pa.Table) -> None:
        self.store.stage(self.study, self.sweep_id, trial_id, table, part, data)

    def read(self, trial_id: str, table: str, parts: Sequence[str], schema: pa.Schema) -> pa.Table:
        return self.store.read_staged(self.study, self.sweep_id, trial_id, table, parts, schema)

    def keep_only(self, trial_id: str, parts: Mapping[str, Sequence[str]]) -> None:
        self.store.drop_staged(self.study, self.sweep_id, trial_id, parts)


class MemorySink:
    """Parts kept in this process, for sessions made by hand."""

    def __init__(self):
        self.parts: dict[tuple[str, str, str], pa.Table] = {}

    def write(self, trial_id: str, table: str, part: str, data: pa.Table) -> None:
        self.parts[trial_id, table, part] = data

    def read(self, trial_id: str, table: str, parts: Sequence[str], schema: pa.Schema) -> pa.Table:
        tables = [self.parts[trial_id, table, p] for p in parts]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def keep_only(self, trial_id: str, parts: Mapping[str, Sequence[str]]) -> None:
        for key in [k for k in self.parts if k[0] == trial_id and k[2] not in parts.get(k[1], ())]:
            del self.parts[key]


__all__ = ["FLUSH_BYTES", "MemorySink", "RowBuffer", "RowsError", "Sink", "StoreSink", "new_part_name"]
