"""Packs of ordinary torch modules: P members of one structure trained at once in one process.

A study builds each member as it would alone (`[make(seed) for seed in seeds]`, each with its
own seeded init); `PackedModel` stacks their parameters into (P, ...) leaf tensors and runs
the one module's forward over all members with `torch.vmap`, so a step costs one set of
batched ops instead of P sets of tiny ones. No backpropagation by hand: member p's loss
depends on member p's slice only, so autograd of the summed losses gives every member its own
gradient, and `PackedOptimizer` wraps one ordinary torch.optim optimiser whose update is
elementwise, hence the same as P separate optimisers:

    packed = PackedModel([make(seed) for seed in seeds])
    optimizer = PackedOptimizer(packed, torch.optim.Adam, lrs=[1e-3, 4e-4, ...])
    logits = packed(x, shared=True)                                  # (P, B, C)
    losses = torch.vmap(F.cross_entropy, in_dims=(0, None))(logits, y)  # (P,)
    optimizer.zero_grad()
    losses.sum().backward()
    optimizer.step(active=losses.isfinite())
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

# Optimisers whose update, given their state, is lr times something that does not depend on
# lr, and whose state never sees lr: stepping with lr=1 and scaling each member's change by
# its own lr is then exact. Elementwise, so the stacked tensors behave as P optimisers.
# Not ASGD or Rprop (their state depends on lr), nor LBFGS, Adafactor or Muon (they mix
# elements of a tensor, so members would leak into each other).
LINEAR_IN_LR = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad,
                torch.optim.RMSprop, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam,
                torch.optim.Adadelta)


class PackedModel:
    """P modules of identical structure as one: `params` and `buffers` map each name of the
    module's own state dict to a (P, ...) tensor (parameters are leaves that require grad).

    Dropout and other random ops run under vmap with randomness="different" by default: each
    member draws its own mask, all from torch's global generator (seed it with
    torch.manual_seed), so a member's masks differ from those it would draw alone ("same":
    one mask for all; "error": random ops raise)."""

    def __init__(self, members: Sequence[nn.Module], randomness: str = "different"):
        self.params, self.buffers = torch.func.stack_module_state(list(members))
        # The structure alone: functional_call swaps the stacked tensors in at each call.
        self.base = copy.deepcopy(members[0]).to("meta")
        self.P = len(members)
        self.randomness = randomness

    def forward(self, *inputs: torch.Tensor, shared: bool, active: torch.Tensor | None = None) -> torch.Tensor:
        """The members' outputs, (P, B, ...). Inputs are shared by all members, each (B, ...),
        or given per member, each (P, B, ...); keyword-only, since a (P, B, ...) input taken
        for a shared one would broadcast silently into a wrong shape. Buffers the forward
        updates (BatchNorm's running statistics) keep their values where `active` ((P,) bool)
        is false, as the optimiser keeps the parameters of members that sit a step out."""
        def member(params, buffers, *xs):
            return torch.func.functional_call(self.base, (params, buffers), xs)
        before = {} if active is None else {name: b.clone() for name, b in self.buffers.items()}
        in_dims = (0, 0) + (None if shared else 0,) * len(inputs)
        out = torch.vmap(member, in_dims=in_dims, randomness=self.randomness)(self.params, self.buffers, *inputs)
        for name, old in before.items():  # new tensors: autograd may have saved the updated ones
            b = self.buffers[name]
            self.buffers[name] = torch.where(active.to(b.device).view(-1, *[1] * (b.dim() - 1)), b, old)
        return out

    __call__ = forward

    def train(self, mode: bool = True) -> PackedModel:
        self.base.train(mode)
        return self

    def eval(self) -> PackedModel:
        return self.train(False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by name, each (P, ...): the members' state dicts stacked."""
        return {name: t.detach() for name, t in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copies into the existing tensors, so that an optimiser over them stays valid."""
        mine = self.state_dict()
        if state.keys() != mine.keys():
            raise ValueError(f"state names {sorted(state)} are not the pack's {sorted(mine)}")
        with torch.no_grad():
            for name, t in mine.items():
                if state[name].shape != t.shape:  # copy_ would broadcast a pack of one into P
                    raise ValueError(f"{name}: shape {tuple(state[name].shape)}, pack has {tuple(t.shape)}")
                t.copy_(state[name])

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """What a pack of member i alone would hold (each tensor (1, ...), a copy)."""
        return {name: t[i:i + 1].clone() for name, t in self.state_dict().items()}

    def unstack(self, i: int) -> nn.Module:
        """Member i as an ordinary module (its own copy of the tensors)."""
        stacked = self.state_dict()
        module = copy.deepcopy(self.base).to_empty(device=next(iter(stacked.values())).device)
        with torch.no_grad():
            for name, t in [*module.named_parameters(), *module.named_buffers()]:
                t.copy_(stacked[name][i])
        return module

    def finite_members(self) -> torch.Tensor:
        """(P,) bool: members whose parameters and floating-point buffers are all finite."""
        finite = torch.ones(self.P, dtype=torch.bool)
        for t in self.state_dict().values():
            if t.is_floating_point():
                finite &= torch.isfinite(t).flatten(1).all(1).cpu()
        return finite


class PackedOptimizer:
    """One `optimizer_cls` over a pack's parameters that behaves as P optimisers, member p
    with learning rate lrs[p] (`lrs` is a (P,) tensor: change it in place for a schedule).

    Each step is taken with lr=1 and every member's change scaled by its own lr, which is
    exact for the optimisers in LINEAR_IN_LR (others raise ValueError) up to one more rounding
    than alone (about 1e-7 of a parameter in float32 per step). Members masked out of
    a step keep their parameters and optimiser state. A member's step count and any other
    scalar state (Adam's "step", NAdam's "mu_product") is its own: torch keeps one scalar per
    tensor, so members whose scalars differ (one that sat steps out) are stepped in separate
    groups, and a member's first step starts from the optimiser's fresh state."""

    def __init__(self, packed: PackedModel, optimizer_cls: type[torch.optim.Optimizer],
                 lrs: Sequence[float], **kwargs):
        if optimizer_cls not in LINEAR_IN_LR:
            raise ValueError(f"{optimizer_cls.__name__} cannot be packed: its update is not lr times "
                             f"a function of its state, or it mixes members; use one of "
                             f"{', '.join(c.__name__ for c in LINEAR_IN_LR)}")
        if "lr" in kwargs:
            raise TypeError("pass each member's learning rate in lrs, not lr")
        if len(lrs) != packed.P:
            raise ValueError(f"{len(lrs)} learning rates for {packed.P} members")
        self.params = list(packed.params.values())
        self.lrs = torch.tensor(lrs, dtype=self.params[0].dtype, device=self.params[0].device)  # (P,)
        self.optimizer = optimizer_cls(self.params, lr=1.0, **kwargs)
        self.steps = torch.zeros(packed.P, dtype=torch.long)  # steps each member has taken
        self.scalars: dict[str, torch.Tensor] = {}            # "index.key" -> (P,) each member's value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One update of the members where `active` ((P,) bool, default all) is true."""
        P = len(self.steps)
        active = torch.ones(P, dtype=torch.bool) if active is None else torch.as_tensor(active).cpu().bool()
        if active.shape != (P,):
            raise ValueError(f"active has shape {tuple(active.shape)}, expected ({P},)")
        fresh, seasoned = active & (self.steps == 0), active & (self.steps > 0)
        groups = [fresh] if fresh.any() else []
        if seasoned.any() and self.scalars:
            table = torch.stack([v.double() for v in self.scalars.values()], dim=1)  # (P, n_scalars)
            groups += [seasoned & (table == row).all(1) for row in torch.unique(table[seasoned], dim=0)]
        elif seasoned.any():
            groups.append(seasoned)
        for members in groups:
            self._step_group(members)
        self.steps += active

    def _step_group(self, members: torch.Tensor) -> None:
        """Steps `members`, which share every scalar state value (or have never stepped)."""
        everyone, first = bool(members.all()), int(members.nonzero()[0])
        state = self.optimizer.state
        before = [p.clone() for p in self.params]
        saved = [] if everyone else [{k: v.clone() for k, v in state[p].items()} for p in self.params]
        for i, p in enumerate(self.params):
            if self.steps[first] == 0:
                state[p] = {}  # the optimiser initialises it afresh, as for a member alone
            for key, value in state[p].items():
                if value.dim() == 0:
                    value.fill_(self.scalars[f"{i}.{key}"][first])
        self.optimizer.step()
        for i, (p, old) in enumerate(zip(self.params, before)):
            lr = self.lrs.to(p.dtype).view(-1, *[1] * (p.dim() - 1))  # (P, 1, ...)
            mask = members.to(p.device).view_as(lr)
            new = torch.lerp(old, p, lr)                 # old + lr * (change at lr=1)
            p.copy_(new if everyone else torch.where(mask, new, old))
            for key, value in state[p].items():
                if value.dim() == 0:
                    self.scalars.setdefault(f"{i}.{key}", torch.zeros(len(members), dtype=value.dtype))
                    self.scalars[f"{i}.{key}"][members] = value.cpu()
                elif not everyone and key in saved[i]:
                    value.copy_(torch.where(mask, value, saved[i][key]))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "lrs": self.lrs, "steps": self.steps,
                "scalars": dict(self.scalars)}

    def load_state_dict(self, state: dict) -> None:
        if state["steps"].shape != self.steps.shape:  # copy_ would broadcast a pack of one into P
            raise ValueError(f"state of {len(state['steps'])} members, pack has {len(self.steps)}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.lrs.copy_(state["lrs"])
        self.steps.copy_(state["steps"])
        self.scalars = {k: v.clone() for k, v in state["scalars"].items()}

    def member_state(self, i: int) -> dict:
        """What a packed optimiser of member i alone would hold (copies)."""
        state = self.state_dict()
        optimizer = copy.deepcopy({**state["optimizer"], "state": {}})
        optimizer["state"] = {index: {k: v[i:i + 1].clone() if v.dim() else v.clone() for k, v in s.items()}
                              for index, s in state["optimizer"]["state"].items()}
        return {"optimizer": optimizer, "lrs": self.lrs[i:i + 1].clone(), "steps": self.steps[i:i + 1].clone(),
                "scalars": {k: v[i:i + 1].clone() for k, v in self.scalars.items()}}


def training_state(model: PackedModel, optimizer: PackedOptimizer, generators: Sequence[torch.Generator],
                   iteration: int) -> dict:
    """A pack's checkpoint state: what `restore` needs to go on at `iteration` as if never stopped."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generators": [g.get_state() for g in generators], "iteration": iteration}


def restore(state: dict | None, model: PackedModel, optimizer: PackedOptimizer,
            generators: Sequence[torch.Generator]) -> int:
    """Loads a `training_state` (a retried trial's session.state) into the pack; returns the iteration
    to go on from (0 for a fresh start, state None). The optimiser's learning rates come back too."""
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for g, s in zip(generators, state["generators"], strict=True):
        g.set_state(s)
    return state["iteration"]
