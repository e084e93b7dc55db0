"""The Semi-Aggregated MDP (SAMDP) builder: the single-process reference.

Provenance: Zahavy, Ben-Zrihem & Mannor, "Graying the black box: Understanding DQNs" (arXiv
1602.02658 v4, SAMDP section) and its code, bentzinir/graying_the_box (clustering.py: features,
K-means_st; smdp.py: the SAMDP; common.py: policy correlation), rewritten. The v4 text was not at
hand, so its definitions come from smdp.py and shared/studies/dqn_samdp.md; deviations are marked.

1. Rows are sorted by trajectory ((source_trial_id, checkpoint_step, trajectory) where those
   columns exist) and step; results come back in input order.
2. PCA to `pca_dims` (covariance eigenvectors) fitted on a seeded sample of `fit_sample` rows (all
   when fewer); 2-D openTSNE map (perplexity 30, as the original) fitted on the sample, the other
   rows placed on it by openTSNE's `transform`. embedding="pca": the first two components.
3. Features [x, y, V] (V = max Q), each divided by its largest |value| (the original: by its max).
4. "kmeans": Lloyd's K-means, greedy k-means++ seeds from the sample, best of `n_init` by sum of
   squares, at most `max_iter` rounds of an assignment map and per-cluster sums/counts that add up
   over shards. "spatio_temporal": the same on time-augmented features, row t -> the concatenation
   over d = -w..w of 0.75^|d| f(t+d), t+d clamped to its trajectory's first and last rows (the
   public re-implementation of K-means_st; w = `window` = 2): squared distances become
   0.75^(2|d|)-weighted sums over the window, pulling a row to its neighbours' cluster.
5. SAMDP (gamma 0.99, coherence k = 5, trunc 0.1). A stay is a maximal run of one label in a
   trajectory; a terminated row (a lost life) ends it. It is complete when the trajectory's next
   row follows no termination and has another label (its exit).
   - counts TT[c, c']: one per exit c -> c' whose next stay lasts k+1 rows or more, or is cut by a
     termination or the trajectory's end (smdp.py: the next k+1 labels all c', clamped at the
     data's end); each terminated row adds TT[c, c] += 1 (smdp.py). The diagonal never enters P:
     terminations only keep exits and stays from crossing a lost life; P has no terminal outcome.
   - P: TT with zero diagonal, rows normalised, entries < trunc dropped, renormalised. A cluster
     with no exit keeps a zero row: absorbing, v = r there (smdp.py merged it into its predecessor).
   - r_c, kbar_c: mean of sum_j gamma^j clip(r_j, -1, 1) (j = 0 at the stay's first row) and mean
     length over the complete stays in c longer than k rows (all its complete stays if none is).
     Deviations: smdp.py kept stays longer than k+1 rows and counted length - 1, and gave each
     row's reward to the stay before (a state there arrives with the previous action's reward;
     ours hold their own action's); stays cut by a termination or the trajectory's end are left
     out (smdp.py ignored trajectory boundaries).
   - v_SAMDP = pinv(I - diag(gamma^kbar) P) r; v_DQN(c) = mean V over c (0 if empty).
   - skills: nonzero P[c, c'] with the mean discounted reward R_cc' and length k_cc' of the
     complete stays in c exiting to c' (any length, as smdp.py); greedy policy
     pi(c) = argmax_c' R_cc' + gamma^k_cc' v_SAMDP(c') (-1 without skills).
   - scores: vmse = ||v_DQN - v_SAMDP|| / ||v_DQN||; entropy = size-weighted mean of the rows'
     natural-log entropies (zero rows 0); inertia = within-cluster sum of squares of the [x, y, V]
     features (for both methods, so they compare); intensity = fraction of consecutive row pairs
     in a trajectory whose labels differ.
   - policy_correlation[c]: Pearson correlation, over trajectories with an exit from c along P,
     of total (unclipped) reward and the fraction of those exits following pi(c) (common.py also
     counted trajectories that never left c, as 0). NaN under 3 trajectories or without spread.
   All of step 5 is sums over whole trajectories (samdp_stats) that add up over shards
   (add_stats) before the k x k model is solved (samdp_model).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclasses.dataclass(frozen=True)
class Options:
    """build_samdp's keyword options."""
    embedding: str = "tsne"       # "tsne" | "pca"
    pca_dims: int = 50
    fit_sample: int = 10_000
    perplexity: float = 30.0
    n_jobs: int = 1               # openTSNE threads
    window: int = 2               # spatio_temporal half-window
    decay: float = 0.75
    n_init: int = 3
    max_iter: int = 100
    tol: float = 1e-6             # stop when centres move less than tol x the features' total variance
    gamma: float = 0.99
    coherence: int = 5
    trunc: float = 0.1


class Skill(NamedTuple):
    source: int
    target: int
    probability: float
    reward: float                 # mean discounted, clipped reward of the stays in source that exit to target
    duration: float               # their mean length in rows
    count: int


@dataclasses.dataclass
class SamdpResult:
    labels: np.ndarray            # (N,) cluster of each input row, input order
    xy: np.ndarray                # (N, 2) map coordinates, input order
    centers: np.ndarray           # (k, 3) cluster means of the scaled [x, y, V] features
    sizes: np.ndarray             # (k,) rows per cluster
    counts: np.ndarray            # (k, k) coherent exits; terminated rows on the diagonal
    P: np.ndarray                 # (k, k)
    r: np.ndarray                 # (k,)
    kbar: np.ndarray              # (k,) NaN where a cluster has no complete stay
    v_samdp: np.ndarray
    v_dqn: np.ndarray
    skills: list[Skill]
    policy: np.ndarray            # (k,) greedy next cluster, -1 where none
    policy_correlation: np.ndarray
    scores: dict[str, float]      # vmse, entropy, inertia, intensity


# ---- input -------------------------------------------------------------------------------------

def read_transitions(table: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(order, columns): columns sorted by (trajectory key, step), `traj` a trajectory code 0..T-1;
    row i of the sorted columns is input row order[i]."""
    names = table.column_names
    keys = [np.asarray(table.column("trajectory").to_numpy(), np.int64)]
    if "checkpoint_step" in names:
        keys.append(np.asarray(pc.fill_null(table.column("checkpoint_step"), -1).to_numpy(), np.int64))
    if "source_trial_id" in names:
        ids = pc.fill_null(table.column("source_trial_id"), "").to_numpy(zero_copy_only=False)
        keys.append(np.unique(ids.astype(str), return_inverse=True)[1].astype(np.int64))
    traj = np.unique(np.stack(keys[::-1], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    step = np.asarray(table.column("step").to_numpy(), np.int64)
    order = np.lexsort((step, traj))
    width = table.schema.field("embedding").type.list_size
    emb = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    cols = {"traj": traj[order],
            "embedding": np.asarray(emb, np.float32).reshape(-1, width)[order],
            "reward": np.asarray(table.column("reward").to_numpy(), np.float64)[order],
            "terminated": np.asarray(table.column("terminated").to_numpy(zero_copy_only=False), bool)[order],
            "value": np.asarray(table.column("value").to_numpy(), np.float64)[order]}
    return order, cols


def trajectory_bounds(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last sorted row of each row's trajectory."""
    n = len(traj)
    starts = np.flatnonzero(np.r_[True, traj[1:] != traj[:-1]])
    which = np.cumsum(np.r_[True, traj[1:] != traj[:-1]]) - 1
    ends = np.r_[starts[1:], n] - 1
    return starts[which], ends[which]


# ---- embedding: fitted on a sample, then a map over rows -------------------------------------------

def pca_sums(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(rows, sum, sum of outer products) of some rows: they add up over shards."""
    x = x.astype(np.float64)
    return len(x), x.sum(0), x.T @ x


def fit_pca(n: int, total: np.ndarray, outer: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components): the top `dims` eigenvectors of the covariance, each signed so that its
    largest entry is positive (the same sign on every run)."""
    mean = total / n
    _, evecs = np.linalg.eigh(outer / n - np.outer(mean, mean))
    comps = evecs[:, ::-1][:, :dims].T
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
    return mean, comps * signs[:, None]


def pca_project(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    return (x - mean) @ components.T


def fit_tsne(sample: np.ndarray, perplexity: float, seed: int, n_jobs: int = 1):
    """openTSNE TSNEEmbedding of the sample; its coordinates are np.asarray(result)."""
    from openTSNE import TSNE
    perplexity = min(perplexity, max((len(sample) - 1) / 3.0, 1.0))
    return TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs).fit(sample)


def tsne_place(fitted, z: np.ndarray) -> np.ndarray:
    """Places new rows onto a fitted map without moving it (the map step of the t-SNE)."""
    return np.asarray(fitted.transform(z)) if len(z) else np.zeros((0, 2))


# ---- features ------------------------------------------------------------------------------------

def scale(features: np.ndarray) -> np.ndarray:
    top = np.abs(features).max(0)
    return features / np.where(top > 0, top, 1.0)


def spatio_temporal(f: np.ndarray, traj: np.ndarray, window: int, decay: float) -> np.ndarray:
    first, last = trajectory_bounds(traj)
    rows = np.arange(len(f))
    return np.hstack([decay ** abs(d) * f[np.clip(rows + d, first, last)] for d in range(-window, window + 1)])


# ---- K-means as map (assign, cluster_sums) and reduce (update_centers) ----------------------------

def assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row and its squared distance."""
    d2 = (x * x).sum(1)[:, None] - 2 * x @ centers.T + (centers * centers).sum(1)[None]
    labels = d2.argmin(1)
    return labels, np.maximum(d2[np.arange(len(x)), labels], 0.0)


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster (sums, counts, sums of squares): they add up over shards."""
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return sums, np.bincount(labels, minlength=k), np.bincount(labels, (x * x).sum(1), minlength=k)


def update_centers(sums: np.ndarray, counts: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """New centres from added-up sums; an empty cluster keeps its centre."""
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers)


def within_ss(sums: np.ndarray, counts: np.ndarray, squares: np.ndarray) -> float:
    return float(squares.sum() - ((sums * sums).sum(1) / np.maximum(counts, 1)).sum())


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007; 2 + log k candidates a step, as scikit-learn):
    each next centre is the candidate, drawn with probability ~ squared distance, that lowers the
    sum of squared distances most."""
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        picks = rng.choice(len(x), 2 + int(np.log(k)), p=d2 / total) if total > 0 else rng.integers(len(x), size=1)
        trial = np.minimum(d2[None], ((x[None] - x[picks][:, None]) ** 2).sum(2))
        best = trial.sum(1).argmin()
        centers.append(x[picks[best]])
        d2 = trial[best]
    return np.array(centers)


# ---- SAMDP: additive statistics per shard of whole trajectories, then the model --------------------

def samdp_stats(labels, traj, terminated, reward, value, k: int, gamma: float, coherence: int) -> dict:
    """Sums over the given rows (sorted by trajectory and step, whole trajectories) that add up over
    shards: counts (TT); skill_n/_r/_len[c, c'] (complete stays in c exiting to c': number, summed
    discounted reward, summed length); long_n/_r/_len[c] (the same over those longer than
    `coherence`); size and value (rows and summed V per cluster); changes and pairs (intensity)."""
    n = len(labels)
    cont = np.r_[(traj[1:] == traj[:-1]) & ~terminated[:-1], False]      # row i+1 continues row i's life
    new = np.r_[True, ~cont[:-1] | (labels[1:] != labels[:-1])]
    run = np.cumsum(new) - 1
    start = np.flatnonzero(new)
    length = np.diff(np.r_[start, n])
    last = start + length - 1
    lab = labels[start]
    complete = cont[last]                                               # the label changes next
    nxt = np.where(complete, labels[np.minimum(last + 1, n - 1)], -1)
    disc = np.bincount(run, gamma ** (np.arange(n) - start[run]) * np.clip(reward, -1, 1), minlength=len(start))
    following = np.r_[length[1:] >= coherence + 1, False] | ~np.r_[complete[1:], False]
    counts = np.zeros((k, k))
    np.add.at(counts, (lab[complete & following], nxt[complete & following]), 1)
    np.add.at(counts, (labels[terminated], labels[terminated]), 1)
    skill_n, skill_r, skill_len = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
    for m, w in ((skill_n, 1.0), (skill_r, disc), (skill_len, length)):
        np.add.at(m, (lab[complete], nxt[complete]), np.broadcast_to(w, length.shape)[complete])
    long = complete & (length > coherence)
    pairs = traj[1:] == traj[:-1]
    return {"counts": counts, "skill_n": skill_n, "skill_r": skill_r, "skill_len": skill_len,
            "long_n": np.bincount(lab[long], minlength=k).astype(float),
            "long_r": np.bincount(lab[long], disc[long], minlength=k),
            "long_len": np.bincount(lab[long], length[long], minlength=k),
            "size": np.bincount(labels, minlength=k).astype(float),
            "value": np.bincount(labels, value, minlength=k),
            "changes": float((labels[1:] != labels[:-1])[pairs].sum()), "pairs": float(pairs.sum())}


def add_stats(*parts: dict) -> dict:
    return {key: sum(p[key] for p in parts) for key in parts[0]}


def _ratio(a, b, fill=np.nan):
    return np.where(b > 0, a / np.where(b > 0, b, 1), fill)


def samdp_model(stats: dict, gamma: float, trunc: float) -> dict:
    """P, r, kbar, v_samdp, v_dqn, skills, policy and scores (bar inertia) from added-up stats."""
    counts = stats["counts"]
    k = len(counts)
    P = counts * (1 - np.eye(k))
    P = _ratio(P, P.sum(1, keepdims=True), 0.0)
    P = np.where(P < trunc, 0.0, P)
    P = _ratio(P, P.sum(1, keepdims=True), 0.0)
    n_all, has_long = stats["skill_n"].sum(1), stats["long_n"] > 0
    r = np.where(has_long, _ratio(stats["long_r"], stats["long_n"], 0.0),
                 _ratio(stats["skill_r"].sum(1), n_all, 0.0))
    kbar = np.where(has_long, _ratio(stats["long_len"], stats["long_n"]),
                    _ratio(stats["skill_len"].sum(1), n_all))
    discount = np.where(np.isnan(kbar), 0.0, gamma ** np.nan_to_num(kbar))
    v_samdp = np.linalg.pinv(np.eye(k) - discount[:, None] * P) @ r
    v_dqn = _ratio(stats["value"], stats["size"], 0.0)
    skill_r, skill_len = _ratio(stats["skill_r"], stats["skill_n"]), _ratio(stats["skill_len"], stats["skill_n"])
    skills = [Skill(int(c), int(d), float(P[c, d]), float(skill_r[c, d]), float(skill_len[c, d]),
                    int(stats["skill_n"][c, d])) for c, d in zip(*np.nonzero(P))]
    gain = np.where((P > 0) & (stats["skill_n"] > 0), np.nan_to_num(skill_r) + gamma ** np.nan_to_num(skill_len)
                    * v_samdp[None], -np.inf)
    policy = np.where(np.isfinite(gain).any(1), gain.argmax(1), -1)
    logs = np.where(P > 0, -P * np.log(np.where(P > 0, P, 1.0)), 0.0).sum(1)
    size = stats["size"]
    scores = {"vmse": float(np.linalg.norm(v_dqn - v_samdp) / max(np.linalg.norm(v_dqn), 1e-300)),
              "entropy": float((logs * size).sum() / max(size.sum(), 1)),
              "intensity": float(stats["changes"] / max(stats["pairs"], 1))}
    return {"P": P, "r": r, "kbar": kbar, "v_samdp": v_samdp, "v_dqn": v_dqn, "skills": skills,
            "policy": policy, "scores": scores}


def policy_correlation(labels, traj, terminated, reward, P: np.ndarray, policy: np.ndarray) -> np.ndarray:
    """Per cluster: corr over trajectories of total reward and the fraction of exits that follow pi."""
    k, n_traj = len(P), int(traj.max()) + 1
    total = np.bincount(traj, reward, minlength=n_traj)
    i = np.flatnonzero((traj[1:] == traj[:-1]) & ~terminated[:-1] & (labels[1:] != labels[:-1]))
    i = i[P[labels[i], labels[i + 1]] > 0]
    exits, good = np.zeros((n_traj, k)), np.zeros((n_traj, k))
    np.add.at(exits, (traj[i], labels[i]), 1)
    np.add.at(good, (traj[i], labels[i]), labels[i + 1] == policy[labels[i]])
    corr = np.full(k, np.nan)
    for c in range(k):
        seen = exits[:, c] > 0
        a, b = total[seen], good[seen, c] / exits[seen, c]
        if seen.sum() >= 3 and a.std() > 0 and b.std() > 0:
            corr[c] = np.corrcoef(a, b)[0, 1]
    return corr


# ---- entry point: the pipeline over shards of whole trajectories ------------------------------------

def _place(emb, sampled, xy_sample, mean, comps, fitted, embedding):
    """Map step: PCA-project one shard's rows and give each its 2-D map position (sample rows
    keep the fitted map's; the others are placed on it)."""
    z = pca_project(emb, mean, comps)
    if embedding == "pca":
        return z[:, :2]
    xy = np.empty((len(z), 2))
    xy[sampled] = xy_sample
    xy[~sampled] = tsne_place(fitted, z[~sampled])
    return xy


def _kmeans_step(x, centers, k):
    """One Lloyd round of every run at once: per run, the sums and counts of its clusters."""
    return [cluster_sums(x, assign(x, c)[0], k)[:2] for c in centers]


def _assign(x, centers):
    return [assign(x, c) for c in centers]


def _kmeans(run, xs, k, rng, seed_rows: np.ndarray, opt: Options) -> np.ndarray:
    """Lloyd's K-means whose assignment and sums are map steps over the shards `xs` (put), summed
    in shard order; seeds from the (driver-side) sample rows; the n_init runs go together, one
    map step per round (a run stops moving once its centres move less than tol); the best run's
    labels."""
    total = add_stats(*run(lambda x: {"n": len(x), "s": x.sum(0), "q": (x * x).sum(0)}, [(x,) for x in xs]))
    tol = opt.tol * float((total["q"] / total["n"] - (total["s"] / total["n"]) ** 2).sum())
    centers = [kmeans_pp(seed_rows, k, rng) for _ in range(opt.n_init)]
    moving = list(range(opt.n_init))
    for _ in range(opt.max_iter):
        parts = run(_kmeans_step, [(x,) for x in xs], [centers[i] for i in moving], k)
        still = []
        for j, i in enumerate(moving):
            new = update_centers(sum(p[j][0] for p in parts), sum(p[j][1] for p in parts), centers[i])
            if ((new - centers[i]) ** 2).sum() > tol:
                still.append(i)
            centers[i] = new
        moving = still
        if not moving:
            break
    parts = run(_assign, [(x,) for x in xs], centers)
    ss = [sum(p[i][1].sum() for p in parts) for i in range(opt.n_init)]
    best = int(np.argmin(ss))
    return np.concatenate([p[best][0] for p in parts])


def build_samdp(transitions: pa.Table, k: int, method: str = "spatio_temporal", seed: int = 0,
                workers: int = 1, shards: int = 16, timings: dict | None = None, **options) -> SamdpResult:
    """Clusters the recorded states into k aggregate states and builds their SAMDP (module doc).
    options: the fields of Options (embedding, pca_dims, fit_sample, perplexity, window, gamma,
    coherence, trunc, ...). The rows are split into `shards` runs of whole trajectories; with
    workers > 1 and Ray running, the map steps run on that many workers (shards.py), with the
    same result as in one process. `timings`, when given, receives the seconds spent fitting
    on the sample ("fit") and in the map steps with their reductions ("map": "place",
    "kmeans" and "samdp")."""
    import time

    from lookinside.studies.dqn_samdp import shards as sharding

    opt = Options(**options)
    if method not in ("kmeans", "spatio_temporal"):
        raise ValueError(f"method must be 'kmeans' or 'spatio_temporal', not {method!r}")
    if opt.embedding not in ("tsne", "pca"):
        raise ValueError(f"embedding must be 'tsne' or 'pca', not {opt.embedding!r}")
    order, cols = read_transitions(transitions)
    n = len(order)
    run = sharding.mapper(workers)
    edges = sharding.bounds(cols["traj"], shards)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, opt.fit_sample, replace=False)) if n > opt.fit_sample else np.arange(n)
    in_sample = np.zeros(n, bool)
    in_sample[sample] = True
    emb = cols["embedding"]
    clock = {"fit": 0.0, "place": 0.0, "kmeans": 0.0, "samdp": 0.0}
    tick = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        clock[phase] += now - tick
        tick = now
    # Fitted on the sample, here; then every shard projected and placed on the map.
    mean, comps = fit_pca(*pca_sums(emb[sample]), min(opt.pca_dims, emb.shape[1]))
    fitted, xy_sample = None, np.zeros((len(sample), 2))
    if opt.embedding == "tsne":
        fitted = fit_tsne(pca_project(emb[sample], mean, comps), opt.perplexity, seed, opt.n_jobs)
        xy_sample = np.asarray(fitted)
    lap("fit")
    where = np.cumsum(in_sample) - 1           # row -> its index in the sample
    xy = np.concatenate(run(_place, [(run.put(emb[a:b]), in_sample[a:b], xy_sample[where[a:b][in_sample[a:b]]])
                                     for a, b in edges], mean, comps, fitted, opt.embedding))
    f = scale(np.c_[xy, cols["value"]])
    x = spatio_temporal(f, cols["traj"], opt.window, opt.decay) if method == "spatio_temporal" else f
    xs = [run.put(x[a:b]) for a, b in edges]
    lap("place")
    labels = _kmeans(run, xs, k, rng, x[sample], opt)
    lap("kmeans")
    per_shard = [(labels[a:b], cols["traj"][a:b], cols["terminated"][a:b], cols["reward"][a:b], cols["value"][a:b])
                 for a, b in edges]
    stats = add_stats(*run(samdp_stats, per_shard, k, opt.gamma, opt.coherence))
    inertia = add_stats(*run(lambda f_, lab: dict(zip("scq", cluster_sums(f_, lab, k))),
                             [(f[a:b], labels[a:b]) for a, b in edges]))
    model = samdp_model(stats, opt.gamma, opt.trunc)
    model["scores"]["inertia"] = within_ss(inertia["s"], inertia["c"], inertia["q"])
    corr = policy_correlation(labels, cols["traj"], cols["terminated"], cols["reward"], model["P"], model["policy"])
    lap("samdp")
    if timings is not None:
        timings.update(clock, map=clock["place"] + clock["kmeans"] + clock["samdp"])
    back = np.empty(n, np.int64)
    back[order] = np.arange(n)
    return SamdpResult(labels=labels[back], xy=xy[back],
                       centers=update_centers(inertia["s"], inertia["c"], np.full((k, 3), np.nan)),
                       sizes=inertia["c"], counts=stats["counts"], policy_correlation=corr, **model)
