"""The results store: hive-partitioned Parquet datasets under a local path or an s3:// URI.

    ROOT/<study>/<table>/sweep=<sweep_id>/part-<trial_id>-<uuid>.parquet

Each trial's rows of one table are one file, written atomically (a temporary name and a
rename on a local disk; a single object PUT on S3). A trial that runs again (a retry, a
resumed sweep) first removes its own earlier files, and writes its `trials` row last, so
a `trials` row marks a trial whose rows are all there.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lookinside.errors import UserError, one_line

TRIALS = "trials"

# The platform's own table, in every study; `config_schema` adds one column per scalar field.
TRIALS_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("study", pa.string()),
    ("status", pa.string()),          # TERMINATED or ERROR
    ("attempt", pa.int64()),          # 1 for the first run of the trial
    ("node", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("config", pa.string()),          # the whole config as JSON
    ("error", pa.string()),           # why, when status is ERROR
])

_SWEEP_PARTITIONING = ds.partitioning(pa.schema([("sweep", pa.string())]), flavor="hive")


class ResultsError(UserError, RuntimeError):
    """Missing, unreadable or corrupt results; its message is one line meant for the user."""


class Store:
    """One results root, local or remote, and the layout below it."""

    def __init__(self, root: str):
        self.root = str(root)
        try:
            if "://" in self.root:
                self.fs, path = pafs.FileSystem.from_uri(self.root)
            else:
                self.fs, path = pafs.LocalFileSystem(), os.path.abspath(self.root)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise ResultsError(f"results root {self.root!r} cannot be opened: {one_line(err)}") from None
        self.path = path.rstrip("/")

    @property
    def uri(self) -> str:
        """The root as a string other processes (and Ray Tune) can open."""
        return self.root if "://" in self.root else self.path

    def check_writable_root(self) -> None:
        """Fails with one line unless the root is, or can become, a folder we can write;
        creates nothing."""
        info = self._info(self.path)
        if info.type == pafs.FileType.File:
            raise ResultsError(f"results root {self.root!r} is a file, not a directory")
        if not isinstance(self.fs, pafs.LocalFileSystem):
            return  # object stores: the first write says (as one line) if it may not
        existing = self.path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise ResultsError(f"results root {self.root!r} is not writable: {existing} is not a writable folder")

    def exists(self, path: str) -> bool:
        return self._info(path).type != pafs.FileType.NotFound

    def _info(self, path_or_selector) -> pafs.FileInfo | list[pafs.FileInfo]:
        try:
            return self.fs.get_file_info(path_or_selector)
        except OSError as err:
            raise ResultsError(f"results root {self.root!r} cannot be read: {one_line(err)}") from None

    def _list(self, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
        return self._info(pafs.FileSelector(directory, recursive=recursive, allow_not_found=True))

    def sweep_dir(self, study: str, sweep_id: str) -> str:
        return f"{self.path}/{study}/{sweep_id}"

    def uri_under(self, *parts: str) -> str:
        """A URI below the root that other processes (and Ray Tune) can open; options in
        the root's query (s3://b/p?endpoint_override=...) stay after the path."""
        base, sep, query = self.uri.partition("?")
        return "/".join([base.rstrip("/"), *parts]) + sep + query

    def partition_dir(self, study: str, table: str, sweep_id: str) -> str:
        return f"{self.path}/{study}/{table}/sweep={sweep_id}"

    # --- writing -------------------------------------------------------------------

    def write(self, study: str, table: str, sweep_id: str, trial_id: str, data: pa.Table) -> str:
        directory = self.partition_dir(study, table, sweep_id)
        self.fs.create_dir(directory, recursive=True)
        final = f"{directory}/part-{trial_id}-{uuid.uuid4().hex}.parquet"
        if isinstance(self.fs, pafs.LocalFileSystem):
            # Readers skip names that start with '.', and ours does not end in .parquet.
            temporary = f"{directory}/.{os.path.basename(final)}.tmp"
            pq.write_table(data, temporary, filesystem=self.fs)
            self.fs.move(temporary, final)
        else:  # object stores: one PUT, visible whole or not at all
            pq.write_table(data, final, filesystem=self.fs)
        return final

    def remove_trials(self, study: str, tables: Iterable[str], sweep_id: str, trial_ids: Iterable[str]) -> None:
        """Removes every file of these trials (from earlier attempts) in these tables; one
        listing per table, however many trials."""
        wanted = set(trial_ids)
        for table in tables:
            for trial_id, paths in self.trial_files(study, table, sweep_id).items():
                if trial_id in wanted:
                    for path in paths:
                        self.fs.delete_file(path)

    def committed_statuses(self, study: str, sweep_id: str, trial_ids: Iterable[str]) -> dict[str, str | None]:
        """Each trial's status in its `trials` row, or None when it has none yet."""
        files = self.trial_files(study, TRIALS, sweep_id)
        statuses = {}
        for trial_id in trial_ids:
            paths = files.get(trial_id)
            statuses[trial_id] = (pq.read_table(paths[-1], filesystem=self.fs, columns=["status"]).column(0)[0].as_py()
                                  if paths else None)
        return statuses

    def trial_files(self, study: str, table: str, sweep_id: str) -> dict[str, list[str]]:
        """trial_id -> its files in one table partition (part-<trial_id>-<32 hex>.parquet)."""
        files: dict[str, list[str]] = {}
        for info in self._list(self.partition_dir(study, table, sweep_id)):
            name = os.path.basename(info.path)
            if name.startswith("part-") and name.endswith(".parquet") and len(name) > 46:
                files.setdefault(name[5:-41], []).append(info.path)
        return {trial_id: sorted(paths) for trial_id, paths in files.items()}

    # --- small JSON documents (sweep manifests, attempt markers) -------------------

    def write_json(self, path: str, document: dict) -> None:
        try:
            self.fs.create_dir(os.path.dirname(path), recursive=True)
            with self.fs.open_output_stream(path) as out:
                out.write(json.dumps(document, indent=1, sort_keys=True).encode())
        except OSError as err:
            raise ResultsError(f"cannot write {path}: {one_line(err)}") from None

    def read_json(self, path: str) -> dict:
        try:
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise ResultsError(f"no sweep manifest at {path}") from None
        except (OSError, ValueError) as err:
            raise ResultsError(f"cannot read {path}: {one_line(err)}") from None

    def count(self, directory: str) -> int:
        return len(self._list(directory))

    def sweeps(self, study: str) -> list[str]:
        """Sweep ids with a `trials` partition, oldest first (ids begin with their time)."""
        return sorted(os.path.basename(i.path)[len("sweep="):] for i in self._list(f"{self.path}/{study}/{TRIALS}")
                      if i.type == pafs.FileType.Directory and os.path.basename(i.path).startswith("sweep="))

    # --- reading ---------------------------------------------------------------------

    def load(self, study: str, table: str, sweep_id: str | None = None,
             schema: pa.Schema | None = None) -> pa.Table:
        directory = f"{self.path}/{study}/{table}"
        info = self._info(self.path)
        if info.type == pafs.FileType.File:
            raise ResultsError(f"results root {self.root!r} is a file, not a directory")
        if info.type == pafs.FileType.NotFound:
            raise ResultsError(f"results root {self.root!r} does not exist")
        if sweep_id is not None:
            directory = f"{directory}/sweep={sweep_id}"
        if self._info(directory).type != pafs.FileType.Directory:
            what = f"sweep {sweep_id} of " if sweep_id else ""
            raise ResultsError(f"no '{table}' results for {what}study {study} under {self.root}")
        try:
            # The partition is read from the path below the table's folder, one sweep or all.
            dataset = ds.dataset(directory, filesystem=self.fs, format="parquet", partitioning=_SWEEP_PARTITIONING,
                                 partition_base_dir=f"{self.path}/{study}/{table}",
                                 schema=None if schema is None else _with_sweep(schema))
            result = dataset.to_table()
        except (pa.ArrowException, OSError) as err:
            raise ResultsError(self._explain_corrupt(directory, err)) from None
        return result.rename_columns(["sweep_id" if c == "sweep" else c for c in result.column_names])

    def _explain_corrupt(self, directory: str, err: Exception) -> str:
        for info in self._list(directory, recursive=True):
            if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
                try:
                    pq.read_metadata(info.path, filesystem=self.fs)
                except Exception as bad:  # noqa: BLE001 - any failure marks the file as bad
                    return f"corrupt Parquet file {info.path}: {one_line(bad)}"
        return f"cannot read results in {directory}: {one_line(err)}"


def _with_sweep(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("sweep", pa.string())) if "sweep" not in schema.names else schema


def load(root: str, study: str, table: str, sweep_id: str | None = None) -> pa.Table:
    """All rows of `table` of `study` under `root` (one sweep's, if given), with `sweep_id`."""
    return Store(root).load(study, table, sweep_id)
