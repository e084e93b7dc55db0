"""The user's path: `lookinside run tensor_convnets --preset smoke`, then `report`; bad input gets
one line, exit 2, and nothing written."""

import pathlib
import sys

import pytest

from lookinside import results

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from inprocess import assert_refused, report_findings, smoke_sweep  # noqa: E402

STUDY = "tensor_convnets"


def test_smoke_sweep_then_report(tmp_path):
    root, out = tmp_path / "results", tmp_path / "report"
    _, trials = smoke_sweep(STUDY, root)
    assert len(trials) == 12 and set(trials.status) == {"TERMINATED"}
    acc = results.load(str(root), STUDY, "accuracy").to_pandas()
    # 8 training trials x 3 measurements x 2 splits, every accuracy a fraction
    assert len(acc) == 8 * 3 * 2 and acc["accuracy"].between(0, 1).all()
    ranks = results.load(str(root), STUDY, "separation_rank").to_pandas().merge(trials, on="trial_id")
    assert set(ranks["partition"]) >= {"left_right", "top_bottom", "odd_even", "random", "mirror_odd_even"}
    shallow = ranks[ranks["model"] == "shallow"]
    assert len(shallow) and (shallow["rank"] <= shallow["channels"]).all()
    report = report_findings(STUDY, root, out)
    for line in ("Pooling geometry: final test accuracy", "Separation rank", "Depth efficiency"):
        assert line in report.stdout, report.stdout
    for name in ("pooling_geometry.png", "separation_rank.png", "depth_efficiency.png"):
        assert (out / "latest" / name).stat().st_size > 10_000


@pytest.mark.parametrize("args,needle", [
    (["--set", "channels=0"], "field 'channels' must lie in [1, 4096]"),
    (["--set", "task=spirals"], "field 'task' must be one of"),
    (["--set", "side=4", "--set", "depth=3"], "depth 3 exceeds log2(side) = 2"),
    (["--set", "pooling=custom", "--set", "side=2", "--set", "permutation=0-1-1-3"], "a permutation of 0..3"),
    (["--set", "permutation=0-1-2-3"], "only with pooling=custom"),
    (["--set", "experiment=separation_rank", "--set", "side=8"], "side 8 is too large"),
    (["--set", "model=relu_max", "--set", "representation=gaussian"], "applies to model=convac"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    root = tmp_path / "results"
    assert_refused(STUDY, root, args, needle)
