"""The Tune function trainable: one pack of a sweep, from its checkpoint to its commit."""

from __future__ import annotations

import shutil
import sys
import tempfile

from lookinside import commit, isolation, ray_setup
from lookinside import config as cfg
from lookinside.results import Store
from lookinside.session import Place, Session, restore_from_tune, tune_report, tune_save
from lookinside.study import Study


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
        pending = {m["trial_id"] for m in members if statuses[m["trial_id"]] != "TERMINATED"}
        if not pending:
            for m in members:      # parts of a run that ended after its commit
                store.clear_staging(name, sweep_id, m["trial_id"])
            tune.report({"members_done": len(members)})
            return
        attempt = commit.record_attempt(store, name, sweep_id, pack_index)
        workdir = tempfile.mkdtemp(prefix="lookinside-trial-")
        try:
            def session_from(restore_dir: str | None) -> Session:
                return Session([m["trial_id"] for m in members], study.tables,
                               checkpoint_seconds=res["checkpoint_seconds"], device=_device(res["gpus_per_trial"]),
                               place=Place(store, name, sweep_id), restore_dir=restore_dir, workdir=workdir,
                               on_save=tune_save, on_report=tune_report)

            session = session_from(restore_from_tune(workdir))
            listed = [(m["trial_id"], {t: session.parts[t][i] for t in session.parts}) for i, m in enumerate(members)]
            if not all(store.parts_present(name, sweep_id, tid, parts) for tid, parts in listed if tid in pending):
                print(f"pack{pack_index:05d}: rows its checkpoint lists are gone; starting it again",
                      file=sys.stderr)
                session = session_from(None)
            configs = [cfg.from_dict(study.config, m["config"]) for m in members]
            try:
                study.train(configs, session)
            except Exception:
                if len(members) == 1:
                    raise  # Tune retries it, from its last checkpoint
                isolation.isolate(study, configs, session)
            node, host = ray_setup.node()
            commit.commit(study, store, sweep_id, members, pending, session, attempt, node, host)
            live = session.live
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        tune.report({"members_done": len(members), **({"live": live} if live else {})})

    return trainable


def _device(gpus_per_trial: float) -> str:
    import torch
    return "cuda" if gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
