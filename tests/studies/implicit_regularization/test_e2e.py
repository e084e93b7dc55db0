"""The user's path: `lookinside run implicit_regularization --preset smoke`, then `report`;
bad input gets one line, exit 2, and nothing written."""

import pathlib
import sys

import pytest

from lookinside import results

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from inprocess import assert_refused, report_findings, smoke_sweep  # noqa: E402

STUDY = "implicit_regularization"


def test_smoke_sweep_then_report(tmp_path):
    root, out = tmp_path / "results", tmp_path / "report"
    run, trials = smoke_sweep(STUDY, root)
    assert "8/8 trials finished" in run.stderr
    assert sorted(set(trials.hidden)) == [4, 16, 64, 256] and set(trials.status) == {"TERMINATED"}
    metrics = results.load(str(root), STUDY, "metrics")
    assert metrics.column_names[0] == "trial_id" and set(metrics["trial_id"].to_pylist()) == set(trials.trial_id)
    report = report_findings(STUDY, root, out)
    assert "'larger is no worse' holds" in report.stdout
    page = (out / "latest" / "index.html").read_text()
    assert (out / "latest" / "width.png").stat().st_size > 10_000 and "In this run" in page


def write_bad_idx(folder):
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"garbage")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")


@pytest.mark.parametrize("args,needle", [
    (["--set", "hidden=0"], "field 'hidden' must lie in [1, 8192]"),
    (["--set", "label_noise=1.5"], "label_noise"),
    (["--set", "dataset=mnist"], "needs data_dir"),
    (["--set", "dataset=mnist", "--set", "data_dir=/no/such/folder"], "no such folder"),
    (["--set", "dataset=mnist", "--set", "data_dir=BAD"], "MNIST folder"),
    (["--set", "dataset=cifar10", "--set", "data_dir=BAD"], "CIFAR-10 folder"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    write_bad_idx(tmp_path / "bad")
    root = tmp_path / "results"
    args = [a.replace("BAD", str(tmp_path / "bad")) for a in args]
    assert_refused(STUDY, root, args, needle)
