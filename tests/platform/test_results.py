import os

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from lookinside import results
from lookinside.results import ResultsError, Store

SCHEMA = pa.schema([("trial_id", pa.string()), ("epoch", pa.int64()), ("loss", pa.float64())])


def rows(trial_id: str, n: int, offset: float = 0.0) -> pa.Table:
    return pa.table({"trial_id": [trial_id] * n, "epoch": list(range(n)),
                     "loss": [offset + i for i in range(n)]}, schema=SCHEMA)


def test_layout_and_three_readers(tmp_path):
    store = Store(str(tmp_path))
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    store.write("toy", "metrics", "s1", "b", rows("b", 2))
    store.write("toy", "metrics", "s2", "c", rows("c", 4))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(f.startswith("toy/metrics/sweep=s") and f.endswith(".parquet") and "/part-" in f
               for f in files), files
    assert len(files) == 3

    table = results.load(str(tmp_path), "toy", "metrics")
    assert table.num_rows == 9
    assert sorted(set(table["sweep_id"].to_pylist())) == ["s1", "s2"]

    pattern = f"{tmp_path}/toy/metrics/**/*.parquet"
    con = duckdb.connect()
    got = con.execute(f"select sweep, count(*) from read_parquet('{pattern}', hive_partitioning=true) "
                      "group by sweep order by sweep").fetchall()
    assert got == [("s1", 5), ("s2", 4)]
    frame = pl.scan_parquet(pattern, hive_partitioning=True).collect()
    assert frame.height == 9 and set(frame["trial_id"]) == {"a", "b", "c"}
    direct = ds.dataset(f"{tmp_path}/toy/metrics", format="parquet", partitioning="hive").to_table()
    assert direct.num_rows == 9


def test_rewrite_of_a_trial_leaves_no_duplicates(tmp_path):
    store = Store(str(tmp_path))
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    store.write("toy", "metrics", "s1", "b", rows("b", 3))
    # A retried trial removes what its earlier attempt wrote, then writes again.
    store.remove_trials("toy", ["metrics", "trials"], "s1", ["a"])
    store.write("toy", "metrics", "s1", "a", rows("a", 3, offset=10))
    table = results.load(str(tmp_path), "toy", "metrics")
    assert table.num_rows == 6
    assert sorted(table.filter(pa.compute.equal(table["trial_id"], "a"))["loss"].to_pylist()) == [10, 11, 12]
    # 'a' is a prefix of no other id here, but 'a' must not remove 'ab'.
    store.write("toy", "metrics", "s1", "ab", rows("ab", 1))
    store.remove_trials("toy", ["metrics"], "s1", ["a"])
    assert set(results.load(str(tmp_path), "toy", "metrics")["trial_id"].to_pylist()) == {"b", "ab"}


def test_writes_leave_no_temporary_files(tmp_path):
    store = Store(str(tmp_path))
    for i in range(5):
        store.write("toy", "metrics", "s1", f"t{i}", rows(f"t{i}", 2))
    names = os.listdir(tmp_path / "toy" / "metrics" / "sweep=s1")
    assert len(names) == 5 and all(n.startswith("part-t") and n.endswith(".parquet") for n in names)


def test_committed_status(tmp_path):
    store = Store(str(tmp_path))
    assert store.committed_statuses("toy", "s1", ["a"]) == {"a": None}
    store.write("toy", "trials", "s1", "a", pa.table({"trial_id": ["a"], "status": ["TERMINATED"]}))
    store.write("toy", "trials", "s1", "a-b", pa.table({"trial_id": ["a-b"], "status": ["ERROR"]}))
    assert store.committed_statuses("toy", "s1", ["a", "a-b", "c"]) == {"a": "TERMINATED", "a-b": "ERROR", "c": None}


def test_corrupt_file_is_named(tmp_path):
    store = Store(str(tmp_path))
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    bad = tmp_path / "toy" / "metrics" / "sweep=s1" / "part-b-0000.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ResultsError) as err:
        results.load(str(tmp_path), "toy", "metrics")
    assert "corrupt Parquet file" in str(err.value) and "part-b-0000.parquet" in str(err.value)
    # The good file is untouched.
    assert (tmp_path / "toy" / "metrics" / "sweep=s1").exists()


@pytest.mark.parametrize("make_root,needle", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "file").write_text("x") and p / "file", "is a file"),
])
def test_unreadable_root(tmp_path, make_root, needle):
    root = make_root(tmp_path)
    with pytest.raises(ResultsError) as err:
        results.load(str(root), "toy", "metrics")
    assert needle in str(err.value)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ResultsError) as err:
        Store("nosuchscheme://bucket/x")
    assert "cannot be opened" in str(err.value)


def test_s3_root_round_trip(s3_root):
    store = Store(s3_root)
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    store.write("toy", "metrics", "s1", "b", rows("b", 2))
    store.remove_trials("toy", ["metrics"], "s1", ["b"])
    store.write("toy", "metrics", "s1", "b", rows("b", 2))
    table = results.load(s3_root, "toy", "metrics")
    assert table.num_rows == 5 and set(table["sweep_id"].to_pylist()) == {"s1"}
    assert store.sweeps("toy") == []          # no trials table yet
    store.write("toy", "trials", "s1", "a", pa.table({"trial_id": ["a"], "status": ["TERMINATED"]}))
    assert store.sweeps("toy") == ["s1"] and store.committed_statuses("toy", "s1", ["a"]) == {"a": "TERMINATED"}


def test_sweep_and_report_on_an_s3_root(s3_root, tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "information_bottleneck", "--preset", "smoke",
                          "--results", s3_root, "--set", "kde_epochs=0", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    trials = results.load(s3_root, "information_bottleneck", "trials")
    assert sorted(trials["status"].to_pylist()) == ["TERMINATED"] * 4
    metrics = results.load(s3_root, "information_bottleneck", "metrics")
    assert set(metrics["trial_id"].to_pylist()) == set(trials["trial_id"].to_pylist())
    report = subprocess.run([sys.executable, "-m", "lookinside.cli", "report", "information_bottleneck",
                             "--results", s3_root, "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "information_plane.png").exists()


def test_uri_options_stay_after_the_sweep_path():
    store = Store("s3://bucket/lab?region=us-east-1&scheme=http")
    assert store.uri_under("ib", "s1") == "s3://bucket/lab/ib/s1?region=us-east-1&scheme=http"
    assert store.uri_under("ib") == "s3://bucket/lab/ib?region=us-east-1&scheme=http"
    assert store.sweep_dir("ib", "s1") == "bucket/lab/ib/s1"
