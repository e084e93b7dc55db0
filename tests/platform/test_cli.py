"""The command line on bad input: one line naming the problem, a non-zero exit, nothing written."""

import subprocess
import sys

import pytest
import torch

from lookinside.cli import main


def lookinside(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lookinside.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_list_names_studies_presets_and_grid_sizes():
    from lookinside import study as studies
    out = lookinside("list")
    assert out.returncode == 0
    listed, current = {}, None
    for line in out.stdout.splitlines():
        if not line.startswith(" "):
            current = line.split(":")[0]
            listed[current] = {}
        else:
            listed[current][line.split()[0]] = int(line.split()[1])
    # Every study the package holds, each preset with its grid's size (however many studies there are).
    assert sorted(listed) == studies.names() and listed
    for name, presets in listed.items():
        study = studies.get(name)
        assert presets == {p: study.grid_size(p) for p in study.presets}


@pytest.mark.parametrize("args,needle", [
    (["run", "nosuch"], "unknown study 'nosuch'"),
    (["run", "information_bottleneck", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "information_bottleneck", "--set", "colour=red"], "unknown field 'colour'"),
    (["run", "information_bottleneck", "--set", "epochs=-1"], "field 'epochs' must lie in [1,"),
    (["run", "information_bottleneck", "--set", "epochs=many"], "field 'epochs' expects an integer"),
    (["run", "information_bottleneck", "--set", "train_fraction=0.99"], "field 'train_fraction' must lie"),
    (["run", "information_bottleneck", "--set", "activation=gelu"], "must be one of tanh, relu, linear"),
    (["run", "information_bottleneck", "--grid", "seed=1,x"], "field 'seed' expects an integer"),
    (["run", "information_bottleneck", "--set", "epochs"], "expected --set FIELD=VALUE"),
    (["run", "information_bottleneck", "--set", "dataset_path=/no/such.mat"], "no such file"),
    (["run", "information_bottleneck", "--pack", "0"], "--pack expects a positive integer"),
    (["run", "information_bottleneck", "--max-failures", "-2"], "--max-failures must be >= 0"),
    (["run", "information_bottleneck", "--cpus-per-trial", "0"], "--cpus-per-trial must lie"),
    pytest.param(["run", "information_bottleneck", "--gpus-per-trial", "0.5"], "needs a GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    (["run", "information_bottleneck", "--gpus-per-trial", "1.5"], "--gpus-per-trial must be a fraction"),
    (["run", "information_bottleneck", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["report", "nosuch"], "unknown study 'nosuch'"),
    (["resume", "nowhere"], "expected ROOT/STUDY/SWEEP_ID"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    extra = ["--quiet"] if args[0] == "resume" else ["--results", str(tmp_path / "r")]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert tree(tmp_path) == []


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    out = lookinside("run", "information_bottleneck", "--set", "epochs=-1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == "lookinside: error: field 'epochs' must lie in [1, 1e+06]; got -1\n"
    assert tree(tmp_path) == []


def test_results_root_that_is_a_file(tmp_path):
    root = tmp_path / "results"
    root.write_text("not a folder")
    for args in (["run", "information_bottleneck", "--preset", "smoke"], ["report", "information_bottleneck"]):
        out = lookinside(*args, "--results", str(root), cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1
        assert "is a file" in out.stderr
    assert root.read_text() == "not a folder"
    assert tree(tmp_path) == ["results"]


def test_bad_dataset_file_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "var_u.mat"
    bad.write_text("not a matlab file")
    out = lookinside("run", "information_bottleneck", "--preset", "smoke", "--results", str(tmp_path / "r"),
                     "--set", f"dataset_path={bad}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert str(bad) in out.stderr and "Traceback" not in out.stderr
    assert tree(tmp_path) == ["var_u.mat"]


def test_report_without_results(tmp_path):
    (tmp_path / "results").mkdir()
    out = lookinside("report", "information_bottleneck", "--results", str(tmp_path / "results"),
                     "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no 'trials' results for study information_bottleneck" in out.stderr
    assert not (tmp_path / "out").exists()


def test_main_returns_exit_code_in_process(capsys):
    assert main(["run", "nosuch"]) == 2
    assert "unknown study" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--cpus-per-trial", "--gpus-per-trial", "--checkpoint-seconds"])
def test_non_finite_resource_values(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "information_bottleneck", flag, "nan", "--results", str(tmp_path / "r")]) == 2
    assert f"{flag} must be a finite number" in capsys.readouterr().err
    assert tree(tmp_path) == []


def test_results_root_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    root = str(tmp_path / "file" / "sub")
    assert main(["run", "information_bottleneck", "--preset", "smoke", "--results", root]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not writable" in err


def test_a_missing_source_sweep_is_one_line_before_anything_is_written(tmp_path):
    import os
    import pathlib
    here = pathlib.Path(__file__).parent
    env = {**os.environ, "LOOKINSIDE_STUDIES": "toy_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "toy", "--preset", "smoke", "--results",
                          str(tmp_path / "r"), "--set", "source_sweep=20990101-000000-beef"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"lookinside: error: no sweep 20990101-000000-beef of study toy under "
                                  f"{tmp_path / 'r'}")
    assert not (tmp_path / "r").exists()


def test_every_option_of_run_has_help_and_the_default_preset_is_named():
    out = lookinside("run", "--help")
    assert out.returncode == 0
    options = [line for line in out.stdout.splitlines() if line.strip().startswith("--")]
    assert len(options) >= 12
    text = out.stdout.replace("\n", " ")
    for line in options:
        flag = line.split()[0].rstrip(",")
        after = text.split(flag, 1)[1].split("  --", 1)[0]
        assert len(after.split()) >= 3, f"{flag} has no help"
    assert "default: laptop" in text
    listed = lookinside("list").stdout
    assert "laptop" in listed and listed.count("[the default]") == len(
        [line for line in listed.splitlines() if not line.startswith(" ")])


def test_eta_counts_the_work_running_packs_report():
    from types import SimpleNamespace

    from lookinside.progress import LIVE, Progress
    progress = Progress("toy", total=6, pack_sizes=[2, 4], enabled=False)
    done = SimpleNamespace(config={"pack": 0}, status="TERMINATED", trial_id="a")
    running = SimpleNamespace(config={"pack": 1}, status="RUNNING", trial_id="b")
    assert progress.work_done([done, running]) == 2.0
    progress.on_trial_result(0, [done, running], running, {LIVE: {"progress": 0.25, "epoch": 10.0}})
    assert progress.work_done([done, running]) == 3.0          # a quarter of a pack of four
    assert progress.live([done, running]) == " | epoch 10"
