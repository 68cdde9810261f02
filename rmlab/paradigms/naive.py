"""Naive-RM: a scalar head on the backbone, trained with the Bradley-Terry pairwise loss.

Chosen and rejected go through one forward pass (the batch holds B chosen rows, then B rejected rows). The paper's
two regularizers are options: reward centering `lambda * mean((r_w + r_l)^2)` and length normalization
`r / log(len + 1)` with len the response's token count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rewards(model, batch: dict, length_norm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen rewards, rejected rewards) for a collated batch of pairs."""
    scores = model(batch)
    if length_norm:
        scores = scores / torch.log(batch["response_lengths"].to(scores) + 1.0).clamp_min(math.log(2.0))
    chosen, rejected = scores.chunk(2)
    return chosen, rejected


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, center_coef: float = 0.0, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """-log sigmoid(r_w - r_l [- margin]) averaged over pairs, plus the centering term when its weight is > 0."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def loss_and_metrics(model, batch: dict, paradigm) -> tuple[torch.Tensor, dict[str, float]]:
    chosen, rejected = rewards(model, batch, paradigm.length_norm)
    loss = bradley_terry_loss(chosen, rejected, paradigm.center_coef)
    with torch.no_grad():
        metrics = {
            "accuracy": (chosen > rejected).float().mean().item(),
            "margin": (chosen - rejected).mean().item(),
            "reward_mean": torch.cat([chosen, rejected]).mean().item(),
        }
    return loss, metrics
