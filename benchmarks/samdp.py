"""The SAMDP builder at the paper's scale (120,000 recorded states of 512 dims), side by side.

  build     build_samdp end to end in one process (PCA and the t-SNE map fitted on a 10,000
            state sample, every other state placed on the map, spatio-temporal K-means with
            k = 22, the SAMDP), against
  openTSNE  openTSNE alone embedding all the states (after the same PCA to 50 dims);
  workers   the build's map steps (projection and placement, K-means rounds, SAMDP sums)
            on 1 worker (the single-process reference) and on 2 (this process and one Ray
            task), with identical labels checked.
The synthetic states: trajectories that walk between 22 latent states (a random Markov
chain), each step's embedding its state's centre plus noise, its value the state's plus
noise. Every step uses one BLAS thread per worker. Last line: one JSON object.

    python benchmarks/samdp.py            # 120,000 states
    python benchmarks/samdp.py --quick    # 20,000 states, fit on 4,000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # before numpy: one thread per worker

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from lookinside.studies.dqn_samdp import samdp  # noqa: E402

LATENT = 22


def states(n: int, seed: int = 0) -> pa.Table:
    """n states in trajectories of ~500 steps walking a random chain over LATENT states."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((LATENT, 512)).astype(np.float32) * 2
    values = rng.uniform(0, 5, LATENT)
    chain = rng.dirichlet(np.full(LATENT, 0.3), LATENT)
    latent, traj, step = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    s, t, i = 0, 0, 0
    while i < n:
        length = min(int(rng.integers(300, 700)), n - i)
        for j in range(length):
            if j and rng.random() < 0.08:
                s = rng.choice(LATENT, p=chain[s])
            latent[i], traj[i], step[i] = s, t, j
            i += 1
        t += 1
    emb = centres[latent] + rng.standard_normal((n, 512), dtype=np.float32)
    terminated = np.r_[traj[1:] != traj[:-1], True]
    return pa.table({
        "trajectory": traj, "step": step, "reward": (rng.random(n) < 0.02).astype(np.float32),
        "terminated": terminated, "value": (values[latent] + 0.1 * rng.standard_normal(n)).astype(np.float32),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 512)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 states (under 2 minutes)")
    args = parser.parse_args()
    n, fit = (20_000, 4_000) if args.quick else (120_000, 10_000)
    table = states(n)
    options = {"fit_sample": fit, "shards": 16}

    start = time.perf_counter()
    reference_times: dict = {}
    reference = samdp.build_samdp(table, LATENT, "spatio_temporal", seed=0, timings=reference_times, **options)
    build = time.perf_counter() - start
    print(f"build, 1 process:  {build:.1f} s (fit {reference_times['fit']:.1f} s, map steps "
          f"{reference_times['map']:.1f} s)", flush=True)

    from openTSNE import TSNE

    order, cols = samdp.read_transitions(table)
    start = time.perf_counter()
    mean, comps = samdp.fit_pca(*samdp.pca_sums(cols["embedding"]), 50)
    TSNE(perplexity=30, random_state=0, n_jobs=1).fit(samdp.pca_project(cols["embedding"], mean, comps))
    opentsne = time.perf_counter() - start
    print(f"openTSNE alone:    {opentsne:.1f} s on all {n:,} states", flush=True)

    from lookinside import ray_setup

    ray_setup.start_ray(None)
    spread_times: dict = {}
    start = time.perf_counter()
    spread = samdp.build_samdp(table, LATENT, "spatio_temporal", seed=0, workers=2, timings=spread_times, **options)
    spread_total = time.perf_counter() - start
    identical = bool(np.array_equal(spread.labels, reference.labels) and np.array_equal(spread.P, reference.P))
    print(f"build, 2 workers:  {spread_total:.1f} s (map steps {spread_times['map']:.1f} s); identical: {identical}",
          flush=True)
    for phase in ("place", "kmeans", "samdp"):
        print(f"  {phase}: {reference_times[phase]:.2f} s on 1 worker, {spread_times[phase]:.2f} s on 2", flush=True)
    print(json.dumps({
        "states": n, "fit_sample": fit,
        "build_s": round(build, 2), "opentsne_s": round(opentsne, 2),
        "build_vs_opentsne": round(build / opentsne, 3),
        "map_1_worker_s": round(reference_times["map"], 2), "map_2_workers_s": round(spread_times["map"], 2),
        "map_speedup_2_workers": round(reference_times["map"] / spread_times["map"], 3),
        "build_2_workers_s": round(spread_total, 2), "identical_labels": identical,
        "vmse": round(reference.scores["vmse"], 4)}))


if __name__ == "__main__":
    main()
