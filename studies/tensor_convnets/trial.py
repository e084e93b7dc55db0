"""One trial: a pack of configs of one experiment, dispatched to its code.

pooling_geometry trains the pack's members at once (lookinside.torchpack), each with its own
init and batch order, on the blob images of `blobs.generate` (the same for every member).
Adam as in the code: ConvACs with beta1 = beta2 = 0.9 and eps 1e-16, ReLU nets with torch's
defaults and weight decay; the learning rate falls tenfold after `lr_drop` of the steps.
separation_rank computes, per member, the rank of its random network under every partition.
"""

from __future__ import annotations

import numpy as np
import torch

from lookinside.errors import UserError
from lookinside.studies.tensor_convnets import blobs, models, rank
from lookinside.studies.tensor_convnets.config import TCConfig
from lookinside.torchpack import PackedModel, PackedOptimizer, restore, training_state

TRAIN_EVAL = 1_000      # training images measured (the first ones)
EVAL_CHUNK = 1_000


def prepare(configs: list[TCConfig], store=None) -> None:
    """Generates every blob dataset a sweep needs once (memoised), so a bad size fails before anything runs."""
    for c in configs:
        if c.experiment == "pooling_geometry":
            try:
                images(c)
            except ValueError as e:
                raise UserError(str(e)) from None


def member_bytes(c: TCConfig) -> int:
    """Parameters with gradients and Adam's state, plus a batch's activations (float32, rough)."""
    params = c.channels * (c.channels + 2) * c.depth + 2 * c.channels
    return 4 * (4 * params + c.batch_size * c.side * c.side * c.channels * 4)


def images(c: TCConfig):
    """(x_train, y_train, x_test, y_test) as float tensors, images shrunk to `side` by OR over blocks."""
    x_train, y_train, x_test, y_test = blobs.generate(c.task, c.n_train, c.n_test, c.data_seed)
    f = 32 // c.side

    def shrink(x):      # a float copy: the generator's cached arrays stay read-only
        x = torch.from_numpy(np.array(x, dtype=np.float32))
        return x if f == 1 else x.reshape(len(x), c.side, f, c.side, f).amax((2, 4))
    return shrink(x_train), torch.from_numpy(np.array(y_train)), shrink(x_test), torch.from_numpy(np.array(y_test))


def pooling(c: TCConfig):
    return c.permutation if c.pooling == "custom" else c.pooling


def make(c: TCConfig):
    return models.make_model(c.model, c.side, c.channels, c.depth, pooling(c), 2, c.seed, c.representation)


def train(configs: list[TCConfig], session) -> None:
    if configs[0].experiment == "separation_rank":
        return _ranks(configs, session)
    c0 = configs[0]
    x_train, y_train, x_test, y_test = images(c0)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    model = PackedModel([make(c) for c in configs])
    adam = {"betas": (0.9, 0.9), "eps": 1e-16} if c0.model in ("convac", "shallow") else {}
    opt = PackedOptimizer(model, torch.optim.Adam, [c.learning_rate for c in configs],
                          weight_decay=c0.weight_decay, **adam)
    drop_at = int(c0.lr_drop * c0.iterations)
    start = restore(session.state, model, opt, gens)   # the learning rates (after a drop) too

    def accuracy(x, y):                                                            # -> (P,)
        with torch.no_grad():
            right = [(model(xb, shared=True).argmax(-1) == yb).sum(-1) for xb, yb in
                     zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK))]
        return (torch.stack(right).sum(0).double() / len(x)).numpy()

    loss = torch.vmap(torch.nn.functional.cross_entropy)
    for it in range(start, c0.iterations + 1):
        if it % c0.eval_every == 0 or it == c0.iterations:
            test = accuracy(x_test, y_test)
            train_acc = accuracy(x_train[:TRAIN_EVAL], y_train[:TRAIN_EVAL])
            for split, acc in (("test", test), ("train", train_acc)):
                session.add_pack_rows("accuracy", {"step": [it], "split": [split]}, {"accuracy": acc[:, None]})
            session.report(iteration=it, progress=it / max(c0.iterations, 1), test_accuracy=float(test.mean()))
        if it == c0.iterations:
            break
        if it == drop_at:
            opt.lrs *= 0.1
        index = torch.stack([torch.randint(0, len(x_train), (c0.batch_size,), generator=g) for g in gens])
        opt.zero_grad()
        loss(model(x_train[index], shared=False), y_train[index]).sum().backward()
        opt.step()

        session.checkpoint(lambda it=it: training_state(model, opt, gens, it + 1))


def _ranks(configs: list[TCConfig], session) -> None:
    for p, c in enumerate(configs):
        net = make(c)
        named = rank.partitions(c.side, seed=c.seed)
        named.update({f"mirror_{name}": rank.mirror_partition(part, c.side) for name, part in list(named.items())
                      if name != "random"})
        found = rank.separation_ranks(net, c.side, named, tol=c.tolerance)
        rows = {"partition": list(found), "rank": [r for r, _ in found.values()],
                "max_rank": [most for _, most in found.values()], "tolerance": [c.tolerance] * len(found)}
        session.add_rows("separation_rank", p, rows)
        session.report(progress=(p + 1) / len(configs))
