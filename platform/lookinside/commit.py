"""Committing a pack's members: their parts move into the tables, then their `trials` rows.

A member's `trials` row is written last, so it marks a member whose rows are all there.
Every step can run again after a crash half-way (see Store.commit_parts)."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from lookinside import trials
from lookinside.results import TRIALS, Store
from lookinside.session import Session
from lookinside.study import Study


def commit(study: Study, store: Store, sweep_id: str, members: list[dict], pending: set[str],
           session: Session, attempt: int, node: str | None, host: str | None) -> None:
    session.flush()
    finished = now()
    # One listing of each partition for the whole pack.
    committed = {table: store.trial_files(study.name, table, sweep_id) for table in study.tables}
    for i, member in enumerate(members):
        trial_id = member["trial_id"]
        if trial_id in pending:
            error = session.failures.get(i)
            # An older row of the member (ERROR, from an earlier run) goes first: while it is
            # there, readers would count the rows moving in below as committed.
            store.remove_trials(study.name, [TRIALS], sweep_id, [trial_id])
            # A failed member keeps no rows but its ERROR row.
            for table in study.tables:
                store.commit_parts(study.name, sweep_id, trial_id, table, [] if error else session.parts[table][i],
                                   committed[table])
            row = trials.row(study, member, "ERROR" if error else "TERMINATED", attempt, session.started_at,
                             finished, error, node, host)
            store.write(study.name, TRIALS, sweep_id, trial_id, row)
        # Committed members of a pack that ran again leave their new parts unused.
        store.clear_staging(study.name, sweep_id, trial_id)


def fail_uncommitted(study: Study, store: Store, sweep_id: str, members: list[dict], attempts: int,
                     why: str) -> None:
    """ERROR rows for the members of a pack that failed for good and have no `trials` row;
    whatever rows a member left (a pack that died while committing) go first."""
    statuses = store.committed_statuses(study.name, sweep_id, [m["trial_id"] for m in members])
    left = [m for m in members if statuses[m["trial_id"]] is None]
    store.remove_trials(study.name, trials.all_schemas(study), sweep_id, [m["trial_id"] for m in left])
    for member in members:
        if statuses[member["trial_id"]] != "TERMINATED":
            store.clear_staging(study.name, sweep_id, member["trial_id"])
    for member in left:
        t = now()
        store.write(study.name, TRIALS, sweep_id, member["trial_id"],
                    trials.row(study, member, "ERROR", attempts, t, t, why))


def record_attempt(store: Store, study: str, sweep_id: str, pack_index: int) -> int:
    """Leaves a marker for this run of the pack (in the store, so it counts across nodes)
    and returns its number, 1 for the first."""
    marker_dir = attempts_dir(store, study, sweep_id, pack_index)
    attempt = store.count(marker_dir) + 1
    store.write_json(f"{marker_dir}/{attempt:03d}-{socket.gethostname()}.json", {"attempt": attempt})
    return attempt


def attempts_dir(store: Store, study: str, sweep_id: str, pack_index: int) -> str:
    return f"{store.sweep_dir(study, sweep_id)}/attempts/pack{pack_index:05d}"


def now() -> datetime:
    return datetime.now(timezone.utc)
