"""The whole path a user takes: `lookinside run --preset smoke`, then `lookinside report`."""

import os
import subprocess
import sys

import duckdb

from lookinside import results
from lookinside.report import load_sweep
from lookinside.studies.information_bottleneck import STUDY as IB
from lookinside.studies.information_bottleneck import findings

STUDY = "information_bottleneck"


def results_tables(root):
    return load_sweep(IB, str(root))[1]


def assert_smoke_findings(tables):
    """The findings that hold on the smoke preset's run (60 epochs, seeds 0 and 1, 80% training
    data). Measured figures are quoted beside each bound; the run is deterministic (the same
    figures whether its seeds are packed together or not)."""
    comp = findings.compression(tables).droplevel("train_fraction")
    assert comp["seeds"].tolist() == [2] * 4          # 2 activations x 2 binning rules
    # Compression under tanh: the last hidden layer's I(X;T) falls from its peak (epoch 5)
    # by the end. Measured: bin_fixed 0.456 and 0.869 bits, bin_observed 0.548 and 0.946 bits.
    assert comp.loc[("tanh", "bin_fixed"), "min_drop"] > 0.3, comp
    assert comp.loc[("tanh", "bin_observed"), "min_drop"] > 0.3, comp
    # Saxe et al.: ReLU with bins over the observed range does not compress. Measured: 0.000
    # bits for both seeds (still rising at epoch 60, 3.28 -> 3.55 and 6.11 -> 6.80 bits).
    assert comp.loc[("relu", "bin_observed"), "max_drop"] < 0.05, comp
    # Not asserted: the tanh-vs-ReLU contrast under fixed bins does not hold at smoke scale;
    # ReLU's drop there is larger than tanh's (mean 1.243 bits; 0.308 and 2.177 per seed).
    # test_trial's 400-epoch runs test that contrast.
    # Still fitting, no overfitting yet: I(T;Y) of the last hidden layer ends at its peak.
    # Measured: 0.000 bits of drop for every activation and rule.
    assert (comp["mean_i_ty_drop"] < 0.01).all(), comp
    acc = findings.accuracy(tables).droplevel("train_fraction")
    assert acc.index.tolist() == ["relu", "tanh"]
    # Chance is 0.5. Measured: test 0.920 (relu) and 0.910 (tanh); train 0.936 and 0.922.
    assert (acc["test_acc"] > 0.85).all() and (acc["train_acc"] > 0.85).all(), acc
    # Drift to diffusion: after the gradient mean's peak its std overtakes it, in some layer of
    # each activation. Measured (mean peaks at epoch 9): tanh layers 4 and 5 at epoch 18, relu
    # layer 5 at 18 and 6 at 33; layers 1-3's mean still peaks at the last epoch, 60.
    snr = findings.snr_transition(tables).dropna(subset=["std_exceeds_mean_epoch"])
    assert set(snr.index.get_level_values("activation")) == {"relu", "tanh"}, snr


def test_smoke_sweep_writes_four_tables_and_report_draws_them(tmp_path, capsys):
    root, out = tmp_path / "results", tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--preset", "smoke",
                          "--results", str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "4/4 trials finished" in run.stderr
    assert "4/4 done, 0 running, 0 failed" in run.stderr              # the progress line
    assert "Token authentication" not in run.stderr and "\x1b" not in run.stderr

    trials = results.load(str(root), STUDY, "trials").to_pandas()
    assert len(trials) == 4 and set(trials.status) == {"TERMINATED"}
    assert sorted(zip(trials.activation, trials.seed)) == [("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1)]
    assert (trials.attempt == 1).all() and (trials.finished_at >= trials.started_at).all()
    assert set(trials.preset) == {"smoke"} and set(trials.study) == {STUDY}
    for table in ("information", "gradients", "metrics"):
        data = results.load(str(root), STUDY, table)
        assert set(data["trial_id"].to_pylist()) == set(trials.trial_id), table
    # logged_epochs=8 in the smoke preset: 8 metrics rows per trial, read here with DuckDB.
    counts = duckdb.sql(f"select trial_id, count(*) n from read_parquet('{root}/{STUDY}/metrics/**/*.parquet', "
                        "hive_partitioning=true) group by trial_id").fetchall()
    assert sorted(n for _, n in counts) == [8] * 4

    report = subprocess.run([sys.executable, "-m", "lookinside.cli", "report", STUDY, "--results", str(root),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    # The sweep's own folder, with `latest` pointing at it.
    (sweep_id,) = set(trials.sweep_id)
    assert os.readlink(out / "latest") == sweep_id and (out / sweep_id / "index.html").is_file()
    page = (out / "latest" / "index.html").read_text()
    for png in ("information_plane.png", "compression.png", "gradients.png"):
        assert (out / "latest" / png).stat().st_size > 10_000
        assert f"src='{png}'" in page
    assert page.count("<tr class='TERMINATED'>") == 4

    findings.main(["--results", str(root)])
    printed = capsys.readouterr().out
    for needle in ("bin_fixed", "bin_observed", "test_acc", "std_exceeds_mean_epoch"):
        assert needle in printed
    assert_smoke_findings(results_tables(root))


def test_sweep_where_every_trial_fails_exits_1_and_still_reports(tmp_path):
    root, out = tmp_path / "results", tmp_path / "report"
    # A linear net under plain SGD at lr 10 overflows: each member fails alone (non-finite weights).
    run = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", STUDY, "--preset", "smoke", "--results",
                          str(root), "--set", "activation=linear", "--set", "optimizer=sgd", "--set",
                          "learning_rate=10", "--set", "kde_epochs=0", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "0/2 trials finished" in run.stderr and run.stderr.count("non-finite weights") == 2
    trials = results.load(str(root), STUDY, "trials")
    assert trials["status"].to_pylist() == ["ERROR", "ERROR"]
    report = subprocess.run([sys.executable, "-m", "lookinside.cli", "report", STUDY, "--results", str(root),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (out / "latest" / "index.html").read_text().count("<tr class='ERROR'>") == 2
