"""After a pack raised: each member trained alone, so that only the member whose own slice
raises fails (with its own error) and the others are recorded as usual."""

from __future__ import annotations

from typing import Any

from lookinside.errors import one_line
from lookinside.session import Session, read_checkpoint
from lookinside.study import Study


def isolate(study: Study, configs: list, session: Session) -> None:
    """Trains each member of `session`'s pack alone, from the pack's last checkpoint where
    there is one and the study can split its state (`Study.member_state`), else from
    scratch; leaves each member's parts and failure in `session`. Raises the first error
    if every member still training raises: then nothing is the members' own fault, and
    Tune retries. (A study's member_state splits its pickled state; the checkpoint's files,
    if any, are handed to every member as they are.)"""
    snapshot = files = None
    if session.last_checkpoint is not None and study.member_state is not None:
        snapshot, files = read_checkpoint(session.last_checkpoint)
    session.drop_unwritten()
    failed_before = set(snapshot["failures"]) if snapshot else set()
    failures, errors = {}, []
    for i, config in enumerate(configs):
        alone = Session([session.trial_ids[i]], session.schemas, device=session.device, place=session.place,
                        sink=session.sink, restored=None if snapshot is None else member_snapshot(study, snapshot, i),
                        state_dir=files)
        try:
            study.train([config], alone)
            alone.flush()
        except Exception as err:  # noqa: BLE001 - recorded as this member's error
            failures[i] = f"{type(err).__name__}: {one_line(err)}"
            errors.append(err)
            continue
        finally:
            alone.close()
        for table in session.parts:
            session.parts[table][i] = alone.parts[table][0]
        if alone.failed(0):
            failures[i] = alone.failures[0]
    if errors and len(errors) == len(configs) - len(failed_before):
        raise errors[0]
    session.failures = failures


def member_snapshot(study: Study, snapshot: dict[str, Any], i: int) -> dict[str, Any]:
    """What a pack of member `i` alone would have saved at the pack's checkpoint."""
    return {"study_state": study.member_state(snapshot["study_state"], i),
            "parts": {t: [parts[i]] for t, parts in snapshot["parts"].items()},
            "failures": {0: snapshot["failures"][i]} if i in snapshot["failures"] else {},
            "checkpoints": snapshot["checkpoints"], "started_at": snapshot["started_at"]}
