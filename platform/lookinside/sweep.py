"""Sweeps: a study's grid, grouped into packs, run as Ray Tune trials, written to the store.

A sweep lives in ROOT/<study>/<sweep_id>/: `sweep.json` (the manifest: every trial's
config and the packs) and Ray Tune's own experiment state and checkpoints. Its rows go to
ROOT/<study>/<table>/sweep=<sweep_id>/. `resume` continues from the manifest and Tune's
state; trials whose `trials` row is already written are never trained again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from lookinside import config as cfg
from lookinside import packing
from lookinside.errors import UserError, one_line
from lookinside.progress import Progress
from lookinside.results import TRIALS, TRIALS_SCHEMA, Store
from lookinside.session import Session, restore_from_tune, tune_save_fn
from lookinside.study import Study

MANIFEST = "sweep.json"


@dataclasses.dataclass
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    checkpoint_seconds: float = 60.0
    pack: int | None = None   # members per pack; None chooses from memory and resources


@dataclasses.dataclass
class Outcome:
    sweep_dir: str
    total: int
    statuses: dict[str, str]          # trial_id -> TERMINATED / ERROR / MISSING
    errors: dict[str, str]            # trial_id -> why
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(s == "TERMINATED" for s in self.statuses.values())


def new_sweep_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def trials_schema(study: Study) -> pa.Schema:
    """The `trials` table: the platform's columns and one per scalar config field."""
    extra = []
    for name, tp in cfg.field_types(study.config).items():
        arrow = {int: pa.int64(), float: pa.float64(), bool: pa.bool_()}.get(
            cfg._is_optional(tp)[1], pa.string())
        extra.append(pa.field(name, arrow))
    return pa.schema(list(TRIALS_SCHEMA) + extra)


def all_schemas(study: Study) -> dict[str, pa.Schema]:
    return {**study.tables, TRIALS: trials_schema(study)}


def plan(study: Study, preset: str, values: Mapping[str, Any], grid: Mapping[str, Sequence[Any]],
         store: Store, resources: Resources) -> dict:
    """The manifest of a new sweep (validated; nothing written yet)."""
    configs = study.configs(preset, values, grid)
    sweep_id = new_sweep_id()
    trials = [{"trial_id": f"{sweep_id}-{i:05d}", "config": cfg.to_dict(c)} for i, c in enumerate(configs)]
    k = resources.pack or packing.choose_pack_size(study, configs, _slots(resources), packing.machine_memory())
    packs = packing.group(study, configs, k)
    return {
        "study": study.name, "sweep_id": sweep_id, "preset": preset,
        "values": dict(values), "grid": {k: list(v) for k, v in grid.items()},
        "swept": sorted(set(study.preset(preset).grid) | set(grid)),
        "trials": trials, "packs": packs, "resources": dataclasses.asdict(resources) | {"pack": k},
        "root": store.uri, "created_at": datetime.now(timezone.utc).isoformat(),
    }


def _slots(resources: Resources) -> int:
    """Trials this machine runs at once (a cluster's may be more; packs stay a useful size)."""
    if resources.gpus_per_trial > 0:
        return max(1, int(round(1 / resources.gpus_per_trial)))
    return max(1, int((os.cpu_count() or 1) // resources.cpus_per_trial))


def make_trainable(study: Study, manifest: dict, root: str):
    """The Tune function trainable for one pack of the sweep (`config["pack"]` is its index)."""
    res = manifest["resources"]

    def trainable(tune_config: dict) -> None:
        import torch
        from ray import tune

        torch.set_num_threads(max(1, int(res["cpus_per_trial"])))
        store = Store(root)
        sweep_id, name = manifest["sweep_id"], manifest["study"]
        pack_index = tune_config["pack"]
        members = [manifest["trials"][i] for i in manifest["packs"][pack_index]]

        # A pack whose members were all written already (its driver died before Tune
        # recorded the end) is done: it is not trained, nor counted as an attempt, again.
        statuses = store.committed_statuses(name, sweep_id, [m["trial_id"] for m in members])
        pending = [m for m in members if statuses[m["trial_id"]] != "TERMINATED"]
        if not pending:
            tune.report({"members_done": len(members)})
            return
        attempt = _record_attempt(store, name, sweep_id, pack_index)
        session = Session([m["trial_id"] for m in members], study.tables,
                          checkpoint_seconds=res["checkpoint_seconds"], restored=restore_from_tune(),
                          save_fn=tune_save_fn(lambda: {"members_done": 0}),
                          device=_device(res["gpus_per_trial"]))
        configs = [cfg.from_dict(study.config, m["config"]) for m in members]
        try:
            study.train(configs, session)
        except Exception:
            if len(members) == 1:
                raise  # Tune retries it, from its last checkpoint
            started = session.started_at
            session = isolate(study, configs, [m["trial_id"] for m in members], session.device)
            session.started_at = started
        _commit(study, store, sweep_id, members, pending, session, attempt)
        tune.report({"members_done": len(members)})

    return trainable


def _record_attempt(store: Store, study: str, sweep_id: str, pack_index: int) -> int:
    """Leaves a marker for this run of the pack (in the store, so it counts across nodes)
    and returns its number, 1 for the first."""
    marker_dir = _attempts_dir(store, study, sweep_id, pack_index)
    attempt = store.count(marker_dir) + 1
    store.write_json(f"{marker_dir}/{attempt:03d}-{socket.gethostname()}.json", {"attempt": attempt})
    return attempt


def _attempts_dir(store: Store, study: str, sweep_id: str, pack_index: int) -> str:
    return f"{store.sweep_dir(study, sweep_id)}/attempts/pack{pack_index:05d}"


def _commit(study: Study, store: Store, sweep_id: str, members: list[dict], pending: list[dict],
            session: Session, attempt: int) -> None:
    """Writes each pending member's rows, then its `trials` row: earlier attempts' files go
    first, and the `trials` row comes last, so it marks a member whose rows are all there."""
    finished = _now()
    pending_ids = {m["trial_id"] for m in pending}
    store.remove_trials(study.name, all_schemas(study), sweep_id, pending_ids)
    for i, member in enumerate(members):
        if member["trial_id"] not in pending_ids:
            continue
        trial_id = member["trial_id"]
        error = session.failures.get(i)
        if error is None:
            for table in study.tables:
                store.write(study.name, table, sweep_id, trial_id, session.member_table(table, i))
        row = trial_row(study, member, "ERROR" if error else "TERMINATED", attempt,
                        session.started_at, finished, error)
        store.write(study.name, TRIALS, sweep_id, trial_id, row)


def isolate(study: Study, configs: list, trial_ids: list[str], device: str) -> Session:
    """After a pack raised, trains each member alone, so that only the member whose own
    slice raises fails (with its own error) and the others are recorded as usual."""
    combined = Session(trial_ids, study.tables, device=device)
    errors = []
    for i, (config, trial_id) in enumerate(zip(configs, trial_ids)):
        alone = Session([trial_id], study.tables, device=device)
        try:
            study.train([config], alone)
        except Exception as err:  # noqa: BLE001 - recorded as this member's error
            combined.fail(i, f"{type(err).__name__}: {one_line(err)}")
            errors.append(err)
            continue
        for table in study.tables:
            combined.rows[table][i] = alone.rows[table][0]
        if alone.failed(0):
            combined.fail(i, alone.failures[0])
    if len(errors) == len(configs):
        raise errors[0]  # nothing is the members' own fault: let Tune retry the pack
    return combined


def _device(gpus_per_trial: float) -> str:
    import torch
    return "cuda" if gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"


def trial_row(study: Study, member: dict, status: str, attempt: int, started: datetime,
              finished: datetime, error: str | None) -> pa.Table:
    schema = trials_schema(study)
    config = member["config"]
    values = {"trial_id": member["trial_id"], "study": study.name, "status": status,
              "attempt": attempt, "node": socket.gethostname(), "started_at": started,
              "finished_at": finished, "config": json.dumps(config, sort_keys=True), "error": error}
    for name in config:
        v = config[name]
        values[name] = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return pa.Table.from_pylist([values], schema=schema)


def run(study: Study, manifest: dict, store: Store, address: str | None = None,
        resume: bool = False, show_progress: bool = True) -> Outcome:
    """Runs (or resumes) a sweep on Ray Tune and reports what became of every trial."""
    # Our own progress line replaces Tune's console reporter and its configuration table.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Results go to the Arrow store: of Tune's own loggers only the JSON one stays (its
    # result.json is where Tune reads a trial's last metrics back); the TensorBoard one
    # would import tensorboardX in the driver, 0.9 s of every run.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    start_ray(address)
    sweep_id, name = manifest["sweep_id"], manifest["study"]
    experiment = store.uri_under(name, sweep_id)
    res = manifest["resources"]
    trainable = tune.with_resources(make_trainable(study, manifest, store.uri),
                                    {"cpu": res["cpus_per_trial"], "gpu": res["gpus_per_trial"]})
    sizes = [len(p) for p in manifest["packs"]]
    progress = Progress(name, sum(sizes), sizes, enabled=show_progress)
    if resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True,
                                   resume_errored=True, param_space=_param_space(manifest))
    else:
        tuner = tune.Tuner(
            trainable, param_space=_param_space(manifest),
            # Reusing actors saves a process start and the imports per trial (3x on 1-epoch trials).
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_pack_name,
                                        trial_name_creator=_pack_name),
            run_config=tune.RunConfig(
                name=sweep_id, storage_path=store.uri_under(name), verbose=0,
                failure_config=tune.FailureConfig(max_failures=res["max_failures"]),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[progress, JsonLoggerCallback()]))
    interrupted = False
    grid = None
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    progress.close()
    pack_errors = {}
    if grid is not None:
        for result in grid:
            if result.error is not None:
                pack_errors[result.config["pack"]] = one_line(result.error, last=True)
    return settle(study, manifest, store, pack_errors, interrupted)


def _pack_name(trial) -> str:
    return f"pack{trial.config['pack']:05d}"


def _param_space(manifest: dict) -> dict:
    from ray import tune
    return {"pack": tune.grid_search(list(range(len(manifest["packs"]))))}


def settle(study: Study, manifest: dict, store: Store, pack_errors: dict[int, str],
           interrupted: bool) -> Outcome:
    """Writes ERROR rows for members of packs that failed for good; collects every status."""
    name, sweep_id = manifest["study"], manifest["sweep_id"]
    if not interrupted:
        for pack_index, why in pack_errors.items():
            attempts = store.count(_attempts_dir(store, name, sweep_id, pack_index))
            members = [manifest["trials"][i] for i in manifest["packs"][pack_index]]
            statuses = store.committed_statuses(name, sweep_id, [m["trial_id"] for m in members])
            # A pack that died while committing may have left some tables of a member: a
            # failed member keeps no rows but its ERROR row.
            store.remove_trials(name, all_schemas(study), sweep_id,
                                [m["trial_id"] for m in members if statuses[m["trial_id"]] is None])
            for member in members:
                if statuses[member["trial_id"]] is None:
                    now = _now()
                    store.write(name, TRIALS, sweep_id, member["trial_id"],
                                trial_row(study, member, "ERROR", attempts, now, now, why))
    statuses, errors = {}, {}
    try:
        rows = store.load(name, TRIALS, sweep_id).select(["trial_id", "status", "error"]).to_pylist()
    except Exception:  # noqa: BLE001 - no rows at all is reported as missing trials below
        rows = []
    found = {r["trial_id"]: r for r in rows}
    for member in manifest["trials"]:
        tid = member["trial_id"]
        row = found.get(tid)
        statuses[tid] = row["status"] if row else "MISSING"
        if row and row["status"] != "TERMINATED":
            errors[tid] = row["error"] or "unknown error"
    # Tune stops early on SIGINT without an error: trials left without a row mean just that.
    interrupted = interrupted or any(s == "MISSING" for s in statuses.values())
    return Outcome(sweep_dir=store.uri_under(name, sweep_id), total=len(manifest["trials"]),
                   statuses=statuses, errors=errors, interrupted=interrupted)


def start_ray(address: str | None) -> None:
    import logging

    import ray

    if ray.is_initialized():
        return
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to join is the user's to fix
            raise UserError(f"cannot join the Ray cluster at {address}: {one_line(err)}") from None
    else:
        # Embedded local Ray: this machine's CPUs, no dashboard; token auth stays on (Ray's default).
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **kwargs)


def _check_reachable(address: str) -> None:
    """Fails fast on an address nothing listens at (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def write_manifest(store: Store, manifest: dict) -> None:
    store.write_json(f"{store.sweep_dir(manifest['study'], manifest['sweep_id'])}/{MANIFEST}", manifest)


def read_manifest(store: Store, study: str, sweep_id: str) -> dict:
    return store.read_json(f"{store.sweep_dir(study, sweep_id)}/{MANIFEST}")


def print_summary(outcome: Outcome, stream=sys.stderr) -> None:
    done = sum(s == "TERMINATED" for s in outcome.statuses.values())
    print(f"{done}/{outcome.total} trials finished; results in {outcome.sweep_dir}", file=stream)
    failed = {t: s for t, s in outcome.statuses.items() if s != "TERMINATED"}
    for tid, status in failed.items():
        print(f"  {tid}: {status}: {outcome.errors.get(tid, 'did not finish')}", file=stream)
