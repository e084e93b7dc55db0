"""`report` over one sweep, several or all, loading only the columns figures read; and the
helpers a study's figures module uses."""

import dataclasses
import os
import pathlib
import subprocess
import sys

import pyarrow as pa
import pytest

from lookinside import report, trials
from lookinside.results import Store

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import toy_study  # noqa: E402

SEEN = {}


def figures(tables, out):
    SEEN.update({name: table.column_names for name, table in tables.items()})
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    values = report.with_config(tables["values"], report.finished_trials(tables["trials"], ["seed"]))
    ax.plot(values["step"], values["seed"])
    caption = f"{len(values)} rows of {values['seed'].nunique()} seeds"
    return [report.save_figure(fig, out, "steps.png", "Steps", caption)]


STUDY = dataclasses.replace(toy_study.STUDY, figures=figures, figure_columns={"values": ["step"]})


def write_sweep(store, sweep_id, seeds, failed=()):
    for seed in seeds:
        trial_id = f"{sweep_id}-{seed:05d}"
        member = {"trial_id": trial_id, "config": {**toy_study.ToyConfig().__dict__, "seed": seed}}
        if seed not in failed:
            store.write("toy", "values", sweep_id, trial_id, pa.table(
                {"trial_id": [trial_id] * 2, "step": [0, 1], "value": [seed, seed], "resumed_from": [-1, -1],
                 "file_step": [-1, -1]}, schema=toy_study.TABLES["values"]))
        now = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
        status = "ERROR" if seed in failed else "TERMINATED"
        store.write("toy", "trials", sweep_id, trial_id, trials.row(STUDY, member, status, 1, now, now, None))


@pytest.fixture
def root(tmp_path):
    store = Store(str(tmp_path / "r"))
    write_sweep(store, "20260101-000000-aaaa", [0, 1])
    write_sweep(store, "20260102-000000-bbbb", [2, 3, 4], failed=(4,))
    return str(tmp_path / "r")


def test_latest_sweep_by_default_with_only_the_figures_columns(root, tmp_path):
    index, notes = report.build(STUDY, root, str(tmp_path / "out"))
    page = pathlib.Path(index).read_text()
    assert "Sweep <code>20260102-000000-bbbb</code>" in page and "aaaa" not in page
    assert SEEN["values"] == ["trial_id", "step", "sweep_id"]             # value, resumed_from... not loaded
    assert "4 rows of 2 seeds" in page and (tmp_path / "out" / "20260102-000000-bbbb" / "steps.png").exists()
    assert pathlib.Path(index) == tmp_path / "out" / "20260102-000000-bbbb" / "index.html"
    assert os.readlink(tmp_path / "out" / "latest") == "20260102-000000-bbbb"
    # The older sweep's report goes to its own folder; `latest` keeps pointing at the newer.
    older, _ = report.build(STUDY, root, str(tmp_path / "out"), ["20260101-000000-aaaa"])
    assert pathlib.Path(older).parent.name == "20260101-000000-aaaa"
    assert os.readlink(tmp_path / "out" / "latest") == "20260102-000000-bbbb"
    assert "preset smoke" not in page and "20260102-000000-bbbb: no manifest" in page


@pytest.mark.parametrize("sweeps", [["all"], ["20260101-000000-aaaa", "20260102-000000-bbbb"]])
def test_several_sweeps(root, tmp_path, sweeps):
    page = pathlib.Path(report.build(STUDY, root, str(tmp_path / "out"), sweeps)[0]).read_text()
    assert "Sweeps <code>20260101-000000-aaaa</code>, <code>20260102-000000-bbbb</code>" in page
    assert "8 rows of 4 seeds" in page and "<th>sweep_id</th>" in page


def test_command_line_sweep_flags(root, tmp_path):
    env = {**os.environ, "LOOKINSIDE_STUDIES": "toy_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lookinside.cli", "report", "toy", "--results", root,
                               "--out", str(tmp_path / "out"), *args], capture_output=True, text=True, env=env,
                              timeout=120)
    assert run("--sweep", "all").returncode == 0
    assert "aaaa" in (tmp_path / "out" / "all" / "index.html").read_text()
    bad = run("--sweep", "20260101-000000-aaaa", "--sweep", "nosuch")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no sweep nosuch of study toy" in bad.stderr
    both = run("--sweep", "all", "--sweep", "20260101-000000-aaaa")
    assert both.returncode == 2 and "--sweep all stands alone" in both.stderr
