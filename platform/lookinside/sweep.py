"""Running a planned sweep on Ray Tune, and settling what became of every trial.

A sweep lives in ROOT/<study>/<sweep_id>/: `sweep.json` (the manifest, lookinside.manifest)
and Ray Tune's own experiment state and checkpoints. Each pack of the manifest is one Tune
trial (lookinside.trainable) in its own placement group (lookinside.planning.bundles). Its
rows go to ROOT/<study>/<table>/sweep_id=<sweep_id>/ when it commits (lookinside.commit).
`resume` continues from the manifest and Tune's state; trials whose `trials` row is already
written are never trained again.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from lookinside import commit, ray_setup
from lookinside.errors import one_line
from lookinside.progress import Progress
from lookinside.results import TRIALS, ResultsError, Store
from lookinside.study import Study
from lookinside.trainable import make_trainable


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

    ray_setup.start_ray(address)
    sweep_id, name = manifest["sweep_id"], manifest["study"]
    experiment = store.uri_under(name, sweep_id)
    res = manifest["resources"]
    trainable = tune.with_resources(make_trainable(study, manifest, store.uri), _pack_resources(manifest))
    sizes = [len(p) for p in manifest["packs"]]
    progress = Progress(name, sum(sizes), sizes, enabled=show_progress)
    if resume and tune.Tuner.can_restore(experiment):
        # Packs that failed for good start again from scratch: their rows were removed when
        # they were settled, so their checkpoints cannot be continued.
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True,
                                   restart_errored=True, param_space=_param_space(manifest))
    else:
        tuner = tune.Tuner(
            trainable, param_space=_param_space(manifest),
            # Reusing actors saves a process start and the imports per trial (3x on 1-epoch trials).
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_pack_name,
                                        trial_name_creator=_pack_name),
            run_config=tune.RunConfig(
                name=sweep_id, storage_path=store.uri_under(name), verbose=0,
                failure_config=tune.FailureConfig(max_failures=res["max_failures"]),
                # Two, not one: Tune deletes an older checkpoint before the experiment state
                # that names the newer one is uploaded, so a driver killed in between would
                # resume a trial from a checkpoint already gone (it then fails, and only a
                # second resume restarts it from scratch). Keeping the one before narrows that
                # window to an upload lagging two checkpoints behind.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
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


def _pack_resources(manifest: dict):
    """Each pack's placement group, from the bundles planned for it (one CPU bundle by
    default; a learner and its env runners for a study that asks)."""
    from ray import tune

    bundles = manifest.get("bundles") or [[{"CPU": manifest["resources"]["cpus_per_trial"]}]] * len(manifest["packs"])
    return lambda config: tune.PlacementGroupFactory(bundles[config["pack"]])


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
            attempts = store.count(commit.attempts_dir(store, name, sweep_id, pack_index))
            members = [manifest["trials"][i] for i in manifest["packs"][pack_index]]
            commit.fail_uncommitted(study, store, sweep_id, members, attempts, why)
    statuses, errors = {}, {}
    try:
        rows = store.load(name, TRIALS, sweep_id, columns=["trial_id", "status", "error"]).to_pylist()
    except ResultsError as err:
        if f"no '{TRIALS}' results" not in str(err):
            raise        # a corrupt file: one line, not every trial taken for missing
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


def print_summary(outcome: Outcome, stream=sys.stderr) -> None:
    done = sum(s == "TERMINATED" for s in outcome.statuses.values())
    print(f"{done}/{outcome.total} trials finished; results in {outcome.sweep_dir}", file=stream)
    failed = {t: s for t, s in outcome.statuses.items() if s != "TERMINATED"}
    for tid, status in failed.items():
        print(f"  {tid}: {status}: {outcome.errors.get(tid, 'did not finish')}", file=stream)
