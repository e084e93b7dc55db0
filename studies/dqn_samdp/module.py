"""The 2016 DQN as an RLlib module, and the layer the study records.

RLlib's DefaultDQNTorchRLModule with the Nature CNN (conv 32x8x8/4, 64x4x4/2, 64x3x3/1,
"valid" padding: 3,136 features on 84x84) as its `encoder` and a Q head `af` of one hidden
layer of 512: af.net.mlp = [Linear(3136, 512), ReLU, Linear(512, actions)]. The 512-unit
layer's pre-ReLU output is the embedding the original recorded (graying_the_box saved the
FC layer's output before its ReLU).

Observations arrive as stacks of uint8 frames; the module casts them to float in [0, 1]
(Nature DQN divides by 255), so the replay buffer keeps bytes, not floats.
"""

from __future__ import annotations

import torch
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns

NATURE_CONV = [[32, [8, 8], 4, "valid"], [64, [4, 4], 2, "valid"], [64, [3, 3], 1, "valid"]]
EMBEDDING = 512


class _Uint8Frames(torch.nn.Module):
    """Wraps the encoder: uint8 frames in, float frames / 255 to the CNN."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.inner = encoder

    def forward(self, batch: dict, **kwargs) -> dict:
        obs = batch[Columns.OBS]
        if obs.dtype == torch.uint8:
            batch = {**batch, Columns.OBS: obs.float().div_(255.0)}
        return self.inner(batch, **kwargs)


class NatureDQNModule(DefaultDQNTorchRLModule):
    def setup(self):
        super().setup()
        # Before RLlib copies the encoder into the target network (make_target_networks).
        self.encoder = _Uint8Frames(self.encoder)


def hidden_layer(module: DefaultDQNTorchRLModule) -> torch.nn.Linear:
    """The 512-unit Linear of the Q head (its output, before the ReLU, is the embedding)."""
    layer = module.af.net.mlp[0]
    if not isinstance(layer, torch.nn.Linear) or layer.out_features != EMBEDDING:
        raise TypeError(f"expected the Q head to start with Linear(.., {EMBEDDING}), got {layer}")
    return layer


@torch.no_grad()
def q_and_embedding(module: DefaultDQNTorchRLModule, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q-values (B, actions), pre-ReLU embedding (B, 512)) of a batch of uint8 frame stacks
    (B, 84, 84, 4), in one pass: encoder, first Linear, then the rest of the head. Equal to
    module.compute_q_values when dueling is off (the recorder refuses dueling modules)."""
    if module.uses_dueling or module.num_atoms > 1:
        raise ValueError("the recorder reads a plain Q head: dueling and distributional modules are not supported")
    features = module.encoder({Columns.OBS: obs})["encoder_out"]
    mlp = module.af.net.mlp
    embedding = hidden_layer(module)(features)
    q = embedding
    for layer in list(mlp)[1:]:
        q = layer(q)
    return q, embedding
