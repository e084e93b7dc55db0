"""Bad input and faults found by trying the platform as a hostile or careless user would
(issue "Hardening"): each gets one line and exit 2, and nothing already written is lost."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from lookinside import report, results
from lookinside.cli import main

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import toy_study  # noqa: E402

TOY_ENV = {"LOOKINSIDE_STUDIES": "toy_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}


def lookinside(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lookinside.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **TOY_ENV}, timeout=timeout)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("args,needle", [
    (["--grid", "seed=1,1"], "field 'seed' lists '1' twice in --grid"),
    (["--grid", "train_fraction=0.5,0.50"], "field 'train_fraction' lists '0.50' twice in --grid"),
    (["--grid", "seed=0,1", "--grid", "seed=5"], "field 'seed' is given twice in --grid"),
    (["--set", "seed=1", "--set", "seed=2"], "field 'seed' is given twice in --set"),
    (["--set", "seed=3", "--grid", "seed=0,1"], "field 'seed' is given in both --set and --grid"),
    (["--set", "hidden=-3"], "field 'hidden' expects a '-'-separated list of int, got '-3'"),
    (["--set", "hidden=10--7"], "field 'hidden' expects a '-'-separated list of int, got '10--7'"),
    (["--results", ""], "results root is empty"),
])
def test_bad_sweep_input_is_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    extra = [] if "--results" in args else ["--results", str(tmp_path / "r")]
    assert main(["run", "information_bottleneck", "--preset", "smoke", *args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert tree(tmp_path) == []


@pytest.mark.parametrize("command", ["run", "report"])
def test_s3_root_without_a_bucket_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    import ray
    assert main([command, "information_bottleneck", "--results", "s3://"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results root 's3://'" in err, err
    assert not ray.is_initialized()


def test_report_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    assert main(["report", "information_bottleneck", "--results", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"lookinside: error: --out {tmp_path / 'out'} is a file, not a folder\n"
    assert (tmp_path / "out").read_text() == "mine"


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    """A finished toy sweep of three trials (one per pack); tests copy it before changing it."""
    root = tmp_path_factory.mktemp("toy") / "r"
    out = lookinside("run", "toy", "--preset", "smoke", "--results", str(root), "--quiet", "--pack", "1")
    assert out.returncode == 0, out.stderr
    (sweep,) = [p for p in (root / "toy").iterdir() if p.name[:2] == "20"]
    return root, sweep.name


def copy_sweep(toy_sweep, tmp_path):
    import shutil
    root, sweep_id = toy_sweep
    shutil.copytree(root, tmp_path / "r")
    return tmp_path / "r", sweep_id


@pytest.mark.parametrize("damage", ["truncated", "stray"])
def test_resume_with_a_corrupt_trials_file_names_it(toy_sweep, tmp_path, damage):
    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    partition = root / "toy" / "trials" / f"sweep_id={sweep_id}"
    if damage == "truncated":
        victim = sorted(partition.iterdir())[0]
        victim.write_bytes(victim.read_bytes()[:40])
    else:
        victim = partition / "notes.txt"
        victim.write_text("not a table")
    before = {p: p.read_bytes() for p in (root / "toy").rglob("*") if p.is_file()}
    out = lookinside("resume", str(root / "toy" / sweep_id), "--quiet")
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and str(victim) in out.stderr and "corrupt" in out.stderr, out.stderr
    assert {p: p.read_bytes() for p in (root / "toy").rglob("*") if p.is_file()} == before


@pytest.fixture
def immutable(tmp_path):
    """Makes a folder read-only even for root (chattr +i); undone at the end."""
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("this file system has no immutable attribute (chattr +i)")
        made.append(folder)
    yield make
    for folder in made:
        subprocess.run(["chattr", "-i", str(folder)])


def test_read_only_table_folder_is_found_before_anything_runs(tmp_path, immutable):
    root = tmp_path / "r"
    immutable(root / "toy" / "values")
    out = lookinside("run", "toy", "--preset", "smoke", "--results", str(root), "--quiet")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and f"cannot write results to {root / 'toy' / 'values'}" in out.stderr
    assert tree(root) == ["toy", "toy/values"]


@pytest.mark.parametrize("inside", ["toy/values", "toy/values/sweep_id={sweep}", "toy/{sweep}"])
def test_root_inside_other_results_is_rejected(toy_sweep, tmp_path, capsys, inside):
    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    nested = root / inside.format(sweep=sweep_id) / "mine"
    before = tree(root)
    assert main(["run", "information_bottleneck", "--results", str(nested)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lies inside" in err, err
    assert tree(root) == before


def test_a_second_driver_of_one_sweep_is_turned_away_and_a_dead_ones_lock_is_stale(toy_sweep, tmp_path):
    from lookinside.lock import LOCK, SweepLock
    from lookinside.results import Store

    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    store = Store(str(root))
    lock = SweepLock(store, "toy", sweep_id)
    lock.acquire()
    try:
        out = lookinside("resume", str(root / "toy" / sweep_id), "--quiet")
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1 and f"being run by process {os.getpid()}" in out.stderr, out.stderr
    finally:
        lock.release()
    assert not (root / "toy" / sweep_id / LOCK).exists()
    # A lock whose process is gone (a killed driver) does not hold the sweep.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / "toy" / sweep_id / LOCK).write_text(json.dumps(
        {"host": os.uname().nodename, "pid": dead.pid, "token": "x", "started": time.time(),
         "heartbeat": time.time()}))
    out = lookinside("resume", str(root / "toy" / sweep_id), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "3/3 trials finished" in out.stderr


def test_interrupted_report_leaves_the_previous_one_whole(toy_sweep, tmp_path):
    import dataclasses

    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    out = tmp_path / "out"

    def figures(tables, folder, stop=False):
        for name in ("a.png", "b.png"):
            pathlib.Path(folder, name).write_bytes((b"newer " if stop else b"new ") + name.encode())
            if stop:
                raise KeyboardInterrupt      # Ctrl-C half-way through the figures
        return []
    study = dataclasses.replace(toy_study.STUDY, figures=figures)
    folder = pathlib.Path(report.build(study, str(root), str(out))[0]).parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        report.build(dataclasses.replace(study, figures=lambda t, f: figures(t, f, stop=True)), str(root), str(out))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before     # no half-drawn figure, no stray folder
    assert sorted(p.name for p in out.iterdir()) == sorted([folder.name, "latest"])


def test_report_of_an_unfinished_sweep_says_so(toy_sweep, tmp_path):
    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    partition = root / "toy" / "trials" / f"sweep_id={sweep_id}"
    sorted(partition.iterdir())[0].unlink()                # one trial has not committed yet
    out = lookinside("report", "toy", "--results", str(root), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    note = f"sweep {sweep_id} did not finish: 2 of 3 trials done"
    assert note in out.stderr and note in (tmp_path / "out" / sweep_id / "index.html").read_text()
    from lookinside.lock import SweepLock
    from lookinside.results import Store
    with SweepLock(Store(str(root)), "toy", sweep_id):
        running = lookinside("report", "toy", "--results", str(root), "--out", str(tmp_path / "out"))
    assert f"sweep {sweep_id} is still running: 2 of 3 trials done" in running.stderr


def test_files_the_platform_reads_back_are_json_or_parquet(toy_sweep):
    """Pickles live only in trial checkpoints and in Ray Tune's own experiment state (and a
    study's artifacts hold whatever the study writes there)."""
    root, sweep_id = toy_sweep
    sweep = root / "toy" / sweep_id
    tune_state = {p for p in sweep.iterdir() if p.name.startswith("pack") or p.name.startswith(
        ("experiment_state", "tuner.pkl", "trainable.pkl", "basic-variant-state", ".validate"))}
    tune_state.add(sweep / "artifacts")
    for path in (root / "toy").rglob("*"):
        if path.is_file() and not any(t == path or t in path.parents for t in tune_state):
            assert path.suffix in (".json", ".parquet"), path
    assert results.load(str(root), "toy", "trials").num_rows == 3


def test_sweeps_lists_each_sweep_with_its_preset_counts_and_overrides(toy_sweep, tmp_path):
    root, sweep_id = copy_sweep(toy_sweep, tmp_path)
    again = lookinside("run", "toy", "--preset", "smoke", "--results", str(root), "--quiet", "--set", "steps=2",
                       "--grid", "seed=7,8")
    assert again.returncode == 0, again.stderr
    out = lookinside("sweeps", "toy", "--results", str(root))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["sweep", "preset", "done", "failed", "trials"] and len(lines) == 3
    assert lines[1].split()[:5] == [sweep_id, "smoke", "3", "0", "3"] and lines[1].endswith("--pack 1") is False
    assert lines[2].split()[1:5] == ["smoke", "2", "0", "2"] and lines[2].endswith("--set steps=2 --grid seed=7,8")
    missing = lookinside("sweeps", "toy", "--results", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
