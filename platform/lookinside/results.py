"""The results store: hive-partitioned Parquet datasets under a local path or an s3:// URI.

    ROOT/<study>/<table>/sweep_id=<sweep_id>/part-<trial_id>-<part>.parquet   committed rows
    ROOT/<study>/<sweep_id>/staging/<trial_id>/<table>/<part>.parquet          rows of a running trial
    ROOT/<study>/<sweep_id>/artifacts/<trial_id>/<name>/                       files a trial keeps

A running trial writes its rows in parts (32 hex digits each, in the order written) to its
staging folder, which no reader of the tables looks at. Committing a trial moves its parts
into the table partitions under their final names (a rename on a local disk, a server-side
copy on S3), then writes its `trials` row: that row marks a trial whose rows are all there,
and `load` returns only rows of trials that have it. A trial that runs again (a retry, a
resumed sweep) drops staged parts that its checkpoint does not list, and committed files of
its own that its part list does not name, so no row is lost or written twice.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lookinside.errors import UserError, one_line

TRIALS = "trials"
PARTITION = "sweep_id"

_SWEEP_PARTITIONING = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")
_PART_SUFFIX = 41        # "-" + 32 hex digits + ".parquet"


class ResultsError(UserError, RuntimeError):
    """Missing, unreadable or corrupt results; its message is one line meant for the user."""


def new_part_name(sequence: int) -> str:
    """32 hex digits: the part's sequence number (so a trial's parts sort in the order they
    were written) and a random tail (so two attempts never pick the same name)."""
    return f"{sequence:08x}{uuid.uuid4().hex[:24]}"


class Store:
    """One results root, local or remote, and the layout below it."""

    def __init__(self, root: str):
        self.root = str(root)
        if not self.root.strip():
            raise ResultsError("results root is empty; give a folder or an s3://bucket/prefix URI")
        try:
            if "://" in self.root:
                self.fs, path = pafs.FileSystem.from_uri(self.root)
            else:
                self.fs, path = pafs.LocalFileSystem(), os.path.abspath(self.root)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise ResultsError(f"results root {self.root!r} cannot be opened: {one_line(err)}") from None
        self.path = path.rstrip("/")
        if not self.path:
            raise ResultsError(f"results root {self.root!r} names no bucket")

    @property
    def uri(self) -> str:
        """The root as a string other processes (and Ray Tune) can open."""
        return self.root if "://" in self.root else self.path

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def check_writable_root(self) -> None:
        """Fails with one line unless the root is, or can become, a folder we can write;
        creates nothing."""
        info = self._info(self.path)
        if info.type == pafs.FileType.File:
            raise ResultsError(f"results root {self.root!r} is a file, not a directory")
        if not self.local:
            return  # object stores: the first write says (as one line) if it may not
        existing = self.path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise ResultsError(f"results root {self.root!r} is not writable: {existing} is not a writable folder")

    def check_writable_folders(self, study: str, tables: Iterable[str]) -> None:
        """Fails with one line unless every folder a sweep of `study` writes (the study's,
        each table's) is, or can become, a folder this process can write: probed by
        writing a file, so that a read-only folder is found before anything runs."""
        if not self.local:
            return
        for path in [f"{self.path}/{study}", *(f"{self.path}/{study}/{t}" for t in tables)]:
            existing = path
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing):
                raise ResultsError(f"cannot write results to {path}: {existing} is not a folder")
            probe = os.path.join(existing, f".lookinside-probe-{uuid.uuid4().hex[:8]}")
            try:
                open(probe, "w").close()
                os.remove(probe)
            except OSError as err:
                raise ResultsError(f"cannot write results to {path}: {existing}: {err.strerror or err}") from None

    def check_not_nested(self) -> None:
        """Fails with one line if the root lies inside another root's table or sweep folder,
        where readers would take its files for that table's."""
        parts = self.path.split("/")
        for i, part in enumerate(parts):
            if part.startswith(("sweep_id=", "sweep=")):
                raise ResultsError(f"results root {self.root!r} lies inside a table's partition "
                                   f"{'/'.join(parts[:i + 1])}; choose a folder outside other results")
        if not self.local:
            return
        ancestor = self.path
        while True:
            sweep = os.path.isfile(os.path.join(ancestor, "sweep.json"))
            if sweep or _holds_partitions(ancestor):
                raise ResultsError(f"results root {self.root!r} lies inside the {'sweep' if sweep else 'table'} "
                                   f"folder {ancestor} of other results; choose a folder outside them")
            parent = os.path.dirname(ancestor)
            if parent == ancestor:
                return
            ancestor = parent

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

    def uri_of(self, path: str) -> str:
        """The URI of a path of this store's file system (as `uri_under` gives it)."""
        return self.uri_under(*path[len(self.path):].strip("/").split("/"))

    def partition_dir(self, study: str, table: str, sweep_id: str) -> str:
        return f"{self.path}/{study}/{table}/{PARTITION}={sweep_id}"

    def staging_dir(self, study: str, sweep_id: str, trial_id: str) -> str:
        return f"{self.sweep_dir(study, sweep_id)}/staging/{trial_id}"

    def artifact_dir(self, study: str, sweep_id: str, trial_id: str, name: str) -> str:
        return f"{self.sweep_dir(study, sweep_id)}/artifacts/{trial_id}/{name}"

    # --- writing -------------------------------------------------------------------

    def _write_file(self, final: str, data: pa.Table) -> None:
        try:
            self.fs.create_dir(os.path.dirname(final), recursive=True)
            if self.local:
                # Readers skip names that start with '.', and ours does not end in .parquet.
                temporary = f"{os.path.dirname(final)}/.{os.path.basename(final)}.tmp"
                pq.write_table(data, temporary, filesystem=self.fs)
                self.fs.move(temporary, final)
            else:  # object stores: one PUT, visible whole or not at all
                pq.write_table(data, final, filesystem=self.fs)
        except OSError as err:
            raise ResultsError(f"cannot write {final}: {one_line(err)}") from None

    def write(self, study: str, table: str, sweep_id: str, trial_id: str, data: pa.Table) -> str:
        """Writes committed rows of one trial as one file (the `trials` row, say)."""
        final = f"{self.partition_dir(study, table, sweep_id)}/part-{trial_id}-{uuid.uuid4().hex}.parquet"
        self._write_file(final, data)
        return final

    def stage(self, study: str, sweep_id: str, trial_id: str, table: str, part: str, data: pa.Table) -> None:
        """Writes one part of a running trial's rows where no reader looks."""
        self._write_file(f"{self.staging_dir(study, sweep_id, trial_id)}/{table}/{part}.parquet", data)

    def staged(self, study: str, sweep_id: str, trial_id: str) -> dict[str, list[str]]:
        """table -> the staged parts of one trial, in the order written."""
        parts: dict[str, list[str]] = {}
        for info in self._list(self.staging_dir(study, sweep_id, trial_id), recursive=True):
            name = os.path.basename(info.path)
            if info.type == pafs.FileType.File and name.endswith(".parquet") and not name.startswith("."):
                parts.setdefault(os.path.basename(os.path.dirname(info.path)), []).append(name[:-8])
        return {table: sorted(names) for table, names in parts.items()}

    def read_staged(self, study: str, sweep_id: str, trial_id: str, table: str, parts: Sequence[str],
                    schema: pa.Schema) -> pa.Table:
        directory = f"{self.staging_dir(study, sweep_id, trial_id)}/{table}"
        tables = [pq.read_table(f"{directory}/{p}.parquet", filesystem=self.fs, schema=schema) for p in parts]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def drop_staged(self, study: str, sweep_id: str, trial_id: str, keep: dict[str, Sequence[str]]) -> None:
        """Deletes staged parts of one trial that `keep` (table -> parts) does not list."""
        directory = self.staging_dir(study, sweep_id, trial_id)
        for table, names in self.staged(study, sweep_id, trial_id).items():
            for name in set(names) - set(keep.get(table, ())):
                self.fs.delete_file(f"{directory}/{table}/{name}.parquet")

    def commit_parts(self, study: str, sweep_id: str, trial_id: str, table: str, parts: Sequence[str],
                     committed: dict[str, list[str]] | None = None) -> None:
        """Makes the listed parts the trial's committed rows of `table`: its committed files
        that the list does not name go (an earlier attempt's), then each staged part moves
        into the partition. Safe to repeat after a crash half-way (a moved part is there).
        `committed`: the partition's trial_files, listed once for several trials."""
        directory = self.partition_dir(study, table, sweep_id)
        final = {p: f"{directory}/part-{trial_id}-{p}.parquet" for p in parts}
        keep = set(final.values())
        if committed is None:
            committed = self.trial_files(study, table, sweep_id)
        for path in committed.get(trial_id, []):
            if path not in keep:
                self.fs.delete_file(path)
        if parts:
            self.fs.create_dir(directory, recursive=True)
        staging = f"{self.staging_dir(study, sweep_id, trial_id)}/{table}"
        for part, path in final.items():
            source = f"{staging}/{part}.parquet"
            if self.exists(source):
                self.fs.move(source, path)
            elif not self.exists(path):
                raise ResultsError(f"part {part} of trial {trial_id} ({table}) is neither staged nor committed")

    def clear_staging(self, study: str, sweep_id: str, trial_id: str) -> None:
        directory = self.staging_dir(study, sweep_id, trial_id)
        if self.exists(directory):
            self.fs.delete_dir(directory)

    def remove_trials(self, study: str, tables: Iterable[str], sweep_id: str, trial_ids: Iterable[str]) -> None:
        """Removes every committed file of these trials in these tables (not their staged
        parts: see clear_staging); one listing per table, however many trials."""
        wanted = set(trial_ids)
        for table in tables:
            for trial_id, paths in self.trial_files(study, table, sweep_id).items():
                if trial_id in wanted:
                    for path in paths:
                        self.fs.delete_file(path)

    def parts_present(self, study: str, sweep_id: str, trial_id: str, parts: dict[str, Sequence[str]]) -> bool:
        """Whether every listed part of a trial is still staged or committed (a checkpoint
        whose parts were removed, by a trial that failed for good say, cannot be continued)."""
        staged = self.staged(study, sweep_id, trial_id)
        for table, names in parts.items():
            if not names:
                continue
            committed = {os.path.basename(p)[len(f"part-{trial_id}-"):-8]
                         for p in self.trial_files(study, table, sweep_id).get(trial_id, [])}
            if set(names) - set(staged.get(table, ())) - committed:
                return False
        return True

    def check_readable(self, study: str, table: str, sweep_id: str) -> None:
        """One line naming a corrupt or stray file of a sweep's table, if it holds one."""
        if self.exists(self.partition_dir(study, table, sweep_id)):
            try:
                self.load(study, table, sweep_id)
            except ResultsError as err:
                if f"no '{table}' results" not in str(err):
                    raise

    def committed_statuses(self, study: str, sweep_id: str, trial_ids: Iterable[str]) -> dict[str, str | None]:
        """Each trial's status in its `trials` row, or None when it has none yet."""
        files = self.trial_files(study, TRIALS, sweep_id)
        statuses = {}
        for trial_id in trial_ids:
            paths = files.get(trial_id)
            try:
                statuses[trial_id] = (pq.read_table(paths[-1], filesystem=self.fs, columns=["status"])
                                      .column(0)[0].as_py() if paths else None)
            except (pa.ArrowException, OSError) as err:
                raise ResultsError(f"corrupt Parquet file {paths[-1]}: {one_line(err)}") from None
        return statuses

    def trial_files(self, study: str, table: str, sweep_id: str) -> dict[str, list[str]]:
        """trial_id -> its files in one table partition (part-<trial_id>-<32 hex>.parquet)."""
        files: dict[str, list[str]] = {}
        for info in self._list(self.partition_dir(study, table, sweep_id)):
            name = os.path.basename(info.path)
            if name.startswith("part-") and name.endswith(".parquet") and len(name) > 5 + _PART_SUFFIX:
                files.setdefault(name[5:-_PART_SUFFIX], []).append(info.path)
        return {trial_id: sorted(paths) for trial_id, paths in files.items()}

    # --- artifacts -------------------------------------------------------------------

    def scratch_for(self, path: str) -> str:
        """A new local folder to fill before `replace_dir(scratch, path)`: beside `path` on a
        local root (so the swap is a rename), a temporary folder otherwise."""
        if self.local:
            scratch = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}"
            os.makedirs(scratch)
            return scratch
        import tempfile
        return tempfile.mkdtemp(prefix="lookinside-artifact-")

    def replace_dir(self, scratch: str, path: str) -> None:
        """Puts the folder `scratch` (from `scratch_for`) at `path`, replacing what was there."""
        import shutil
        if self.local:
            old = f"{os.path.dirname(path)}/.{os.path.basename(path)}.old-{uuid.uuid4().hex[:8]}"
            if os.path.exists(path):
                os.rename(path, old)
            os.rename(scratch, path)
            shutil.rmtree(old, ignore_errors=True)
            return
        if self.exists(path):
            self.fs.delete_dir(path)
        pafs.copy_files(scratch, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)
        shutil.rmtree(scratch, ignore_errors=True)

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
        prefix = f"{PARTITION}="
        return sorted(os.path.basename(i.path)[len(prefix):] for i in self._list(f"{self.path}/{study}/{TRIALS}")
                      if i.type == pafs.FileType.Directory and os.path.basename(i.path).startswith(prefix))

    def require_sweep(self, study: str, sweep_id: str) -> None:
        """One line unless `sweep_id` of `study` has results here (for studies that read
        another sweep's tables, checked before anything runs)."""
        if sweep_id not in self.sweeps(study):
            raise ResultsError(f"no sweep {sweep_id} of study {study} under {self.root}")

    # --- reading ---------------------------------------------------------------------

    def load(self, study: str, table: str, sweep_id: str | Sequence[str] | None = None,
             schema: pa.Schema | None = None, columns: Sequence[str] | None = None,
             filter: pc.Expression | None = None, committed_ids: pa.Array | None = None) -> pa.Table:
        """Committed rows of `table`, with `sweep_id`: one sweep's, several, or all of them;
        only `columns` (plus `sweep_id`) and only rows matching `filter` when given.
        `committed_ids`: the trial ids of these sweeps' `trials` rows, when the caller has
        read them already (else they are read here)."""
        info = self._info(self.path)
        if info.type == pafs.FileType.File:
            raise ResultsError(f"results root {self.root!r} is a file, not a directory")
        if info.type == pafs.FileType.NotFound:
            raise ResultsError(f"results root {self.root!r} does not exist")
        base = f"{self.path}/{study}/{table}"
        sweep_ids = [sweep_id] if isinstance(sweep_id, str) else sweep_id
        directories = [base] if sweep_ids is None else [f"{base}/{PARTITION}={s}" for s in sweep_ids]
        for directory, sid in zip(directories, sweep_ids or [None]):
            if self._info(directory).type != pafs.FileType.Directory:
                what = f"sweep {sid} of " if sid else ""
                raise ResultsError(f"no '{table}' results for {what}study {study} under {self.root}")
        if columns is not None:
            columns = list(dict.fromkeys([*columns, PARTITION]))
        committed = None
        if table != TRIALS:
            # Rows of a trial count once its `trials` row is there: a reader during a commit
            # sees all of a trial's rows or none.
            if committed_ids is None:
                committed_ids = self._committed_ids(study, sweep_ids)
            committed = pc.field("trial_id").isin(committed_ids)
        where = committed if filter is None else filter if committed is None else committed & filter
        try:
            files = [i.path for d in directories for i in self._list(d, recursive=True)
                     if i.type == pafs.FileType.File and _is_data_file(i.path)]
            if not files:
                if schema is None:
                    raise ResultsError(f"no '{table}' results for study {study} under {self.root}")
                empty = _with_sweep(schema).empty_table()
                return empty if columns is None else empty.select(columns)
            # The partition is read from the path below the table's folder.
            dataset = ds.dataset(files, filesystem=self.fs, format="parquet", partitioning=_SWEEP_PARTITIONING,
                                 partition_base_dir=base, schema=None if schema is None else _with_sweep(schema))
            return dataset.to_table(columns=columns, filter=where)
        except (pa.ArrowException, OSError) as err:
            raise ResultsError(self._explain_corrupt(directories, err)) from None

    def _committed_ids(self, study: str, sweep_ids: Sequence[str] | None) -> pa.Array:
        base = f"{self.path}/{study}/{TRIALS}"
        if sweep_ids is None and self._info(base).type != pafs.FileType.Directory:
            return pa.array([], pa.string())
        present = [s for s in sweep_ids or [None] if s is None or self.exists(f"{base}/{PARTITION}={s}")]
        if not present:
            return pa.array([], pa.string())
        try:
            ids = self.load(study, TRIALS, None if present == [None] else present, columns=["trial_id"])["trial_id"]
        except ResultsError as err:
            if "no 'trials' results" in str(err):
                return pa.array([], pa.string())
            raise
        return ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())

    def _explain_corrupt(self, directories: list[str], err: Exception) -> str:
        for directory in directories:
            for info in self._list(directory, recursive=True):
                if info.type == pafs.FileType.File and _is_data_file(info.path):  # .parquet or a stray file
                    try:
                        pq.read_metadata(info.path, filesystem=self.fs)
                    except Exception as bad:  # noqa: BLE001 - any failure marks the file as bad
                        return f"corrupt Parquet file {info.path}: {one_line(bad)}"
        return f"cannot read results in {directories[0]}: {one_line(err)}"


def _holds_partitions(folder: str) -> bool:
    """Whether a local folder is a table folder (it holds sweep_id=... partitions)."""
    try:
        with os.scandir(folder) as entries:
            return any(e.name.startswith(f"{PARTITION}=") and e.is_dir() for e in entries)
    except OSError:
        return False


def _is_data_file(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith((".", "_"))


def _with_sweep(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(PARTITION, pa.string())) if PARTITION not in schema.names else schema


def load(root: str, study: str, table: str, sweep_id: str | Sequence[str] | None = None,
         columns: Sequence[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
    """Committed rows of `table` of `study` under `root`, with a `sweep_id` column: one
    sweep's (a string), several (a list) or all (None); only `columns` and rows matching
    `filter` (a pyarrow.compute expression, e.g. `pc.field("epoch") > 10`) when given."""
    return Store(root).load(study, table, sweep_id, columns=columns, filter=filter)
