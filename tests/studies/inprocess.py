"""Shared by the studies' tests: a study's train() in-process on a memory session (no Ray, no results
store, one torch thread by default: two threads on two shared cores run tiny nets 5-20x slower), a
pack stopped at a checkpoint and continued from disk, and the command line in a fresh process."""

import dataclasses
import subprocess
import sys

import pyarrow as pa
import torch

from lookinside import results
from lookinside.rows import MemorySink
from lookinside.session import Session


def run(study, configs, pack=True, threads=1):
    """train() on configs (one pack, or one member per call); returns {table: pa.Table} with `trials`.
    threads None leaves torch's thread count as it is."""
    if threads is not None:
        torch.set_num_threads(threads)
    groups = [configs] if pack else [[c] for c in configs]
    parts = {t: [] for t in study.tables}
    trial_rows = []
    for group in groups:
        ids = [f"t{len(trial_rows) + i}" for i in range(len(group))]
        session = Session(ids, study.tables)
        study.train(group, session)
        for i, (trial_id, c) in enumerate(zip(ids, group)):
            for t in study.tables:
                parts[t].append(session.member_table(t, i))
            trial_rows.append({"trial_id": trial_id, "status": "TERMINATED", "preset": "test",
                               **{k: "-".join(map(str, v)) if isinstance(v, tuple) else v
                                  for k, v in dataclasses.asdict(c).items()}})
    found = {t: pa.concat_tables(p) if p else study.tables[t].empty_table() for t, p in parts.items()}
    return {**found, "trials": pa.Table.from_pylist(trial_rows)}


def tables(study, packs, threads=1):
    """The tables of several packs, each trained as one, with distinct trial ids."""
    parts = [run(study, p, threads=threads) for p in packs]
    offset, merged = 0, {t: [] for t in [*study.tables, "trials"]}
    for part in parts:
        rename = {f"t{i}": f"t{offset + i}" for i in range(part["trials"].num_rows)}
        for t, table in part.items():
            ids = pa.array([rename[v] for v in table["trial_id"].to_pylist()], pa.string())
            merged[t].append(table.set_column(0, "trial_id", ids))
        offset += part["trials"].num_rows
    return {t: pa.concat_tables(v) for t, v in merged.items()}


def train_interrupted(study, configs, tables, interrupt_after=None):
    """One pack; with interrupt_after, stops at that checkpoint and continues in a fresh session from it
    (through the disk, as a retried trial), dropping the rows written after it. Returns {table: [one
    pandas frame per member]} for `tables`."""
    torch.set_num_threads(1)
    saved = []

    class Stop(Exception):
        pass

    def save(directory):
        saved.append(directory)
        if len(saved) == interrupt_after:
            raise Stop

    ids, sink = [f"t{i}" for i in range(len(configs))], MemorySink()
    session = first = Session(ids, study.tables, checkpoint_seconds=0, sink=sink,
                              on_save=save if interrupt_after else None)
    try:
        study.train(configs, session)
    except Stop:
        session = Session(ids, study.tables, sink=sink, restore_dir=saved[-1])
        study.train(configs, session)
    found = {t: [session.member_table(t, p).to_pandas() for p in range(len(configs))] for t in tables}
    first.close()
    return found


def lookinside(*args, timeout=300):
    """The command line, as a user runs it, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "lookinside.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def smoke_sweep(study: str, root):
    """`lookinside run study --preset smoke` into `root`, which must succeed: the run and its `trials` rows."""
    run = lookinside("run", study, "--preset", "smoke", "--results", str(root), "--quiet")
    assert run.returncode == 0, run.stderr
    return run, results.load(str(root), study, "trials").to_pandas()


def report_findings(study: str, root, out):
    """`lookinside report study --findings` from `root` into `out`, which must succeed."""
    report = lookinside("report", study, "--results", str(root), "--out", str(out), "--findings")
    assert report.returncode == 0, report.stderr
    return report


def assert_refused(study: str, root, args, needle):
    """`lookinside run study --preset smoke *args` exits 2 with one line holding `needle`, writing no rows."""
    run = lookinside("run", study, "--preset", "smoke", "--results", str(root), *args)
    assert run.returncode == 2, run.stderr
    assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not root.exists() or not any(root.rglob("*.parquet"))
