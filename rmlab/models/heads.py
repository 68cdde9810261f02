"""The reward head: an MLP from the pooled hidden state to one scalar (the `head` axis)."""

from __future__ import annotations

import torch
from torch import nn

from rmlab.util.registry import Registry

ACTIVATIONS: Registry[type[nn.Module]] = Registry("head.activation")
for _name, _module in (("none", nn.Identity), ("tanh", nn.Tanh), ("silu", nn.SiLU), ("relu", nn.ReLU)):
    ACTIVATIONS.add(_name, _module)


class RewardHead(nn.Module):
    """`layers` linear layers; between two of them an activation and dropout. layers=1 is a linear probe.

    BaseReward's Table 2 grid is layers 1-5 x {none, tanh, silu}; 2 layers with SiLU is its choice (the default).
    Kept in float32 whatever the backbone dtype, so the Bradley-Terry loss is computed in full precision.
    """

    def __init__(
        self, in_dim: int, layers: int = 2, activation: str = "silu", width: int | None = None, dropout: float = 0.0
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"head.layers must be >= 1, got {layers}")
        ACTIVATIONS.get(activation)  # an unknown one: one line naming the known ones
        width = width or in_dim
        dims = [in_dim] + [width] * (layers - 1) + [1]
        modules: list[nn.Module] = []
        for i in range(layers):
            if i > 0:
                modules += [ACTIVATIONS[activation](), nn.Dropout(dropout)]
            modules.append(nn.Linear(dims[i], dims[i + 1]))
        self.net = nn.Sequential(*modules)
        self.config = {"in_dim": in_dim, "layers": layers, "activation": activation, "width": width, "dropout": dropout}

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled.float())[..., 0].clone()  # a new tensor, not a view (FSDP hooks need it)
