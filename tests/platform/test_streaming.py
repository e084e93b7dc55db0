"""Rows streamed to the store while a trial runs: memory stays bounded, a killed trial's
rows written after its last checkpoint are dropped, and every row is there exactly once."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pytest

from lookinside import results
from lookinside.rows import MemorySink, RowsError
from lookinside.session import Session

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import embedding_study  # noqa: E402


def lookinside(*args, timeout=600):
    env = {**os.environ, "LOOKINSIDE_STUDIES": "embedding_study",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "lookinside.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_400_mb_of_embeddings_stream_with_bounded_memory_and_survive_a_kill(tmp_path):
    root, markers = tmp_path / "results", tmp_path / "markers"
    markers.mkdir()
    steps, n = 52, 4096                                  # 52 x 4096 rows x 512 float32 = 436 MB
    out = lookinside("run", "embedding_study", "--preset", "smoke", "--results", str(root), "--quiet",
                     "--set", f"steps={steps}", "--set", f"rows_per_step={n}", "--set", "checkpoint_every=10",
                     "--set", "crash_at=50", "--set", f"marker_dir={markers}", "--max-failures", "1")
    assert out.returncode == 0, out.stderr
    memory = {json.loads(p.read_text())["start_step"]: json.loads(p.read_text()) for p in markers.glob("rss-*")}
    # The first attempt wrote 51 steps (418 MB) before it killed itself at step 50; the
    # retry continued from the checkpoint after step 49, not from scratch.
    assert sorted(memory) == [0, 50] and memory[0]["last_step"] == 50
    grown = memory[0]["rss_peak"] - memory[0]["rss_start"]
    assert grown < 150 << 20, f"resident memory grew by {grown / 2**20:.0f} MB"
    table = results.load(str(root), "embedding_study", "embeddings", columns=["step", "row"])
    assert table.num_rows == steps * n                   # no row lost, none twice
    keys = pc.add(pc.multiply(table["step"], n), table["row"]).to_numpy()
    assert np.array_equal(np.sort(keys), np.arange(steps * n))
    sample = results.load(str(root), "embedding_study", "embeddings",
                          filter=(pc.field("step") == 50) & (pc.field("row") < 3))
    got = np.stack(sample.sort_by("row")["embedding"].to_numpy(zero_copy_only=False))
    assert np.array_equal(got, embedding_study.embedding(0, 50, n)[:3])
    trials = results.load(str(root), "embedding_study", "trials")
    assert trials["attempt"].to_pylist() == [2] and trials["status"].to_pylist() == ["TERMINATED"]
    # Tables the trial never wrote have no files; nothing is left in staging.
    assert not (root / "embedding_study" / "unused").exists()
    sweep_dir = next(p for p in (root / "embedding_study").iterdir() if p.name[:2] == "20")
    assert not list((sweep_dir / "staging").rglob("*.parquet"))


def test_sigkill_at_a_random_point_loses_and_duplicates_nothing(tmp_path):
    root, markers = tmp_path / "results", tmp_path / "markers"
    markers.mkdir()
    steps, n = 60, 2048                                  # 240 MB; the kill lands a second in
    out = lookinside("run", "embedding_study", "--preset", "smoke", "--results", str(root), "--quiet",
                     "--set", f"steps={steps}", "--set", f"rows_per_step={n}", "--set", "checkpoint_every=7",
                     "--set", "kill_after=1.0", "--set", f"marker_dir={markers}", "--max-failures", "1")
    assert out.returncode == 0, out.stderr
    memory = sorted(json.loads(p.read_text())["start_step"] for p in markers.glob("rss-*"))
    assert len(memory) == 1                               # only the retry got to the end
    table = results.load(str(root), "embedding_study", "embeddings", columns=["step", "row"])
    keys = pc.add(pc.multiply(table["step"], n), table["row"]).to_numpy()
    assert np.array_equal(np.sort(keys), np.arange(steps * n))
    trials = results.load(str(root), "embedding_study", "trials")
    assert trials["attempt"].to_pylist() == [2]


SCHEMAS = {"embeddings": embedding_study.TABLES["embeddings"]}


def test_add_rows_rejects_unknown_and_missing_columns():
    session = Session(["t0"], SCHEMAS)
    row = {"step": [0], "row": [0], "embedding": np.zeros((1, 512), np.float32)}
    with pytest.raises(RowsError, match=r"unknown columns \['colour'\]"):
        session.add_rows("embeddings", 0, {**row, "colour": ["red"]})
    with pytest.raises(RowsError, match=r"missing columns \['row'\]"):
        session.add_rows("embeddings", 0, {k: v for k, v in row.items() if k != "row"})
    with pytest.raises(RowsError, match="shape"):
        session.add_rows("embeddings", 0, {**row, "embedding": np.zeros((1, 3), np.float32)})
        session.flush()


def test_buffer_is_written_out_when_it_passes_its_size_and_caller_buffers_may_be_reused():
    sink = MemorySink()
    session = Session(["t0"], SCHEMAS, sink=sink, flush_bytes=1 << 20)
    buf = np.zeros((256, 512), np.float32)               # 0.5 MB a call
    for step in range(5):
        buf[:] = step                                    # reused by the caller: rows must keep their values
        session.add_rows("embeddings", 0, {"step": np.full(256, step), "row": np.arange(256), "embedding": buf})
    assert len(session.parts["embeddings"][0]) == 2      # written at 1 MB and 2 MB; 0.5 MB still buffered
    table = session.member_table("embeddings", 0)
    assert table.num_rows == 5 * 256
    firsts = np.stack(table["embedding"].to_numpy(zero_copy_only=False))[:, 0]
    assert np.array_equal(firsts, table["step"].to_numpy().astype(np.float32))


def test_restored_session_drops_parts_its_checkpoint_does_not_list(tmp_path):
    sink, saved = MemorySink(), []
    session = Session(["t0"], SCHEMAS, sink=sink, checkpoint_seconds=0, on_save=saved.append)
    rows = {"row": np.arange(4), "embedding": np.zeros((4, 512), np.float32)}
    session.add_rows("embeddings", 0, {"step": np.full(4, 0), **rows})
    session.checkpoint(lambda: {"step": 1})
    session.add_rows("embeddings", 0, {"step": np.full(4, 1), **rows})
    session.flush()                                      # written, but after the checkpoint
    assert len(sink.parts) == 2
    restored = Session(["t0"], SCHEMAS, sink=sink, restore_dir=saved[-1])
    assert restored.state == {"step": 1}
    assert restored.member_table("embeddings", 0)["step"].to_pylist() == [0] * 4
    assert len(sink.parts) == 1


def test_pack_rows_go_to_their_members_and_skip_failed_ones():
    schemas = {"m": __import__("pyarrow").schema([("trial_id", "string"), ("epoch", "int64"), ("loss", "float64")])}
    session = Session(["a", "b", "c"], schemas)
    session.fail(1, "diverged")
    session.add_pack_rows("m", {"epoch": [0, 1]}, {"loss": np.arange(6.0).reshape(3, 2)[[0, 2]]})
    session.add_pack_rows("m", {"epoch": [2]}, {"loss": np.array([[10.0], [11.0], [12.0]])},
                          members=np.array([True, False, True]))
    assert session.member_table("m", 0)["loss"].to_pylist() == [0.0, 1.0, 10.0]
    assert session.member_table("m", 1).num_rows == 0
    assert session.member_table("m", 2).to_pydict() == {"trial_id": ["c"] * 3, "epoch": [0, 1, 2],
                                                          "loss": [4.0, 5.0, 12.0]}
