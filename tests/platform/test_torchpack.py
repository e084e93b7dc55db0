"""Packs of torch modules train every member exactly as plain PyTorch trains it alone.

`assert_packed_equals_alone` is the check for a study's own model: import it with
`sys.path.insert(0, str(REPO / "tests" / "platform")); from test_torchpack import assert_packed_equals_alone`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lookinside.torchpack import LINEAR_IN_LR, PackedModel, PackedOptimizer

Batch = tuple[torch.Tensor, torch.Tensor]


def assert_packed_equals_alone(*, make_module: Callable[[int], nn.Module], seeds: Sequence[int],
                               lrs: Sequence[float], make_batches: Callable[[int], list[Batch | None]],
                               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                               optimizer_cls: type[torch.optim.Optimizer], atol: float,
                               shared_input: bool = False, **optimizer_kwargs) -> float:
    """Trains a pack of `make_module(seed)` for each seed, and each member alone with a plain
    PyTorch loop and its own optimiser; asserts every parameter and buffer agrees within atol,
    and returns the largest difference.

    make_batches(seed): that member's (x, y) for each step of the pack, None for a step it sits
    out (masked), and nothing after its last. The batches of one step have the same shapes in
    every member; with shared_input their x are equal, and the pack is fed it once, (B, ...).
    loss_fn(output, y): one member's scalar loss for its (B, ...) output."""
    batches = [make_batches(seed) for seed in seeds]
    packed = PackedModel([make_module(seed) for seed in seeds])
    optimizer = PackedOptimizer(packed, optimizer_cls, lrs, **optimizer_kwargs)
    for t in range(max(len(b) for b in batches)):
        step = [b[t] if t < len(b) else None for b in batches]
        active = torch.tensor([batch is not None for batch in step])
        x0, y0 = next(batch for batch in step if batch is not None)
        # Members sitting the step out get zeros: their losses count for nothing.
        xs = torch.stack([x0 * 0 if batch is None else batch[0] for batch in step])  # (P, B, ...)
        ys = torch.stack([y0 * 0 if batch is None else batch[1] for batch in step])  # (P, B, ...)
        if shared_input:
            assert all(torch.equal(batch[0], x0) for batch in step if batch is not None)
        out = packed(x0, shared=True, active=active) if shared_input else packed(xs, shared=False, active=active)
        losses = torch.vmap(loss_fn)(out, ys)                                         # (P,)
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step(active)

    worst = 0.0
    stacked = packed.state_dict()
    for i, (seed, lr, member_batches) in enumerate(zip(seeds, lrs, batches)):
        model = make_module(seed)
        alone = optimizer_cls(model.parameters(), lr=lr, **optimizer_kwargs)
        for x, y in filter(None, member_batches):
            alone.zero_grad()
            loss_fn(model(x), y).backward()
            alone.step()
        for name, expected in model.state_dict().items():
            difference = (stacked[name][i] - expected).abs().max().item()
            assert difference <= atol, f"member {i} (seed {seed}) {name}: differs by {difference:.3g}"
            worst = max(worst, difference)
    return worst


def make_mlp(seed: int, widths=(12, 10, 7, 5, 4, 3, 2)) -> nn.Module:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def mlp_batches(seed: int, n: int = 12, batch: int = 32, dtype=torch.float32) -> list[Batch]:
    """n batches of 12-bit inputs with a random binary label, drawn from the seed's own stream."""
    generator = torch.Generator().manual_seed(1000 + seed)
    x = torch.randint(0, 2, (n, batch, 12), generator=generator).to(dtype)
    y = torch.randint(0, 2, (n, batch), generator=generator)
    return list(zip(x, y))


def ragged_mlp_batches(seed: int, dtype=torch.float32) -> list[Batch | None]:
    """6, 10 or 14 batches; member p sits out steps p - 2 and p - 1, so that members 1 and 2
    start late (from the optimiser's fresh state) and 3 and 4 pause (step counts diverge)."""
    batches: list[Batch | None] = mlp_batches(seed, n=6 + 4 * (seed % 3), dtype=dtype)
    return [None if seed - 2 <= t < seed else batch for t, batch in enumerate(batches)]


def test_mlp_sgd_shared_input():
    shared = mlp_batches(seed=0, n=20)
    assert_packed_equals_alone(
        make_module=make_mlp, seeds=[0, 1, 2, 3], lrs=[0.1] * 4, make_batches=lambda seed: shared,
        loss_fn=F.cross_entropy, optimizer_cls=torch.optim.SGD, shared_input=True,
        atol=1e-6)  # observed max |difference|: 8.9e-8


def test_mlp_adam_per_member_learning_rates():
    assert_packed_equals_alone(
        make_module=make_mlp, seeds=[0, 1, 2, 3], lrs=[1e-2, 4e-3, 1e-3, 4e-4], make_batches=mlp_batches,
        loss_fn=F.cross_entropy, optimizer_cls=torch.optim.Adam,
        atol=1e-6)  # observed max |difference|: 6.0e-8


# Options that exercise each optimiser's state: momentum buffers, amsgrad, centred averages...
OPTIONS = {torch.optim.SGD: dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
           torch.optim.Adam: dict(amsgrad=True), torch.optim.AdamW: dict(weight_decay=0.1),
           torch.optim.Adagrad: dict(lr_decay=1e-2), torch.optim.RMSprop: dict(momentum=0.5, centered=True),
           torch.optim.Adamax: {}, torch.optim.NAdam: {}, torch.optim.RAdam: {}, torch.optim.Adadelta: {}}


@pytest.mark.parametrize("optimizer_cls", LINEAR_IN_LR, ids=lambda c: c.__name__)
def test_every_optimizer_with_ragged_batches(optimizer_cls):
    """In float64, so that the check is of the algebra (lr=1 then scaled; groups of equal step
    counts) and not of float32 rounding, which early RMSprop steps of 10 lr amplify to 4e-5."""
    assert_packed_equals_alone(
        make_module=lambda seed: make_mlp(seed).double(), seeds=[0, 1, 2, 3, 4],
        lrs=[3e-2, 1e-2, 3e-3, 1e-3, 3e-4], make_batches=lambda seed: ragged_mlp_batches(seed, torch.float64),
        loss_fn=F.cross_entropy, optimizer_cls=optimizer_cls,
        atol=1e-12, **OPTIONS[optimizer_cls])  # observed max |difference|: 1.2e-13 RMSprop, <= 4.4e-16 others


def make_convnet(seed: int) -> nn.Module:
    """No bias before BatchNorm: its gradient is rounding noise, which Adam scales up to lr-sized
    steps, so packed and alone would differ by lr per step there (they did: 0.04)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 3))


def test_convnet_with_batchnorm_adam():
    """Buffers are compared too: each member's BatchNorm running statistics are its own, and
    stay put while it sits steps out (member 1 misses the first two, member 2 the last two)."""
    def batches(seed):
        generator = torch.Generator().manual_seed(seed)
        batches = [(torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 3, (16,), generator=generator))
                   for _ in range(8)]
        return [None, None, *batches[2:]] if seed == 1 else batches[:6] if seed == 2 else batches
    assert_packed_equals_alone(
        make_module=make_convnet, seeds=[0, 1, 2], lrs=[1e-2, 3e-3, 1e-3], make_batches=batches,
        loss_fn=F.cross_entropy, optimizer_cls=torch.optim.Adam,
        atol=1e-6)  # observed max |difference|: 1.3e-7


def test_optimizers_that_are_not_linear_in_lr_are_rejected():
    packed = PackedModel([make_mlp(0), make_mlp(1)])
    for optimizer_cls in (torch.optim.ASGD, torch.optim.Rprop, torch.optim.LBFGS):
        with pytest.raises(ValueError, match=optimizer_cls.__name__):
            PackedOptimizer(packed, optimizer_cls, lrs=[0.1, 0.1])
    with pytest.raises(TypeError, match="lrs"):
        PackedOptimizer(packed, torch.optim.SGD, lrs=[0.1, 0.1], lr=0.1)


def train(packed: PackedModel, optimizer: PackedOptimizer, batches: list[Batch], active=None) -> torch.Tensor:
    """Steps on per-member batches, each x (P, B, 12), y (P, B); returns the last losses (P,)."""
    for x, y in batches:
        losses = torch.vmap(F.cross_entropy)(packed(x, shared=False), y)  # (P,)
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step(active)
    return losses


def pack_batches(seeds: Sequence[int], n: int) -> list[Batch]:
    members = [mlp_batches(seed, n) for seed in seeds]
    return [(torch.stack([m[t][0] for m in members]), torch.stack([m[t][1] for m in members]))
            for t in range(n)]


def test_inactive_member_does_not_move():
    packed = PackedModel([make_mlp(seed) for seed in range(3)])
    optimizer = PackedOptimizer(packed, torch.optim.Adam, lrs=[1e-2] * 3)
    batches = pack_batches(range(3), 6)
    train(packed, optimizer, batches[:2])
    before = {k: v.clone() for k, v in packed.state_dict().items()}
    state_before = {k: v[1].clone() for s in optimizer.optimizer.state.values() for k, v in s.items() if v.dim()}
    train(packed, optimizer, batches[2:], active=torch.tensor([True, False, True]))
    after = packed.state_dict()
    for name in before:
        assert torch.equal(after[name][1], before[name][1])
        assert not torch.equal(after[name][0], before[name][0])
    state_after = {k: v[1] for s in optimizer.optimizer.state.values() for k, v in s.items() if v.dim()}
    assert all(torch.equal(state_after[k], state_before[k]) for k in state_before)
    assert optimizer.steps.tolist() == [6, 2, 6]


def test_nan_member_leaves_the_others_alone():
    seeds = range(3)
    clean = PackedModel([make_mlp(seed) for seed in seeds])
    poisoned = PackedModel([make_mlp(seed) for seed in seeds])
    clean_optimizer = PackedOptimizer(clean, torch.optim.Adam, lrs=[1e-2] * 3)
    poisoned_optimizer = PackedOptimizer(poisoned, torch.optim.Adam, lrs=[1e-2] * 3)
    batches = pack_batches(seeds, 8)
    bad = [(x.clone(), y) for x, y in batches]
    bad[2][0][1, 0, 0] = float("nan")  # member 1's third batch
    train(clean, clean_optimizer, batches[:4])
    losses = train(poisoned, poisoned_optimizer, bad[:4])
    assert losses.isfinite().tolist() == [True, False, True]
    assert poisoned.finite_members().tolist() == [True, False, True]
    assert clean.finite_members().all()
    # Once it is found, the diverged member sits out; the others go on as before.
    train(clean, clean_optimizer, batches[4:])
    train(poisoned, poisoned_optimizer, bad[4:], active=poisoned.finite_members())
    for name, t in clean.state_dict().items():
        assert torch.equal(poisoned.state_dict()[name][[0, 2]], t[[0, 2]])


def test_member_state_and_unstack_round_trip():
    seeds, lrs = [0, 1, 2], [1e-2, 3e-3, 1e-3]
    packed = PackedModel([make_mlp(seed) for seed in seeds])
    optimizer = PackedOptimizer(packed, torch.optim.Adam, lrs=lrs)
    batches = pack_batches(seeds, 10)
    train(packed, optimizer, batches[:3])
    train(packed, optimizer, batches[3:5], active=torch.tensor([True, False, True]))

    # Member 1 split out of a checkpoint goes on as it would have in the pack.
    checkpoint = io.BytesIO()
    torch.save({"model": packed.member_state(1), "optimizer": optimizer.member_state(1)}, checkpoint)
    checkpoint.seek(0)
    member = torch.load(checkpoint, weights_only=True)
    alone = PackedModel([make_mlp(99)])
    alone_optimizer = PackedOptimizer(alone, torch.optim.Adam, lrs=[0.5])
    alone.load_state_dict(member["model"])
    alone_optimizer.load_state_dict(member["optimizer"])
    assert alone_optimizer.steps.tolist() == [3] and torch.equal(alone_optimizer.lrs, optimizer.lrs[1:2])
    train(packed, optimizer, batches[5:])
    train(alone, alone_optimizer, [(x[1:2], y[1:2]) for x, y in batches[5:]])
    for name, t in alone.state_dict().items():
        # observed max |difference|: 1.9e-9 (a batched matmul over 1 member rounds unlike over 3)
        torch.testing.assert_close(t[0], packed.state_dict()[name][1], rtol=0, atol=1e-7)

    # A whole-pack checkpoint restores the pack; a member's does not fit a pack of three.
    restored = PackedModel([make_mlp(seed + 10) for seed in seeds])
    restored_optimizer = PackedOptimizer(restored, torch.optim.Adam, lrs=[0.5] * 3)
    restored.load_state_dict(packed.state_dict())
    restored_optimizer.load_state_dict(optimizer.state_dict())
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in packed.state_dict().items())
    assert torch.equal(restored_optimizer.steps, optimizer.steps)
    with pytest.raises(ValueError, match="shape"):
        restored.load_state_dict(packed.member_state(0))
    with pytest.raises(ValueError, match="members"):
        restored_optimizer.load_state_dict(optimizer.member_state(0))

    module = packed.unstack(1)
    x = batches[0][0][1]                                        # (B, 12)
    torch.testing.assert_close(module(x), packed(x, shared=True)[1], rtol=0, atol=1e-6)
    for name, t in module.state_dict().items():
        assert torch.equal(t, packed.state_dict()[name][1])


def test_dropout_draws_differ_per_member_and_eval_is_deterministic():
    def make(seed):
        torch.manual_seed(0)  # identical members: only dropout can tell them apart
        return nn.Sequential(nn.Linear(12, 64), nn.Dropout(0.5), nn.Linear(64, 2))
    packed = PackedModel([make(seed) for seed in range(4)])
    x = torch.randn(32, 12)
    torch.manual_seed(1)
    out = packed(x, shared=True)                                # (P, B, 2)
    assert not torch.equal(out[0], out[1])
    torch.manual_seed(1)
    assert torch.equal(packed(x, shared=True), out)             # seeded by the global generator
    packed.eval()
    torch.testing.assert_close(packed(x, shared=True)[2], make(2).eval()(x))
