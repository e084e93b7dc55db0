"""Train a pack of information-bottleneck networks and measure them on the logged epochs.

Config in, rows out: for each member, on every logged epoch, the binned (and on some
epochs the KDE) I(X;T), I(T;Y) of every layer over all 4096 inputs; per layer the norms of
the mean and std of the gradients of the batches trained on in that epoch, and the weight
norm; train and test loss and accuracy.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from lookinside.studies.information_bottleneck import data, estimators
from lookinside.studies.information_bottleneck.config import IBConfig
from lookinside.studies.information_bottleneck.model import PackedMLP, PackedOptimizer, param_count


def logged_epochs(config: IBConfig) -> np.ndarray:
    """Log-spaced epochs in 0 (the initialisation) .. config.epochs, both ends included."""
    n = min(config.logged_epochs, config.epochs + 1)
    epochs = np.unique(np.round(np.logspace(0, math.log10(config.epochs + 1), n)).astype(int) - 1)
    # Rounding merges the early epochs; fill up with the first integers not yet taken.
    extra = [e for e in range(config.epochs + 1) if e not in set(epochs)][: n - len(epochs)]
    return np.sort(np.concatenate([epochs, np.array(extra, dtype=int)]))


def kde_epochs(config: IBConfig, logged: np.ndarray) -> set[int]:
    """k of the logged epochs, evenly spaced among them: the logged epochs are log-spaced
    already, so these are too, and they reach into the compression window (log-spaced picks
    among log-spaced epochs crowded the first few dozen epochs: 5 of the laptop preset's 23
    were past epoch 100)."""
    k = min(config.kde_epochs, len(logged))
    if k == 0:
        return set()
    picks = np.unique(np.round(np.linspace(0, len(logged) - 1, k)).astype(int))
    return {int(logged[i]) for i in picks}


@functools.lru_cache(maxsize=4)
def load_dataset(path: str | None, seed: int) -> data.BitsDataset:
    return data.load_var_u(path) if path else data.generate_bits_dataset(seed)


def member_bytes(config: IBConfig) -> int:
    """Memory one member holds: its activations over all inputs for one measurement (plus,
    for observed-range binning, its parameters at every logged epoch until the end). The
    pack as a whole adds at most _OBSERVED_GROUP_BYTES at the end of the run."""
    units = 12 + sum(config.hidden) + 2
    per_measurement = 4096 * units * 4 * 6          # activations plus the estimators' work buffers
    kept = len(logged_epochs(config)) * param_count([12, *config.hidden, 2]) * 4 if config.binning != "fixed" else 0
    return per_measurement + kept


def prepare(configs: list[IBConfig], store=None) -> None:
    """Loads every dataset a sweep names once, so a bad file fails before anything runs."""
    for path in {c.dataset_path for c in configs if c.dataset_path}:
        load_dataset(path, 0)


def train(configs: list[IBConfig], session) -> None:
    c0 = configs[0]
    P = len(configs)
    device = torch.device(session.device)
    ds = load_dataset(c0.dataset_path, c0.data_seed)
    x = torch.as_tensor(ds.x, dtype=torch.float32, device=device)        # (N, 12)
    y = torch.as_tensor(ds.y, dtype=torch.int64, device=device)          # (N,)
    N = x.shape[0]
    widths = [x.shape[1], *c0.hidden, 2]
    model = PackedMLP(widths, c0.activation, P, device=device)
    logged = logged_epochs(c0)
    logged_set = {int(e) for e in logged}
    kde_set = kde_epochs(c0, logged)
    rules = {"fixed": ["fixed"], "observed": ["observed"], "both": ["fixed", "observed"]}[c0.binning]

    train_mask = torch.zeros(P, N, dtype=torch.bool, device=device)      # (P, N)
    train_idx = []
    for p, c in enumerate(configs):
        tr, _ = data.split_indices(N, c.train_fraction, c.seed)
        train_idx.append(torch.as_tensor(tr, dtype=torch.int64))
        train_mask[p, train_idx[-1].to(device)] = True
    batches = _Batches(train_idx, c0.batch_size, c0.shuffle, x, y, widths[-1])

    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    opt = PackedOptimizer(c0.optimizer, torch.tensor([c.learning_rate for c in configs]), model.params)
    state = session.state
    if state is None:
        model.init(gens, [c.init for c in configs])
        start = 0
        observed = _Observed(P, len(logged), model) if "observed" in rules else None
        alive = torch.ones(P, dtype=torch.bool, device=device)
    else:
        for gen, gen_state in zip(gens, state["generators"]):
            gen.set_state(gen_state)
        model.params.copy_(state["params"].to(device))
        opt.load({k: v.to(device) for k, v in state["optimizer"].items()})
        start, alive = state["epoch"], state["alive"].to(device)
        observed = None if state["observed"] is None else _Observed.restore(state["observed"], model)
    for p in session.failures:
        alive[p] = False

    grad_sum = torch.zeros(P, model.n_params, device=device)
    grad_sq = torch.zeros(P, model.n_params, device=device)
    n_steps = torch.zeros(P, 1, device=device)
    for epoch in range(start, c0.epochs + 1):
        if epoch > 0:
            track = epoch in logged_set
            if track:
                for acc in (grad_sum, grad_sq, n_steps):
                    acc.zero_()
            _train_epoch(model, opt, batches, gens, alive, grad_sum, grad_sq, n_steps, track)
            bad = alive & ~torch.isfinite(model.params).all(1)
            for p in torch.nonzero(bad).flatten().tolist():
                session.fail(p, f"non-finite weights after epoch {epoch}")
                alive[p] = False
                model.params[p] = 0.0
        if epoch in logged_set:
            outs = _measure(session, model, configs, x, y, train_mask, epoch, rules, kde_set,
                            grad_sum, grad_sq, n_steps.view(-1) if epoch > 0 else None, alive)
            if observed is not None:
                observed.keep(int(np.searchsorted(logged, epoch)), model, outs)

        def state(epoch=epoch) -> dict:
            return {"params": model.params, "optimizer": opt.state(), "generators": [g.get_state() for g in gens],
                    "epoch": epoch + 1, "observed": None if observed is None else observed.state(), "alive": alive}
        session.checkpoint(state)
        # Live on the progress line (sent about once a second), and the ETA's share of work done.
        session.report(epoch=epoch, progress=(epoch + 1) / (c0.epochs + 1))
    if observed is not None:
        _observed_binning(session, model, configs, x, y, logged, observed, alive)


def member_state(state: dict, i: int) -> dict:
    """Member i's share of a pack's checkpoint state: every per-member tensor's row i."""
    def row(t):
        return t[i:i + 1].clone()
    observed = state["observed"]
    return {"params": row(state["params"]), "optimizer": {k: row(v) for k, v in state["optimizer"].items()},
            "generators": [state["generators"][i]], "epoch": state["epoch"], "alive": row(state["alive"]),
            "observed": None if observed is None else {k: row(v) for k, v in observed.items()}}


def _train_epoch(model, opt, batches, gens, alive, grad_sum, grad_sq, n_steps, track) -> None:
    """One epoch for the whole pack; with track, sums each member's batch gradients and
    their squares (and counts its steps) for the gradient norms."""
    xs, neg_target = batches.draw(gens)                  # (P, steps, B, d_in), (P, steps, C, B)
    active = (batches.active & alive.unsqueeze(1)).to(xs.dtype)           # (P, steps)
    g = torch.empty_like(model.grad)                                     # (P, n_params)
    for s in range(batches.steps):
        step_active = active[:, s:s + 1]                                  # (P, 1)
        # xs[:, s] read as (P, d_in, B) through a transposed view, which the batched
        # matmuls take as is (a contiguous copy would cost more than the gather).
        model.backward(xs[:, s].transpose(1, 2), neg_target[:, s], batches.weight[:, s])
        opt.step(model.params, model.grad, step_active)
        if track:
            torch.mul(model.grad, step_active, out=g)
            grad_sum.add_(g)
            grad_sq.addcmul_(g, g)
            n_steps.add_(step_active)


class _Batches:
    """Each member's batches, padded to the pack's longest epoch, and their inputs and
    targets, gathered once per epoch into buffers made once.

    A member's epoch is its training rows in its own random order (one randperm from its
    own generator per epoch, so its stream does not depend on the pack), cut into
    consecutive batches; the last may be short. Flattened, a member's padded (steps, B)
    grid holds its n rows in its first n slots: the permutation goes there, and the
    padding slots keep pointing at padding (row 0, weight 0). The weights and active
    steps are the same every epoch."""

    def __init__(self, train_idx: list[torch.Tensor], batch_size: int, shuffle: bool,
                 x: torch.Tensor, y: torch.Tensor, classes: int):
        self.n, self.shuffle, device = [len(t) for t in train_idx], shuffle, x.device
        P, B = len(train_idx), batch_size or max(self.n)
        self.steps = steps = math.ceil(max(self.n) / B)
        slot = torch.arange(steps * B)                                    # (steps * B,)
        n = torch.tensor(self.n).view(P, 1)
        # Each row's weight in its member's loss: 1 / its batch's size, 0 on padding.
        size = (n - slot.view(steps, B)[:, 0]).clamp(0, B)                # (P, steps)
        valid = (slot < n).view(P, steps, B)
        self.weight = (valid / size.clamp(min=1).unsqueeze(2)).unsqueeze(2).to(device)  # (P, steps, 1, B)
        self.active = (size > 0).to(device)                               # (P, steps)
        self.member_rows = torch.zeros(P, steps * B, dtype=torch.int64)   # (P, steps * B)
        for p, rows in enumerate(train_idx):
            self.member_rows[p, :len(rows)] = rows
        self.member_rows = self.member_rows.to(device)
        self.perm = slot.repeat(P, 1)                                     # (P, steps * B)
        self.rows = torch.empty(P, steps * B, dtype=torch.int64, device=device)
        # Inputs and (negated) one-hot labels side by side: one gather fetches both.
        d = x.shape[1]
        self.table = torch.cat([x, -torch.nn.functional.one_hot(y, classes).to(x.dtype)], 1)  # (N, d + C)
        self.gathered = torch.empty(P, steps, B, d + classes, dtype=x.dtype, device=device)
        self.neg_target = torch.empty(P, steps, classes, B, dtype=x.dtype, device=device)

    def draw(self, gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's inputs (P, steps, B, d_in) and -weight * onehot(label) (P, steps, C, B)."""
        if self.shuffle:
            for p, (n, gen) in enumerate(zip(self.n, gens)):
                torch.randperm(n, generator=gen, out=self.perm[p, :n])
            rows = torch.gather(self.member_rows, 1, self.perm.to(self.rows.device), out=self.rows)
        else:
            rows = self.member_rows
        torch.index_select(self.table, 0, rows.view(-1), out=self.gathered.view(-1, self.table.shape[1]))
        d = self.table.shape[1] - self.neg_target.shape[2]
        torch.mul(self.gathered[..., d:].transpose(2, 3), self.weight, out=self.neg_target)
        return self.gathered[..., :d], self.neg_target


def _measure(session, model, configs, x, y, train_mask, epoch, rules, kde_set,
             grad_sum, grad_sq, n_steps, alive) -> list[torch.Tensor]:
    """Measures the pack on every input and buffers this epoch's rows; returns every
    layer's activations, (P, N, width) each."""
    c0 = configs[0]
    P, L = model.P, model.n_layers
    with torch.no_grad():
        outs = model.forward(x)                                            # L x (P, N, width)
    probs = outs[-1]                                                       # (P, N, 2)
    nll = -torch.log(probs.gather(-1, y.expand(P, -1).unsqueeze(-1)).squeeze(-1).clamp_min(1e-30))
    correct = ((probs[..., 1] > probs[..., 0]).long() == y).float()        # (P, N)
    test_mask = ~train_mask

    def masked_mean(v, m):
        return (v * m).sum(1) / m.sum(1).clamp_min(1)

    metrics = {
        "train_loss": masked_mean(nll, train_mask), "train_acc": masked_mean(correct, train_mask),
        "test_loss": masked_mean(nll, test_mask), "test_acc": masked_mean(correct, test_mask)}
    metrics = {k: v.cpu() for k, v in metrics.items()}

    info = {}   # estimator -> (i_xt (P, L), i_ty (P, L))
    if "fixed" in rules:
        i_xt, i_ty = zip(*(estimators.binned_information(h, y, c0.bins, -1.0, 1.0) for h in outs))
        info["bin_fixed"] = (torch.stack(i_xt, 1).cpu(), torch.stack(i_ty, 1).cpu())
    if epoch in kde_set:
        kde = [estimators.kde_information(h, y, c0.kde_noise_var) for h in outs]
        for bound in ("upper", "lower"):
            info[f"kde_{bound}"] = (torch.stack([k[f"{bound}_i_xt"] for k in kde], 1).cpu(),
                                    torch.stack([k[f"{bound}_i_ty"] for k in kde], 1).cpu())

    layers = np.arange(1, L + 1)
    epochs = np.full(L, epoch)
    alive_mask = alive.cpu().numpy()
    for name, (i_xt, i_ty) in info.items():
        session.add_pack_rows("information", {"epoch": epochs, "layer": layers, "estimator": np.full(L, name)},
                              {"i_xt": i_xt.numpy(), "i_ty": i_ty.numpy()}, alive_mask)
    session.add_pack_rows("metrics", {"epoch": np.array([epoch])},
                          {k: v.to(torch.float64).numpy()[:, None] for k, v in metrics.items()}, alive_mask)
    if n_steps is not None:
        norms = _gradient_norms(model, grad_sum, grad_sq, n_steps)
        session.add_pack_rows("gradients", {"epoch": epochs, "layer": layers},
                              dict(zip(("grad_mean_norm", "grad_std_norm", "weight_norm"), norms)), alive_mask)
    return outs


def _gradient_norms(model: PackedMLP, g_sum, g_sq, n_steps) -> tuple[torch.Tensor, ...]:
    """Per member and layer (weights only, as the IB paper's Fig. 4): the norm of the mean of
    the batch gradients, of their elementwise std, and of the weights; each (P, L)."""
    n = n_steps.clamp_min(1).unsqueeze(1)                                  # (P, 1)
    mean = g_sum / n                                                       # (P, n_params)
    std = (g_sq / n - mean * mean).clamp_min_(0).sqrt_()
    norms = [torch.stack([t[:, s].norm(dim=1) for s in model.weight_slices], 1)
             for t in (mean, std, model.params)]
    return tuple(v.cpu().numpy() for v in norms)


_OBSERVED_GROUP_BYTES = 2 ** 26


class _Observed:
    """What observed-range binning keeps until the end of the run, when the range is known:
    each layer's running min and max over the logged epochs (P, L), and the parameters at
    every logged epoch (P, E, n_params), from which the activations are computed again.
    Keeping the activations themselves would cost E * N * units floats per member (1 GB
    for a pack of 32 at 60 logged epochs) and a page fault for every 4 KB of it."""

    def __init__(self, P: int, n_logged: int, model: PackedMLP):
        kw = dict(dtype=model.params.dtype, device=model.params.device)
        self.params = torch.empty(P, n_logged, model.n_params, **kw)
        self.lo = torch.full((P, model.n_layers), math.inf, **kw)
        self.hi = torch.full((P, model.n_layers), -math.inf, **kw)

    def keep(self, slot: int, model: PackedMLP, outs: list[torch.Tensor]) -> None:
        self.params[:, slot] = model.params
        for layer, h in enumerate(outs):                                   # (P, N, width)
            torch.minimum(self.lo[:, layer], h.amin(dim=(1, 2)), out=self.lo[:, layer])
            torch.maximum(self.hi[:, layer], h.amax(dim=(1, 2)), out=self.hi[:, layer])

    def state(self) -> dict:
        return {"params": self.params, "lo": self.lo, "hi": self.hi}

    @classmethod
    def restore(cls, state: dict, model: PackedMLP) -> "_Observed":
        if not isinstance(state, dict):
            # Before 2026-11-30 a checkpoint kept the activations themselves.
            raise ValueError("this checkpoint comes from an older lookinside (observed-range binning kept "
                             "activations then); start the sweep again")
        self = cls(*state["params"].shape[:2], model)
        for name in ("params", "lo", "hi"):
            getattr(self, name).copy_(state[name])
        return self


def _observed_binning(session, model, configs, x, y, logged, observed: _Observed, alive) -> None:
    """Saxe et al.'s rule: bins spanning each layer's min..max over the whole run. The
    activations of every logged epoch are recomputed from that epoch's parameters: the
    same ops on the same values, so the same numbers as the run measured."""
    c0 = configs[0]
    P, L = model.P, model.n_layers
    epochs = np.asarray(logged)
    i_xt = torch.zeros(P, len(epochs), L, dtype=torch.float64)
    i_ty = torch.zeros(P, len(epochs), L, dtype=torch.float64)
    # Epochs go to the estimator in groups, one call per layer for a group, in buffers of
    # at most _OBSERVED_GROUP_BYTES: a call per epoch and layer would cost a small pack
    # more in per-call overhead than in arithmetic.
    N, widths = x.shape[0], model.widths[1:]
    per_epoch = P * sum(widths) * N * model.params.element_size()
    group = max(1, min(len(epochs), _OBSERVED_GROUP_BYTES // per_epoch))
    kw = dict(dtype=model.params.dtype, device=model.params.device)
    # (G, P, width, N): feature-major, and a shorter last group is a contiguous prefix.
    buffers = [torch.empty(group, P, w, N, **kw) for w in widths]
    for g0 in range(0, len(epochs), group):
        g1 = min(len(epochs), g0 + group)
        for slot in range(g0, g1):
            model.params.copy_(observed.params[:, slot])
            with torch.no_grad():
                outs = model.forward(x)                                       # L x (P, N, width)
            for buf, h in zip(buffers, outs):
                buf[slot - g0].copy_(h.transpose(1, 2))
        for layer, buf in enumerate(buffers):
            acts = buf[:g1 - g0].transpose(2, 3)                              # (G, P, N, width)
            lo, hi = (b[:, layer].view(1, P, 1, 1) for b in (observed.lo, observed.hi))
            i_xt[:, g0:g1, layer], i_ty[:, g0:g1, layer] = (
                v.T.cpu() for v in estimators.binned_information(acts, y, c0.bins, lo, hi))
    session.add_pack_rows("information",
                          {"epoch": np.repeat(epochs, L), "layer": np.tile(np.arange(1, L + 1), len(epochs)),
                           "estimator": np.full(L * len(epochs), "bin_observed")},
                          {"i_xt": i_xt.flatten(1).numpy(), "i_ty": i_ty.flatten(1).numpy()}, alive.cpu().numpy())
