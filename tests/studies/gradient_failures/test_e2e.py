"""The user's path: `lookinside run gradient_failures --preset smoke`, then `report`; bad input
gets one line, exit 2, and nothing written."""

import pathlib
import sys

import pytest

from lookinside import results
from lookinside.studies.gradient_failures.config import METHODS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from inprocess import assert_refused, report_findings, smoke_sweep  # noqa: E402

STUDY = "gradient_failures"


def test_smoke_sweep_then_report(tmp_path):
    root, out = tmp_path / "results", tmp_path / "report"
    _, trials = smoke_sweep(STUDY, root)
    # The whole grid: every experiment under each of its methods, one trial each.
    assert sorted(zip(trials.experiment, trials.method)) == sorted(
        (e, m) for e, methods in METHODS.items() for m in methods) and set(trials.status) == {"TERMINATED"}
    for table in ("metrics", "gradient_variance", "gradient_snr", "condition_numbers", "curves"):
        rows = results.load(str(root), STUDY, table)
        assert rows.column_names[0] == "trial_id" and rows.num_rows > 0, table
    report = report_findings(STUDY, root, out)
    for line in ("Parity: final test accuracy", "Tuples: final test accuracy", "Tuples: gradient SNR",
                 "Stocks: end-to-end", "Curves: condition number", "Flat activation: final"):
        assert line in report.stdout, report.stdout
    for name in ("parity.png", "tuples.png", "stocks.png", "tuples_snr.png", "curves.png", "flat_activation.png"):
        assert (out / "latest" / name).stat().st_size > 10_000


@pytest.mark.parametrize("args,needle", [
    (["--set", "d=0"], "field 'd' must lie in [1, 4096]"),
    (["--set", "experiment=parity", "--set", "method=whitened"], "does not apply to experiment parity"),
    (["--set", "experiment=nonsense"], "field 'experiment' must be one of"),
    (["--set", "experiment=tuples", "--set", "k=0"], "field 'k' must lie in [1, 4096]"),
    (["--set", "experiment=tuples", "--set", "snr_batches=1"], "field 'snr_batches' must lie in [2, 1e+06]"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    root = tmp_path / "results"
    assert_refused(STUDY, root, args, needle)
