"""A sweep whose driver is killed (SIGKILL or SIGINT) resumes: finished trials are not run
again, and no row is lost or duplicated."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest

from lookinside import results

STUDY = "information_bottleneck"
ARGS = ["--preset", "smoke", "--set", "epochs=2500", "--set", "kde_epochs=0", "--set", "logged_epochs=10",
        "--grid", "seed=0,1,2", "--checkpoint-seconds", "1", "--quiet"]


def start(root):
    return subprocess.Popen([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--results", str(root), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def committed(root):
    trials = root / STUDY / "trials"
    return list(trials.rglob("part-*.parquet")) if trials.exists() else []


def wait_for_some_trials(proc, root, n=1, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(committed(root)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.1)
    pytest.fail("no trial finished in time")


def reap(proc):
    """The killed driver's local Ray helpers share its process group; end them too."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def sweep_dir(root):
    (name,) = [p for p in (root / STUDY).iterdir() if p.name[:2] == "20"]
    return name


def check_complete(root, sweep, first_done):
    manifest = json.loads((sweep / "sweep.json").read_text())
    ids = sorted(t["trial_id"] for t in manifest["trials"])
    trials = results.load(str(root), STUDY, "trials")
    assert sorted(trials["trial_id"].to_pylist()) == ids                 # one row each, none missing
    assert set(trials["status"].to_pylist()) == {"TERMINATED"}
    metrics = results.load(str(root), STUDY, "metrics")
    per_trial = pc.value_counts(metrics["trial_id"]).to_pylist()
    assert sorted(c["values"] for c in per_trial) == ids
    assert {c["counts"] for c in per_trial} == {10}                      # logged_epochs rows, no duplicates
    information = results.load(str(root), STUDY, "information")
    assert {c["counts"] for c in pc.value_counts(information["trial_id"]).to_pylist()} == {10 * 6 * 2}
    # Trials committed before the kill keep the very files they wrote then (nothing of
    # theirs is rewritten), and packs whose members were all committed never ran again.
    for trial_id, files in first_done.items():
        assert files == trial_files(root, trial_id), trial_id
    attempts = {int(p.name[4:]): len(list(p.iterdir())) for p in (sweep / "attempts").iterdir()}
    for index, pack in enumerate(manifest["packs"]):
        if all(manifest["trials"][i]["trial_id"] in first_done for i in pack):
            assert attempts[index] == 1, (pack, attempts)


def trial_files(root, trial_id):
    return sorted(str(p) for p in (root / STUDY).rglob(f"part-{trial_id}-*.parquet"))


def finished_ids(root):
    """Trials with a `trials` row, and the files each has written."""
    ids = results.load(str(root), STUDY, "trials")["trial_id"].to_pylist()
    return {trial_id: trial_files(root, trial_id) for trial_id in ids}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path, sig):
    root = tmp_path / "results"
    proc = start(root)
    wait_for_some_trials(proc, root)
    proc.send_signal(sig)
    if sig == signal.SIGINT:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "lookinside resume" in err
    reap(proc)
    first_done = finished_ids(root)
    assert 1 <= len(first_done) < 6
    sweep = sweep_dir(root)
    out = subprocess.run([sys.executable, "-m", "lookinside.cli", "resume", str(sweep), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6/6 trials finished" in out.stderr
    check_complete(root, sweep, first_done)
