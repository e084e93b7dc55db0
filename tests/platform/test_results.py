import os

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs  # noqa: F401 - pa.fs below
import pytest

from lookinside import results
from lookinside.results import ResultsError, Store

SCHEMA = pa.schema([("trial_id", pa.string()), ("epoch", pa.int64()), ("loss", pa.float64())])


def rows(trial_id: str, n: int, offset: float = 0.0) -> pa.Table:
    return pa.table({"trial_id": [trial_id] * n, "epoch": list(range(n)),
                     "loss": [offset + i for i in range(n)]}, schema=SCHEMA)


def committed(store, sweep_id, *trial_ids, study="toy"):
    """Writes `trials` rows: a trial's rows count from then on."""
    for t in trial_ids:
        store.write(study, "trials", sweep_id, t, pa.table({"trial_id": [t], "status": ["TERMINATED"]}))


def test_layout_and_three_readers(tmp_path):
    store = Store(str(tmp_path))
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    store.write("toy", "metrics", "s1", "b", rows("b", 2))
    store.write("toy", "metrics", "s2", "c", rows("c", 4))
    committed(store, "s1", "a", "b")
    committed(store, "s2", "c")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "toy" / "metrics").rglob("*")
                   if p.is_file())
    assert all(f.startswith("toy/metrics/sweep_id=s") and f.endswith(".parquet") and "/part-" in f
               for f in files), files
    assert len(files) == 3

    table = results.load(str(tmp_path), "toy", "metrics")
    assert table.num_rows == 9
    assert sorted(set(table["sweep_id"].to_pylist())) == ["s1", "s2"]

    pattern = f"{tmp_path}/toy/metrics/**/*.parquet"
    con = duckdb.connect()
    got = con.execute(f"select sweep_id, count(*) from read_parquet('{pattern}', hive_partitioning=true) "
                      "group by sweep_id order by sweep_id").fetchall()
    assert got == [("s1", 5), ("s2", 4)]
    frame = pl.scan_parquet(pattern, hive_partitioning=True).collect()
    assert frame.height == 9 and set(frame["trial_id"]) == {"a", "b", "c"}
    assert set(frame["sweep_id"]) == {"s1", "s2"}              # one partition column name for every reader
    direct = ds.dataset(f"{tmp_path}/toy/metrics", format="parquet", partitioning="hive").to_table()
    assert direct.num_rows == 9 and "sweep_id" in direct.column_names


def test_load_columns_filter_and_several_sweeps(tmp_path):
    store = Store(str(tmp_path))
    for sweep_id, trial_id, n in (("s1", "a", 3), ("s2", "b", 4), ("s3", "c", 5)):
        store.write("toy", "metrics", sweep_id, trial_id, rows(trial_id, n))
        committed(store, sweep_id, trial_id)
    table = results.load(str(tmp_path), "toy", "metrics", ["s1", "s3"], columns=["epoch"],
                         filter=pa.compute.field("epoch") >= 2)
    assert table.column_names == ["epoch", "sweep_id"]
    assert sorted(zip(table["sweep_id"].to_pylist(), table["epoch"].to_pylist())) == [
        ("s1", 2), ("s3", 2), ("s3", 3), ("s3", 4)]
    with pytest.raises(ResultsError, match="no 'metrics' results for sweep s9"):
        results.load(str(tmp_path), "toy", "metrics", ["s1", "s9"])


def test_rows_count_from_their_trials_row_and_staged_parts_commit_once(tmp_path):
    store = Store(str(tmp_path))
    store.stage("toy", "s1", "a", "metrics", "00000000" + "0" * 24, rows("a", 2))
    store.stage("toy", "s1", "a", "metrics", "00000001" + "0" * 24, rows("a", 3, offset=2))
    store.write("toy", "metrics", "s1", "b", rows("b", 1))
    committed(store, "s1", "b")
    assert set(results.load(str(tmp_path), "toy", "metrics")["trial_id"].to_pylist()) == {"b"}
    parts = store.staged("toy", "s1", "a")["metrics"]
    # A crash half-way through a commit: one part moved, then the commit runs again.
    store.fs.move(f"{store.staging_dir('toy', 's1', 'a')}/metrics/{parts[0]}.parquet",
                  f"{store.partition_dir('toy', 'metrics', 's1')}/part-a-{parts[0]}.parquet")
    store.write("toy", "metrics", "s1", "a", rows("a", 9))          # an earlier attempt's file
    store.commit_parts("toy", "s1", "a", "metrics", parts)
    store.commit_parts("toy", "s1", "a", "metrics", parts)
    assert set(results.load(str(tmp_path), "toy", "metrics")["trial_id"].to_pylist()) == {"b"}
    committed(store, "s1", "a")
    a = results.load(str(tmp_path), "toy", "metrics", filter=pa.compute.field("trial_id") == "a")
    assert a["loss"].to_pylist() == [0, 1, 2, 3, 4]                # both parts, in order, once


def test_rewrite_of_a_trial_leaves_no_duplicates(tmp_path):
    store = Store(str(tmp_path))
    store.write("toy", "metrics", "s1", "a", rows("a", 3))
    store.write("toy", "metrics", "s1", "b", rows("b", 3))
    committed(store, "s1", "a", "b", "ab")
    # A retried trial removes what its earlier attempt wrote, then writes again.
    store.remove_trials("toy", ["metrics", "trials"], "s1", ["a"])
    store.write("toy", "metrics", "s1", "a", rows("a", 3, offset=10))
    committed(store, "s1", "a")
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
    names = os.listdir(tmp_path / "toy" / "metrics" / "sweep_id=s1")
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
    committed(store, "s1", "a", "b")
    [good] = (tmp_path / "toy" / "metrics" / "sweep_id=s1").glob("part-a-*.parquet")
    before = good.read_bytes()
    bad = tmp_path / "toy" / "metrics" / "sweep_id=s1" / "part-b-0000.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ResultsError) as err:
        results.load(str(tmp_path), "toy", "metrics")
    assert "corrupt Parquet file" in str(err.value) and "part-b-0000.parquet" in str(err.value)
    # The good file is untouched: the same bytes as before the failed load.
    assert good.read_bytes() == before


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
    assert results.load(s3_root, "toy", "metrics").num_rows == 0     # no trial committed yet
    assert store.sweeps("toy") == []          # no trials table yet
    committed(store, "s1", "a", "b")
    table = results.load(s3_root, "toy", "metrics")
    assert table.num_rows == 5 and set(table["sweep_id"].to_pylist()) == {"s1"}
    assert store.sweeps("toy") == ["s1"] and store.committed_statuses("toy", "s1", ["a"]) == {"a": "TERMINATED"}
    # Staged parts and their commit on S3 (a server-side copy).
    store.stage("toy", "s2", "c", "metrics", "0" * 32, rows("c", 2))
    store.commit_parts("toy", "s2", "c", "metrics", ["0" * 32])
    committed(store, "s2", "c")
    assert results.load(s3_root, "toy", "metrics", "s2")["trial_id"].to_pylist() == ["c", "c"]


def test_staged_rows_artifacts_and_a_retry_on_an_s3_root(s3_root, tmp_path):
    import pathlib
    import subprocess
    import sys
    here = pathlib.Path(__file__).parent
    env = {**os.environ, "LOOKINSIDE_STUDIES": "toy_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-m", "lookinside.cli", "run", "toy", "--preset", "smoke", "--results",
                          s3_root, "--quiet", "--set", "steps=4", "--set", "fail_once_at=2",
                          "--set", f"marker_dir={tmp_path}", "--grid", "seed=0", "--pack", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    values = results.load(s3_root, "toy", "values").sort_by("step").to_pylist()
    assert [(r["step"], r["resumed_from"]) for r in values] == [(0, -1), (1, -1), (2, -1), (3, 3)]
    (artifact,) = results.load(s3_root, "toy", "artifacts").to_pylist()
    store = Store(s3_root)
    assert artifact["uri"].startswith("s3://results-bucket/lab/toy/")
    path = artifact["uri"].removeprefix("s3://")
    with store.fs.open_input_stream(f"{path}/value.txt") as f:
        assert f.read() == b"3"
    sweep_id = values[0]["sweep_id"]
    staged = [i for i in store.fs.get_file_info(pa.fs.FileSelector(f"{store.sweep_dir('toy', sweep_id)}",
                                                                    recursive=True)) if "/staging/" in i.path]
    assert not [i for i in staged if i.type == pa.fs.FileType.File]


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
    assert (tmp_path / "report" / "latest" / "information_plane.png").exists()


def test_uri_options_stay_after_the_sweep_path():
    store = Store("s3://bucket/lab?region=us-east-1&scheme=http")
    assert store.uri_under("ib", "s1") == "s3://bucket/lab/ib/s1?region=us-east-1&scheme=http"
    assert store.uri_under("ib") == "s3://bucket/lab/ib?region=us-east-1&scheme=http"
    assert store.sweep_dir("ib", "s1") == "bucket/lab/ib/s1"


def test_a_commit_that_dies_half_way_shows_nothing_and_is_settled(tmp_path, monkeypatch):
    import sys
    from datetime import datetime, timezone
    sys.path.insert(0, os.path.dirname(__file__))
    import toy_study

    from lookinside import commit
    from lookinside.session import Place, Session

    store = Store(str(tmp_path))
    member = {"trial_id": "s1-00000", "config": {**toy_study.ToyConfig().__dict__}}
    # An earlier run left an ERROR row; this run stages rows of two tables, then dies
    # between the tables' moves.
    commit.fail_uncommitted(toy_study.STUDY, store, "s1", [member], 1, "node lost")
    session = Session([member["trial_id"]], toy_study.TABLES, place=Place(store, "toy", "s1"))
    session.add_rows("values", 0, {"step": [0], "value": [0], "resumed_from": [-1], "file_step": [-1]})
    session.add_rows("artifacts", 0, {"name": ["x"], "uri": ["y"]})
    real, calls = store.commit_parts, []

    def dies_on_the_second_table(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:
            raise OSError("node lost mid-commit")
        return real(*args, **kwargs)
    monkeypatch.setattr(store, "commit_parts", dies_on_the_second_table)
    with pytest.raises(OSError):
        commit.commit(toy_study.STUDY, store, "s1", [member], {member["trial_id"]}, session, 2, None, None)
    # The old ERROR row went first: the moved rows do not count as committed.
    assert results.load(str(tmp_path), "toy", "values").num_rows == 0
    assert store.committed_statuses("toy", "s1", [member["trial_id"]]) == {member["trial_id"]: None}
    monkeypatch.setattr(store, "commit_parts", real)
    commit.fail_uncommitted(toy_study.STUDY, store, "s1", [member], 2, "node lost again")
    with pytest.raises(ResultsError, match="no 'values' results"):
        results.load(str(tmp_path), "toy", "values")
    assert not list((tmp_path / "toy" / "values").rglob("*.parquet"))
    (row,) = results.load(str(tmp_path), "toy", "trials").to_pylist()
    assert (row["status"], row["error"], row["attempt"]) == ("ERROR", "node lost again", 2)
    assert datetime.now(timezone.utc) >= row["finished_at"]


def test_an_empty_partition_reads_as_no_results(tmp_path):
    store = Store(str(tmp_path))
    committed(store, "s1", "a")
    (tmp_path / "toy" / "metrics" / "sweep_id=s1").mkdir(parents=True)
    with pytest.raises(ResultsError, match="no 'metrics' results for study toy"):
        results.load(str(tmp_path), "toy", "metrics")
    assert store.load("toy", "metrics", "s1", schema=SCHEMA).num_rows == 0
