"""A toy study that records 512-d embeddings, as the DQN recorder will: large rows streamed
to the store while the trial runs; on its first attempt it can kill its own process."""

import dataclasses
import json
import os
import signal
import threading

import numpy as np
import pyarrow as pa

from lookinside.config import param
from lookinside.study import Preset, Study

WIDTH = 512


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    steps: int = param(50, "steps, each adding rows_per_step rows", low=1)
    rows_per_step: int = param(4096, "rows added at each step", low=1)
    checkpoint_every: int = param(10, "steps between checkpoints", low=1)
    crash_at: int = param(-1, "on the first attempt, os._exit(1) once this step's rows are added", low=-1)
    kill_after: float = param(0.0, "on the first attempt, SIGKILL this process after so many seconds "
                              "(wherever it is then: most likely writing a part); 0 never", low=0.0)
    marker_dir: str = param("", "where the first-attempt marker and each attempt's memory figures go")
    seed: int = param(0, "random stream of the embeddings", low=0)


TABLES = {
    "embeddings": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("row", pa.int64()),
                             ("embedding", pa.list_(pa.float32(), WIDTH))]),
    # Never written: a table a trial does not write gets no files.
    "unused": pa.schema([("trial_id", pa.string()), ("x", pa.int64())]),
}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def embedding(seed: int, step: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).standard_normal((n, WIDTH), dtype=np.float32)


def train(configs, session):
    (c,) = configs
    start = 0 if session.state is None else session.state["step"]
    base = peak = rss()
    marker = os.path.join(c.marker_dir, f"crashed-{c.seed}")

    def note_memory():
        # Resident memory of this attempt's process: at the start of train() and its peak since.
        with open(os.path.join(c.marker_dir, f"rss-from-step-{start}.json"), "w") as f:
            json.dump({"start_step": start, "last_step": step, "rss_start": base, "rss_peak": peak}, f)

    if c.kill_after > 0 and c.marker_dir and not os.path.exists(marker):
        open(marker, "w").close()
        threading.Timer(c.kill_after, os.kill, (os.getpid(), signal.SIGKILL)).start()
    for step in range(start, c.steps):
        session.add_rows("embeddings", 0, {"step": np.full(c.rows_per_step, step),
                                           "row": np.arange(c.rows_per_step),
                                           "embedding": embedding(c.seed, step, c.rows_per_step)})
        peak = max(peak, rss())
        if step == c.crash_at and c.marker_dir and not os.path.exists(marker):
            open(marker, "w").close()
            note_memory()
            os._exit(1)          # a killed worker: rows written since the last checkpoint must go
        if (step + 1) % c.checkpoint_every == 0:
            session.checkpoint(lambda step=step: {"step": step + 1}, force=True)
            peak = max(peak, rss())
    if c.marker_dir:
        note_memory()


STUDY = Study(name="embedding_study", title="Embedding rows (platform test)", config=EmbeddingConfig,
              presets={"smoke": Preset("one trial", {}, {"seed": [0]})},
              train=train, tables=TABLES, figures=lambda tables, out: [])
