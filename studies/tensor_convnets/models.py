"""Convolutional arithmetic circuits (ConvACs) and ReLU nets of the same topology, with a pooling geometry.

Cohen, Sharir & Shashua (COLT 2016) and Cohen & Shashua (ICLR 2017, "Inductive bias of deep
convolutional networks through pooling geometry"); survey arXiv 1705.02302. Architecture and init
as read in the original code, HUJI-Deep/inductive-pooling (exp/blob/cac and exp/blob/crn
net.prototmp) with the layers of its Caffe fork HUJI-Deep/caffe-simnets (MEX, OneHot, Permutation).

Every pixel is a patch. A ConvAC maps it to M representation values (one-hot of the binary pixel,
M = 2, as the code's OneHot layer; or M Gaussian templates for real pixels), then runs L blocks of
a 1x1 conv with r non-negative weights w = exp(theta) followed by product pooling over 2x2 windows
(stride 2), a global product pooling over whatever positions remain, and a non-negative linear
output. All of it in log space, as the code does: the conv is the MEX layer in softmax mode with
epsilon 1, logsumexp_c(h_c + theta_oc) = log sum_c w_oc exp(h_c); product pooling is SUM pooling of
logs. The outputs are log-scores, used as logits. Deep with L = log2(side): Hierarchical Tucker;
shallow (one locally connected conv of Z channels, global product pooling): CP.

Pooling geometry: "square" windows are contiguous; "mirror" permutes rows and columns with
s(i) = i/2 (i even), H-1-i/2 (i odd) before every pooling (the code's Permutation layer, QUAD2,
between MEX and pooling), so a window pools {k, H-1-k} x {l, W-1-l}; a user's permutation of the
side*side input positions is applied to the input, after which windows are square. The mirror's
per-level permutations are equivalent to one permutation of the input (`input_permutation`), which
is how the models apply it (cheaper); per_level=True applies it before every pooling, as the code.

`linear_space_output` computes a ConvAC's scores again in float64 with products and non-negative
sums (no logs), from the same parameters: the reference for the log-space forward and for rank.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("convac", "shallow", "relu_avg", "relu_max")


def levels(side: int) -> int:
    """log2(side): the pooling levels that take a side x side grid down to one position."""
    if side < 1 or side & (side - 1):
        raise ValueError(f"side must be a power of 2, got {side}")
    return side.bit_length() - 1


def mirror_index(n: int) -> list[int]:
    """The code's QUAD2 permutation of one axis of length n: position i takes i/2 (i even), n-1-i/2 (i odd)."""
    return [i // 2 if i % 2 == 0 else n - 1 - i // 2 for i in range(n)]


def input_permutation(side: int, pooling: str | Sequence[int], depth: int) -> torch.Tensor:
    """(side*side,) long: position k (row-major) of the square-pooling input takes pixel perm[k].

    "square": the identity. A sequence: checked to be a permutation of 0..side*side-1 (ValueError,
    one line, otherwise). "mirror": the single permutation equivalent to `depth` levels of mirror
    pooling; each level permutes the grid of blocks built so far, then merges every 2x2 window of
    blocks into one, so that square windows on the permuted input pool what mirror windows pool."""
    n = side * side
    if not 0 <= depth <= levels(side):
        raise ValueError(f"depth {depth} is outside 0..{levels(side)} for side {side}")
    if isinstance(pooling, str):
        if pooling == "square":
            return torch.arange(n)
        if pooling != "mirror":
            raise ValueError(f"unknown pooling {pooling!r}: use square, mirror or a permutation of the positions")
        blocks = torch.arange(n).view(side, side, 1, 1)        # (H, H, b, b): the pixels each node holds
        for _ in range(depth):
            s = torch.tensor(mirror_index(blocks.shape[0]))
            blocks = blocks[s][:, s]
            h, b = blocks.shape[0] // 2, blocks.shape[2]
            blocks = blocks.view(h, 2, h, 2, b, b).permute(0, 2, 1, 4, 3, 5).reshape(h, h, 2 * b, 2 * b)
        return blocks.permute(0, 2, 1, 3).reshape(n)
    values = list(pooling)
    if not all(hasattr(type(v), "__index__") and not isinstance(v, bool) for v in values):
        raise ValueError(f"a pooling permutation must hold integers, got {type(pooling).__name__} {values[:6]}")
    values = [int(v) for v in values]
    if len(values) != n or sorted(values) != list(range(n)):
        missing = sorted(set(range(n)) - set(values))[:4]
        raise ValueError(f"a pooling permutation must list each of 0..{n - 1} once ({side}x{side} positions); "
                         f"got {len(values)} values, missing {missing}")
    return torch.tensor(values)


def _geometry(side: int, pooling: str | Sequence[int], pools: int, per_level: bool
              ) -> tuple[bool, tuple[int, ...] | None]:
    """(mirror before every pooling?, input order or None) for a net with `pools` 2x2 pooling levels:
    mirror is applied per level only when asked (`per_level`), else as its single input permutation."""
    if per_level and pooling == "mirror":
        input_permutation(side, pooling, pools)                  # validates side and depth
        return True, None
    order = tuple(input_permutation(side, pooling, pools).tolist())
    return False, None if order == tuple(range(side * side)) else order


def _arrange(x: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
    """x (B, S, S) with its positions permuted: position k takes pixel order[k]."""
    if order is None:
        return x
    idx = torch.as_tensor(order, device=x.device)
    return x.flatten(-2).index_select(-1, idx).view(x.shape)


def _mirror(h: torch.Tensor) -> torch.Tensor:
    """The QUAD2 permutation of the last two axes (B, C, H, W)."""
    rows = torch.as_tensor(mirror_index(h.shape[-2]), device=h.device)
    cols = torch.as_tensor(mirror_index(h.shape[-1]), device=h.device)
    return h.index_select(-2, rows).index_select(-1, cols)


def _pool(h: torch.Tensor, op: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): op ("sum", "mean", "amax" or "prod") over each 2x2 window
    (torch's pooling kernels where they exist: several times faster under vmap than reductions of a view)."""
    if op == "amax":
        return F.max_pool2d(h, 2)
    if op == "mean":
        return F.avg_pool2d(h, 2)
    if op == "sum":
        return F.avg_pool2d(h, 2) * 4                     # exact: dividing and multiplying by 4 loses nothing
    b, c, hh, ww = h.shape
    return h.view(b, c, hh // 2, 2, ww // 2, 2).prod(5).prod(3)


def _mex(h: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Log-space 1x1 conv: (B, C_in, H, W), (C_out, C_in) -> (B, C_out, H, W), log sum_c exp(h_c + theta_oc).

    As a matrix product of exponentials shifted by the largest h_c (per position) and the largest
    theta_oc (per output): 3-4x faster than logsumexp over a (B, C_out, C_in, H, W) broadcast, and
    exact unless every term falls below float32's smallest normal (e^-87 of the largest possible),
    which needs theta_oc of the largest h_c to sit 87 below its row's largest theta; the sum is then
    clamped there, so the value stays finite (a lower bound). The shifts carry no gradient: the value
    does not depend on them."""
    m = h.amax(1, keepdim=True).detach()
    t = theta.amax(1, keepdim=True).detach()
    s = torch.einsum("oc,bchw->bohw", torch.exp(theta - t), torch.exp(h - m))
    return torch.log(s.clamp_min(torch.finfo(s.dtype).tiny)) + m + t[None, :, :, None]


class LogSpaceNet(nn.Module):
    """The ConvAC family in log space: representation, one 1x1 conv per entry of `widths`, the first
    `pools` of them followed by 2x2 product pooling, then global product pooling and the output.

    Init as the code's MEX layers: every theta (log-weight) uniform in [-1, 1] (offsets_filler
    uniform -1..1, epsilon 1, softmax_mode, log-space parameters), the output layer too. The weights
    w = exp(theta) then lie in [1/e, e]; log-activations stay finite at any depth (no zeros, no
    infinities) and grow about 4x per pooling level in size (measured at side 32, r = 16, L = 5:
    log-scores near +1,260, the two classes' 0.05 apart; float32 resolves 1e-4 there), and softmax
    sees only the difference of the class scores.

    representation "onehot": the first conv of the log one-hot of x in {0, 1} is exactly
    theta[:, 0] + x (theta[:, 1] - theta[:, 0]) (log of w[:, x]); computed so, without the -inf of
    log 0. "gaussian": M = `templates` log-densities log N(x; mu_m, sigma_m^2) with learned means,
    initialised evenly over [0, 1], and learned log sigma, initialised to log(1/M) (our choice: the
    code has no real-valued representation)."""

    def __init__(self, side: int, widths: Sequence[int], pools: int, pooling: str | Sequence[int] = "square",
                 classes: int = 2, representation: str = "onehot", templates: int = 2, per_level: bool = False):
        super().__init__()
        if pools > levels(side):
            raise ValueError(f"{pools} pooling levels do not fit a {side}x{side} input")
        if representation not in ("onehot", "gaussian"):
            raise ValueError(f"unknown representation {representation!r}: use onehot or gaussian")
        self.side, self.pools, self.representation = side, pools, representation
        self.mirror, self.order = _geometry(side, pooling, pools, per_level)
        m = 2 if representation == "onehot" else templates
        if representation == "gaussian":
            self.means = nn.Parameter(torch.linspace(0, 1, m))
            self.log_scales = nn.Parameter(torch.full((m,), -math.log(m)))
        ins = [m, *widths[:-1]]
        self.thetas = nn.ParameterList([nn.Parameter(torch.empty(o, i).uniform_(-1, 1)) for i, o in zip(ins, widths)])
        self.output = nn.Parameter(torch.empty(classes, widths[-1]).uniform_(-1, 1))

    def log_templates(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian representation: (B, S, S) -> (B, M, S, S) log-densities."""
        z = (x.unsqueeze(1) - self.means[:, None, None]) * torch.exp(-self.log_scales)[:, None, None]
        return -0.5 * z * z - self.log_scales[:, None, None] - 0.5 * math.log(2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # (B, S, S) -> (B, classes) log-scores
        x = _arrange(x, self.order)
        theta = self.thetas[0]
        if self.representation == "onehot":
            h = theta[None, :, 0, None, None] + x.unsqueeze(1) * (theta[:, 1] - theta[:, 0])[None, :, None, None]
        else:
            h = _mex(self.log_templates(x), theta)
        for level in range(len(self.thetas)):
            if level > 0:
                h = _mex(h, self.thetas[level])
            if level < self.pools:
                h = _pool(_mirror(h) if self.mirror else h, "sum")
        h = h.sum((-2, -1))                                            # global product pooling
        return torch.logsumexp(h.unsqueeze(1) + self.output, dim=-1)


class ConvAC(LogSpaceNet):
    """Deep ConvAC: `depth` blocks of 1x1 conv (`channels` = r) and 2x2 product pooling, 1 <= depth <= log2(side);
    depth = log2(side) is the Hierarchical Tucker decomposition, a smaller depth ends in global product pooling."""

    def __init__(self, side: int, channels: int, depth: int, pooling: str | Sequence[int] = "square",
                 classes: int = 2, representation: str = "onehot", templates: int = 2, per_level: bool = False):
        if not 1 <= depth <= levels(side):
            raise ValueError(f"depth {depth} is outside 1..{levels(side)} for side {side}")
        super().__init__(side, [channels] * depth, depth, pooling, classes, representation, templates, per_level)


class ShallowConvAC(nn.Module):
    """Shallow ConvAC: the CP decomposition of rank Z, A = sum_z a_z (x) a_{z,1} (x) ... (x) a_{z,N}: one
    hidden layer of `channels` = Z whose 1x1 weights are the position's own (locally connected, as the
    CP model of depth sec. 3 has a factor per mode), global product pooling over all positions, and the
    output. With weights shared by all positions the score of a binary image would depend only on its
    number of lit pixels (a symmetric tensor, of rank at most N/2 + 1 under a balanced partition), so no
    Z could match a deep net. One-hot representation only; init as the MEX layers, theta U[-1, 1]."""

    def __init__(self, side: int, channels: int, classes: int = 2, representation: str = "onehot",
                 templates: int = 2):
        super().__init__()
        if representation != "onehot":
            raise ValueError("the shallow ConvAC takes the one-hot representation only")
        self.side, self.pools, self.representation, self.mirror, self.order = side, 0, "onehot", False, None
        self.theta = nn.Parameter(torch.empty(channels, 2, side, side).uniform_(-1, 1))    # log a_{z,i}(x_i)
        self.output = nn.Parameter(torch.empty(classes, channels).uniform_(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # (B, S, S) -> (B, classes) log-scores
        h = self.theta[None, :, 0] + x.unsqueeze(1) * (self.theta[:, 1] - self.theta[:, 0])[None]  # (B, Z, S, S)
        return torch.logsumexp(h.sum((-2, -1)).unsqueeze(1) + self.output, dim=-1)


class ReLUNet(nn.Module):
    """The ConvAC topology with 1x1 conv + bias + ReLU and average or max pooling (the code's exp/blob/crn):
    one-hot input in linear space, `depth` blocks of conv, ReLU, 2x2 pooling, then global
    pooling of the same kind where positions remain, and a linear output (logits). Init as the code:
    Caffe's "xavier" filler, uniform in +-sqrt(3 / fan_in), and zero biases."""

    def __init__(self, side: int, channels: int, depth: int, pooling: str | Sequence[int] = "square",
                 pool: str = "avg", classes: int = 2, per_level: bool = False):
        super().__init__()
        if not 1 <= depth <= levels(side):
            raise ValueError(f"depth {depth} is outside 1..{levels(side)} for side {side}")
        if pool not in ("avg", "max"):
            raise ValueError(f"unknown pool {pool!r}: use avg or max")
        self.pool = "mean" if pool == "avg" else "amax"
        self.mirror, self.order = _geometry(side, pooling, depth, per_level)
        self.convs = nn.ModuleList([nn.Conv2d(2 if i == 0 else channels, channels, 1) for i in range(depth)])
        self.output = nn.Linear(channels, classes)
        for layer in [*self.convs, self.output]:
            fan_in = layer.weight[0].numel()
            nn.init.uniform_(layer.weight, -math.sqrt(3 / fan_in), math.sqrt(3 / fan_in))
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # (B, S, S) -> (B, classes) logits
        x = _arrange(x, self.order)
        h = torch.stack([1 - x, x], dim=1)
        for conv in self.convs:
            h = torch.relu(conv(h))
            h = _pool(_mirror(h) if self.mirror else h, self.pool)
        return self.output(getattr(h.flatten(-2), self.pool)(-1))


def make_model(kind: str, side: int, channels: int, depth: int, pooling: str | Sequence[int] = "square",
               classes: int = 2, seed: int = 0, representation: str = "onehot") -> nn.Module:
    """A network of the study, its init drawn from torch's generator seeded with `seed`
    (shallow ignores depth and pooling; ReLU nets take one-hot inputs only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model {kind!r}: use one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    if kind == "convac":
        return ConvAC(side, channels, depth, pooling, classes, representation)
    if kind == "shallow":
        return ShallowConvAC(side, channels, classes, representation)
    if representation != "onehot":
        raise ValueError("ReLU nets take the one-hot representation only")
    return ReLUNet(side, channels, depth, pooling, kind.removeprefix("relu_"), classes)


@torch.no_grad()
def linear_space_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's scores in float64, (B, classes). A ConvAC's are computed in linear space from its
    parameters: representation values, non-negative sums with weights exp(theta), products over
    windows, no logs; so exp(log-scores) should equal them. A ReLU net's are its logits in float64."""
    x = x.double()
    if isinstance(model, ReLUNet):
        return copy.deepcopy(model).double()(x)
    if isinstance(model, ShallowConvAC):
        a = model.theta.double().exp()                                   # (Z, 2, S, S)
        v = torch.einsum("zcij,bcij->bzij", a, torch.stack([1 - x, x], dim=1)).flatten(-2).prod(-1)   # (B, Z)
        return v @ model.output.double().exp().T
    if not isinstance(model, LogSpaceNet):
        raise TypeError(f"no linear-space form for {type(model).__name__}")
    x = _arrange(x, model.order)
    weights = [t.double().exp() for t in model.thetas]
    if model.representation == "onehot":
        features = torch.stack([1 - x, x], dim=1)                     # (B, 2, S, S)
    else:
        mu, sigma = model.means.double(), model.log_scales.double().exp()
        z = (x.unsqueeze(1) - mu[:, None, None]) / sigma[:, None, None]
        features = torch.exp(-0.5 * z * z) / (sigma[:, None, None] * math.sqrt(2 * math.pi))
    v = features
    for level, w in enumerate(weights):
        v = torch.einsum("oc,bchw->bohw", w, v)
        if level < model.pools:
            v = _pool(_mirror(v) if model.mirror else v, "prod")
    v = v.flatten(-2).prod(-1)                                          # (B, C)
    return v @ model.output.double().exp().T
