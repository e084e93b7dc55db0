"""Running the study's train() in-process on a memory session, and its tables for findings."""

import dataclasses

import pyarrow as pa

from lookinside.session import Session
from lookinside.studies.implicit_regularization import STUDY, TABLES


def run(configs, pack=True):
    """train() on configs (one pack, or one member per call); returns (metrics, trials) tables."""
    groups = [configs] if pack else [[c] for c in configs]
    metrics, trial_rows = [], []
    for group in groups:
        ids = [f"t{len(trial_rows) + i}" for i in range(len(group))]
        session = Session(ids, TABLES)
        STUDY.train(group, session)
        for i, (trial_id, c) in enumerate(zip(ids, group)):
            metrics.append(session.member_table("metrics", i))
            trial_rows.append({"trial_id": trial_id, "status": "TERMINATED", "preset": "test",
                               **dataclasses.asdict(c)})
    return pa.concat_tables(metrics), pa.Table.from_pylist(trial_rows)


def tables(configs_by_pack):
    """{'metrics', 'trials'} of several packs, each trained as one."""
    parts = [run(c) for c in configs_by_pack]
    offset, metrics, trials = 0, [], []
    for m, t in parts:   # give every pack's trials distinct ids
        rename = {f"t{i}": f"t{offset + i}" for i in range(t.num_rows)}
        metrics.append(m.set_column(0, "trial_id", pa.array([rename[v] for v in m["trial_id"].to_pylist()])))
        trials.append(t.set_column(0, "trial_id", pa.array([rename[v] for v in t["trial_id"].to_pylist()])))
        offset += t.num_rows
    return {"metrics": pa.concat_tables(metrics), "trials": pa.concat_tables(trials)}
