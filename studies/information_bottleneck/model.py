"""A pack of P small MLPs trained at once: stacked weights, batched matmuls, hand-written
backprop and optimisers.

The networks are tiny (12-10-7-5-4-3-2), so a step costs almost nothing but framework
overhead; one set of batched ops for all P members amortises it. Backprop by hand (rather
than autograd) keeps a step to a few dozen ops and gives each layer's gradient directly,
which the gradient signal-to-noise measurements need anyway. All parameters live in one
flat (P, n_params) buffer, so the optimiser is a handful of ops for the whole pack.

Every member has its own generator (init, data order), learning rate and step count, so a
member trains exactly as it would alone.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = ("tanh", "relu", "linear")


def param_count(widths: list[int]) -> int:
    """Weights and biases of one MLP with these layer widths (input, hidden..., output)."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


class PackedMLP:
    """P MLPs with weights stacked along a leading member axis.

    Activations are kept feature-major, (P, width, B): batched matmuls whose long axis is
    the batch run 4-9x faster on a CPU than (P, B, width) @ (P, width, out) for these
    widths of 2 to 12 (measured with torch 2.13, one thread)."""

    def __init__(self, widths: list[int], activation: str, members: int, dtype=torch.float32,
                 device: str | torch.device = "cpu"):
        self.widths = widths                      # input, hidden..., output
        self.activation = activation
        self.P = members
        shapes = [(a, b) for a, b in zip(widths[:-1], widths[1:])]
        self.n_params = param_count(widths)
        self.params = torch.zeros(members, self.n_params, dtype=dtype, device=device)  # (P, n)
        self.grad = torch.zeros_like(self.params)
        self.W, self.b = [], []
        self.weight_slices = []                   # each layer's weights in the flat buffer
        offset = 0
        for a, b in shapes:
            self.weight_slices.append(slice(offset, offset + a * b))
            # Stored transposed, (P, out, in), so that a layer is W @ h with h (P, in, B).
            self.W.append(self.params[:, offset:offset + a * b].view(members, b, a))   # (P, out, in)
            offset += a * b
            self.b.append(self.params[:, offset:offset + b].view(members, b, 1))       # (P, out, 1)
            offset += b
        # Gradients go to contiguous per-layer buffers first: a batched matmul into a
        # strided view of the flat buffer falls back to one small matmul per member
        # (1.5-3x slower); one cat per step then fills self.grad.
        self.dW = [torch.empty(members, b, a, dtype=dtype, device=device) for a, b in shapes]
        self.db = [torch.empty(members, b, 1, dtype=dtype, device=device) for _, b in shapes]
        self._grad_parts = [t.view(members, -1) for pair in zip(self.dW, self.db) for t in pair]
        self._work = {}                           # batch size -> activation buffers

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def init(self, generators: list[torch.Generator], rules: list[str]) -> None:
        """Weights ~ truncated normal with std 1/sqrt(fan_in) (IDNNs) or normal with std
        1/sqrt(fan_out) (ibsgd), by each member's rule; biases zero. Member p draws from
        generators[p] only."""
        with torch.no_grad():
            for p, (gen, rule) in enumerate(zip(generators, rules)):
                for W in self.W:
                    fan_out, fan_in = W.shape[1:]
                    w = torch.empty(fan_in, fan_out)
                    if rule == "truncated_normal":
                        # Redraws beyond 2 std, as TF1's truncated_normal does.
                        w.normal_(0.0, 1.0, generator=gen)
                        while (bad := w.abs() > 2).any():
                            w[bad] = torch.empty(int(bad.sum())).normal_(0.0, 1.0, generator=gen)
                        w /= math.sqrt(fan_in)
                    else:
                        w.normal_(0.0, 1.0 / math.sqrt(fan_out), generator=gen)
                    W[p].copy_(w.T)
            for b in self.b:
                b.zero_()

    def _layer(self, layer: int, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Layer `layer` applied to h (P, in, B): its activation, or for the last layer the
        logits, (P, out, B); into out if given."""
        W, b = self.W[layer], self.b[layer]
        if layer == self.n_layers - 1 or self.activation != "tanh":
            z = torch.baddbmm(b, W, h, out=out)
            return torch.relu_(z) if self.activation == "relu" and layer < self.n_layers - 1 else z
        # tanh(z) = 2 sigmoid(2z) - 1: torch 2.13's CPU tanh is ~10x slower than sigmoid.
        # beta = alpha = 2 gives 2z exactly (a power of two), one op fewer than z * 2.
        z2 = torch.baddbmm(b, W, h, beta=2.0, alpha=2.0, out=out)
        return torch.sigmoid_(z2).mul_(2).sub_(1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output for inputs x (N, d_in) shared by all members: the hidden
        activations, then the softmax output, each (P, N, width) (strided views of
        feature-major buffers: the estimators read them once, so no copy is made)."""
        h = x.T.unsqueeze(0).expand(self.P, -1, -1)                      # (P, d_in, N)
        outs = []
        for layer in range(self.n_layers):
            h = self._layer(layer, h)                                    # (P, width, N)
            outs.append(h)
        outs[-1] = torch.softmax(outs[-1], dim=1)
        return [o.transpose(1, 2) for o in outs]

    def _buffers(self, B: int) -> dict:
        """Activation and backprop buffers for batch size B, made once: fresh ones every
        step cost an allocation each and, once malloc returns them, page faults."""
        if B not in self._work:
            kw = dict(dtype=self.params.dtype, device=self.params.device)
            widths = self.widths[1:]
            self._work[B] = {
                "h": [torch.empty(self.P, w, B, **kw) for w in widths],          # (P, width, B)
                "dh": [torch.empty(self.P, w, B, **kw) for w in widths[:-1]],    # (P, width, B)
                "deriv": torch.empty(self.P, max(widths), B, **kw),
                "probs": torch.empty(self.P, widths[-1], B, **kw),
                "ones": torch.ones((), **kw).expand(self.P, max(widths), B)}
        return self._work[B]

    def backward(self, x: torch.Tensor, neg_target: torch.Tensor, weight: torch.Tensor) -> None:
        """Fills self.grad with d(loss)/d(params) for each member.

        x (P, d_in, B); weight (P, 1, B): each row's weight in its member's loss (1/batch
        size for real rows, 0 for padding), loss_p = sum_i weight_pi * CE_pi;
        neg_target (P, C, B): -weight * onehot(label)."""
        work = self._buffers(x.shape[-1])
        hs = [x]
        for layer in range(self.n_layers):
            hs.append(self._layer(layer, hs[-1], out=work["h"][layer]))  # (P, width, B)
        # d(CE)/d(logits) = softmax - onehot, times each row's weight: one fused op.
        logits = hs.pop()
        probs = torch.softmax(logits, dim=1, out=work["probs"])
        dz = torch.addcmul(neg_target, probs, weight, out=logits)       # (P, C, B)
        for layer in range(self.n_layers - 1, -1, -1):
            h = hs[layer]                                               # (P, in, B)
            torch.bmm(dz, h.transpose(1, 2), out=self.dW[layer])        # (P, out, in)
            torch.sum(dz, dim=2, keepdim=True, out=self.db[layer])      # (P, out, 1)
            if layer == 0:
                break
            dh = torch.bmm(self.W[layer].transpose(1, 2), dz, out=work["dh"][layer - 1])  # (P, in, B)
            dz = self._act_backward(dh, h, work)
        torch.cat(self._grad_parts, dim=1, out=self.grad)               # (P, n_params)

    def _act_backward(self, dh: torch.Tensor, h: torch.Tensor, work: dict) -> torch.Tensor:
        """d(loss)/d(pre-activation) from d(loss)/d(activation) dh and the activation h, in dh."""
        if self.activation == "tanh":
            width = h.shape[1]
            deriv = torch.addcmul(work["ones"][:, :width], h, h, value=-1.0,
                                  out=work["deriv"][:, :width])        # 1 - h^2
            return dh.mul_(deriv)
        if self.activation == "relu":
            # relu's own backward: one op (dh * (h > 0) is two, and the bool-float multiply
            # is slow).
            return torch.ops.aten.threshold_backward.grad_input(dh, h, 0.0, grad_input=dh)
        return dh


class PackedOptimizer:
    """SGD or Adam (PyTorch's update rule, eps 1e-8) over a pack's flat parameters, with a
    learning rate and a step count per member; `active` masks members that sit a step out
    (a shorter epoch than the pack's longest, or a failed member)."""

    def __init__(self, kind: str, lr: torch.Tensor, params: torch.Tensor,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        self.kind, self.betas, self.eps = kind, betas, eps
        self.lr = lr.to(params).view(-1, 1)                              # (P, 1)
        self.m = torch.zeros_like(params)
        self.v = torch.zeros_like(params)
        self.t = torch.zeros(params.shape[0], 1, dtype=params.dtype, device=params.device)
        self._tmp = (torch.empty_like(params), torch.empty_like(params))

    def step(self, params: torch.Tensor, grad: torch.Tensor, active: torch.Tensor) -> None:
        """One update; active (P, 1) float, 1 for members that train at this step."""
        if self.kind == "sgd":
            params.addcmul_(grad, self.lr * active, value=-1.0)
            return
        b1, b2 = self.betas
        tmp, denom = self._tmp
        self.t.add_(active)
        # Inactive members keep their moments: m <- m + (1-b1)(g-m) only where active.
        self.m.lerp_(grad, (1 - b1) * active)
        self.v.lerp_(torch.mul(grad, grad, out=tmp), (1 - b2) * active)
        t = self.t.clamp(min=1)
        step_size = self.lr * active / (1 - b1 ** t)                       # (P, 1)
        torch.div(self.v, 1 - b2 ** t, out=denom).sqrt_().add_(self.eps)
        params.addcdiv_(torch.mul(self.m, step_size, out=tmp), denom, value=-1.0)

    def state(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load(self, state: dict) -> None:
        for name in ("m", "v", "t"):
            getattr(self, name).copy_(state[name])
