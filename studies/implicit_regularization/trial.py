"""Train a pack of MLPs and measure them after every epoch.

Config in, rows out: for each member, at epoch 0 (the init) and after every epoch until it
stops, its error and cross-entropy on the training set (its own, possibly noisy, labels) and
on the clean test set, and its l2 norm, path norm and product of spectral norms.

SGD and AdaGrad packs train as one `lookinside.torchpack` pack (stacked weights under vmap);
Path-SGD members train one after another in the same epoch loop, each a plain nn.Sequential
with its own `PathSGD`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

from lookinside.studies.implicit_regularization import data
from lookinside.studies.implicit_regularization.config import IRConfig
from lookinside.studies.implicit_regularization.model import PathSGD, capacity, linears, make_mlp, unbalance
from lookinside.torchpack import PackedModel, PackedOptimizer

EVAL_CHUNK = 8192   # examples per forward pass when measuring
METRICS = ("train_error", "test_error", "train_loss", "test_loss", "l2_norm", "path_norm", "spectral_product")


@functools.lru_cache(maxsize=8)
def load_dataset(name: str, folder: str | None, data_seed: int) -> data.Dataset:
    return data.load(name, folder, data_seed)


def prepare(configs: list[IRConfig], store=None) -> None:
    """Loads every dataset a sweep names once, so a bad folder fails before anything runs."""
    for key in sorted({(c.dataset, c.data_dir, c.data_seed) for c in configs}, key=repr):
        load_dataset(*key)


def member_bytes(c: IRConfig) -> int:
    """Parameters with their gradient and optimiser state, plus one evaluation chunk's activations."""
    params = c.hidden * (c.hidden * (c.depth - 1) + 3072 + 10)   # at most CIFAR's 3,072 inputs
    return 4 * (4 * params + EVAL_CHUNK * c.hidden * c.depth * 2)


def make_member(c: IRConfig, d_in: int, classes: int) -> torch.nn.Sequential:
    model = make_mlp([d_in, *[c.hidden] * c.depth, classes], c.dropout, c.seed)
    return unbalance(model, c.unbalance, c.seed) if c.init == "unbalanced" else model


class Packed:
    """SGD or AdaGrad members as one torchpack pack."""

    def __init__(self, members, configs):
        self.model = PackedModel(members)
        cls = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}[configs[0].optimizer]
        self.opt = PackedOptimizer(self.model, cls, [c.learning_rate for c in configs])
        self.names = [n for n, m in self.model.base.named_modules() if isinstance(m, torch.nn.Linear)]

    def step(self, xs, ys, active):                      # xs (P, B, d), ys (P, B), active (P,)
        losses = torch.vmap(F.cross_entropy)(self.model(xs, shared=False), ys)   # (P,)
        self.opt.zero_grad()
        losses.sum().backward()
        self.opt.step(active)

    def logits(self, x):                                 # (N, d) -> (P, N, C)
        self.model.eval()
        with torch.no_grad():
            out = self.model(x, shared=True)
        self.model.train()
        return out

    def layers(self):                                    # weights (P, out, in), biases (P, out)
        p = self.model.params
        return [p[f"{n}.weight"].detach() for n in self.names], [p[f"{n}.bias"].detach() for n in self.names]

    def state(self):
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])


class Alone:
    """Path-SGD members, each a plain module with its own optimiser."""

    def __init__(self, members, configs):
        self.members = members
        self.opts = [PathSGD(m, c.learning_rate) for m, c in zip(members, configs)]

    def step(self, xs, ys, active):
        for model, opt, x, y, on in zip(self.members, self.opts, xs, ys, active):
            if on:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()

    def logits(self, x):
        outs = []
        for model in self.members:
            model.eval()
            with torch.no_grad():
                outs.append(model(x))
            model.train()
        return torch.stack(outs)

    def layers(self):
        ls = [linears(m) for m in self.members]
        return ([torch.stack([m[k].weight.detach() for m in ls]) for k in range(len(ls[0]))],
                [torch.stack([m[k].bias.detach() for m in ls]) for k in range(len(ls[0]))])

    def state(self):
        return {"model": [m.state_dict() for m in self.members]}

    def load(self, state):
        for m, s in zip(self.members, state["model"]):
            m.load_state_dict(s)


def _measure(trainer, x, ys, x_test, y_test) -> dict[str, np.ndarray]:
    """Every metric per member, (P,) each."""
    def scores(inputs, labels):                          # labels (P, N)
        logits = torch.cat([trainer.logits(inputs[i:i + EVAL_CHUNK]) for i in range(0, len(inputs), EVAL_CHUNK)], 1)
        loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)        # (P,)
        return (logits.argmax(2) != labels).double().mean(1), loss
    train_error, train_loss = scores(x, ys)
    test_error, test_loss = scores(x_test, y_test.expand(ys.shape[0], -1))
    found = {"train_error": train_error, "test_error": test_error, "train_loss": train_loss, "test_loss": test_loss,
             **capacity(*trainer.layers())}
    return {k: found[k].double().numpy() for k in METRICS}


def _stops(c: IRConfig, m: dict, p: int) -> bool:
    return (c.stop == "zero_error" and m["train_error"][p] == 0
            or c.stop == "loss" and m["train_loss"][p] < c.loss_threshold)


def train(configs: list[IRConfig], session) -> None:
    c0, P = configs[0], len(configs)
    ds = data.subset(load_dataset(c0.dataset, c0.data_dir, c0.data_seed), c0.train_size, c0.test_size, c0.data_seed)
    x, x_test, y_test = (torch.as_tensor(a) for a in (ds.x, ds.x_test, ds.y_test))
    ys = torch.stack([torch.as_tensor(data.noisy_labels(ds.y, c.label_noise, ds.classes, c.seed))
                      for c in configs])                                                   # (P, N)
    N, B = len(x), c0.batch_size
    members = [make_member(c, x.shape[1], ds.classes) for c in configs]
    trainer = (Alone if c0.optimizer == "path_sgd" else Packed)(members, configs)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    torch.manual_seed(c0.seed)                            # dropout masks
    if session.state is None:
        start, active = 0, torch.ones(P, dtype=torch.bool)
    else:
        trainer.load(session.state["trainer"])
        for g, s in zip(gens, session.state["generators"]):
            g.set_state(s)
        torch.set_rng_state(session.state["rng"])
        start, active = session.state["epoch"], session.state["active"].clone()
    for p in session.failures:
        active[p] = False

    for epoch in range(start, c0.epochs + 1):
        if epoch > 0:
            order = torch.stack([torch.randperm(N, generator=g) for g in gens])            # (P, N)
            for s in range(0, N, B):
                idx = order[:, s:s + B]                                                    # (P, B)
                trainer.step(x[idx], ys.gather(1, idx), active)
        m = _measure(trainer, x, ys, x_test, y_test)
        for p in np.flatnonzero(active.numpy() & ~np.isfinite(m["train_loss"])):
            session.fail(int(p), f"non-finite training loss after epoch {epoch}")
            active[p] = False
        session.add_pack_rows("metrics", {"epoch": np.array([epoch])}, {k: v[:, None] for k, v in m.items()},
                              active.numpy())
        for p, c in enumerate(configs):
            if active[p] and _stops(c, m, p):
                active[p] = False

        def state(epoch=epoch):
            return {"trainer": trainer.state(), "generators": [g.get_state() for g in gens],
                    "rng": torch.get_rng_state(), "epoch": epoch + 1, "active": active.clone()}
        session.checkpoint(state)
        session.report(epoch=epoch, progress=(epoch + 1) / (c0.epochs + 1),
                       train_loss=float(np.nanmean(m["train_loss"])) if np.isfinite(m["train_loss"]).any() else np.nan)
        if not active.any():
            break
