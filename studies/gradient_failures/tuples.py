"""Tuples of line-segment images (paper sec. 3, Figs. 3 and 5): end-to-end against decomposition.

An image is a 28x28 binary picture of a line segment (angle U[0, pi), length U[5, 23], centre
uniform in the frame, clipped at the edges), labelled +1 when its angle is below pi/2. A tuple
holds k images; its target is +1 when an odd number of them are labelled +1 (the code's
parity). Images are drawn on the fly from the member's seeded generator, never stored (the
code wrote 500k tuples per k to disk first).

The network (code `tuple_rect.py`): a per-image CNN shared by the k images, conv 5x5x16 +
maxpool 2, twice, with no ReLU after the convolutions (as in the code; the paper does not say),
then FC 50 ReLU, FC 100 ReLU and one score; the k sigmoid(scores) go through FC 100 ReLU to one
output. Hinge loss on the output (end_to_end); decomposition adds the mean per-image hinge loss
of the scores against the images' labels. Adam (beta2 0.99, eps 1e-5, the code's). PyTorch's
the code's initialisation (`make_network`).

tuples_snr measures, at the initialisation, the gradient of each method's loss with respect to
the score layer's weights (`score.weight`, the CNN's last layer) over `snr_batches` batches of
`batch_size` tuples: signal ||E g||^2 and noise E||g - E g||^2 of the per-batch gradient g, both
unbiased estimates, and snr = signal / noise. The code's noise, batch * E||g||^2 - signal^2, is
not followed. The decomposition loss here is the first image's hinge loss alone, as in the code,
so that its batch holds the same number of images for every k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lookinside.studies.gradient_failures.config import ADAM
from lookinside.torchpack import PackedModel, PackedOptimizer, restore, training_state

SIZE = 28


def draw(n: int, k: int, g: torch.Generator):
    """(n, k, 28, 28) images, (n, k) labels in {+-1}, (n,) tuple targets in {+-1}."""
    m = n * k
    theta = torch.rand(m, generator=g) * math.pi
    centre = torch.rand(m, 2, generator=g) * SIZE
    length = 5 + torch.rand(m, generator=g) * (SIZE - 10)
    steps = torch.arange(SIZE // 2, dtype=torch.float32)                        # code: l in range(length // 2)
    unit = torch.stack([theta.cos(), theta.sin()], -1)                          # (m, 2)
    offsets = torch.cat([steps, -steps])[None, :, None] * unit[:, None]         # (m, 2L, 2)
    points = (centre[:, None] + offsets).floor().long()
    keep = (torch.cat([steps, steps])[None] < (length // 2)[:, None]) & ((points >= 0) & (points < SIZE)).all(-1)
    flat = (points[..., 0] * SIZE + points[..., 1]).clamp(0, SIZE * SIZE - 1)
    images = torch.zeros(m, SIZE * SIZE).scatter_add_(1, flat, keep.float()).clamp_(max=1)
    labels = torch.where(theta < math.pi / 2, 1.0, -1.0).reshape(n, k)
    target = torch.where((labels > 0).sum(1) % 2 == 1, 1.0, -1.0)
    return images.reshape(n, k, SIZE, SIZE), labels, target


class TupleNet(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.MaxPool2d(2), nn.Conv2d(16, 16, 5, padding=2),
                                 nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 50), nn.ReLU(),
                                 nn.Linear(50, 100), nn.ReLU())
        self.score = nn.Linear(100, 1)
        self.head = nn.Sequential(nn.Linear(k, 100), nn.ReLU(), nn.Linear(100, 1))

    def forward(self, images):                                   # (B, k, 28, 28) -> (B, k + 1): scores, output
        B, k = images.shape[:2]
        scores = self.score(self.cnn(images.reshape(B * k, 1, SIZE, SIZE))).reshape(B, k)
        return torch.cat([scores, self.head(scores.sigmoid())], -1)


def make_network(k: int, seed: int) -> TupleNet:
    """The code's initialisation: weights truncated normal (at 2 std) with std 1/sqrt(c), biases zero. c is
    the layer's fan-in for the fully connected layers and its input channels for the convolutions, where
    the code's first convolution reads its input's last axis, 28 (the image width), for its one channel."""
    net = TupleNet(k)
    torch.manual_seed(seed)         # after construction: the CNN starts the same for every k
    for module, c in zip([m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
                         [SIZE, 16, 16 * 7 * 7, 50, 100, k, 100]):
        nn.init.trunc_normal_(module.weight, std=c ** -0.5, a=-2 * c ** -0.5, b=2 * c ** -0.5)
        nn.init.zeros_(module.bias)
    return net


def hinge(scores, y):
    return torch.clamp(1 - scores * y, min=0).mean()


def loss_fn(method: str):
    def loss(out, labels, target):                                # (B, k + 1), (B, k), (B,) -> ()
        e2e = hinge(out[:, -1], target)
        return e2e if method == "end_to_end" else e2e + hinge(out[:, :-1], labels)
    return loss


def snr(net: TupleNet, method: str, k: int, batches: int, batch: int, g: torch.Generator) -> dict:
    """Signal, noise and their ratio for the gradient of `method`'s loss in net.score.weight."""
    grads = []
    for _ in range(batches):
        images, labels, target = draw(batch, k, g)
        if method == "decomposition":                          # its loss reads the first image only
            images, labels = images[:, :1], labels[:, :1]
        with torch.no_grad():
            features = net.cnn(images.reshape(-1, 1, SIZE, SIZE))
        net.zero_grad()
        scores = net.score(features).reshape(batch, -1)
        if method == "end_to_end":
            hinge(net.head(scores.sigmoid())[:, 0], target).backward()
        else:
            hinge(scores[:, 0], labels[:, 0]).backward()
        grads.append(net.score.weight.grad.flatten().double().clone())
    g = torch.stack(grads)                                                       # (batches, 100)
    noise = float(((g - g.mean(0)) ** 2).sum(1).sum() / (batches - 1))
    signal = float((g.mean(0) ** 2).sum()) - noise / batches
    return {"layer": ["score.weight"], "signal": [signal], "noise": [noise], "snr": [signal / noise]}


def train(configs, session) -> None:
    c0 = configs[0]
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    members = [make_network(c0.k, c.seed) for c in configs]
    if c0.experiment == "tuples_snr":
        for p, (c, net, g) in enumerate(zip(configs, members, gens)):
            session.add_rows("gradient_snr", p, snr(net, c.method, c.k, c.snr_batches, c.batch_size, g))
            session.report(progress=(p + 1) / len(configs))
        return
    tests = [draw(c0.eval_size, c0.k, g) for g in gens]
    x_test, labels_test, y_test = (torch.stack(t) for t in zip(*tests))         # (P, N, ...)
    model = PackedModel(members)
    opt = PackedOptimizer(model, torch.optim.Adam, [c.learning_rate for c in configs], **ADAM)
    start = restore(session.state, model, opt, gens)
    losses = torch.vmap(loss_fn(c0.method))
    for it in range(start, c0.iterations + 1):
        if it % c0.eval_every == 0 or it == c0.iterations:
            with torch.no_grad():
                out = torch.cat([model(x, shared=False) for x in x_test.split(500, dim=1)], 1)  # (P, N, k + 1)
            acc = (torch.sign(out[..., -1]) == y_test).double().mean(1)
            session.add_pack_rows("metrics", {"iteration": [it], "split": ["test"]},
                                  {"loss": torch.vmap(hinge)(out[..., -1], y_test).double().numpy()[:, None],
                                   "accuracy": acc.numpy()[:, None]})
            session.report(iteration=it, progress=it / max(c0.iterations, 1), test_accuracy=float(acc.mean()))
        if it == c0.iterations:
            break
        x, labels, y = (torch.stack(t) for t in zip(*[draw(c0.batch_size, c0.k, g) for g in gens]))
        opt.zero_grad()
        losses(model(x, shared=False), labels, y).sum().backward()
        opt.step()

        session.checkpoint(lambda it=it: training_state(model, opt, gens, it + 1))
