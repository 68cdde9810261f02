"""Naive-RM: a scalar head on the backbone, trained with the Bradley-Terry pairwise loss.

Chosen and rejected go through one forward pass (`train.pair_layout`: one row per pair with the prompt shared, or
two rows per pair). The paper's two regularizers are options: reward centering `lambda * mean((r_w + r_l)^2)` and
length normalization `r / log(len + 1)` with len the response's token count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rmlab.paradigms.base import PARADIGMS


def rewards(model, batch: dict, length_norm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen rewards, rejected rewards) for a collated batch of pairs."""
    return pair_rewards(model(batch), batch, length_norm)


def pair_rewards(scores: torch.Tensor, batch: dict, length_norm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's scores of a collated batch (chosen rows, then rejected rows) as (chosen, rejected)."""
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
    return bradley_terry_loss(chosen, rejected, paradigm.center_coef), pair_metrics(chosen, rejected)


@torch.no_grad()
def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    return {
        "pair_accuracy": (chosen > rejected).float().mean().item(),
        "margin": (chosen - rejected).mean().item(),
        "reward_mean": torch.cat([chosen, rejected]).mean().item(),
    }


@PARADIGMS.register("naive")
class Naive:
    name = "naive"
    scalar = True
    metric = "pair_accuracy"

    def uses_lm_head(self, cfg) -> bool:
        return False

    def build(self, cfg):
        from rmlab.models.backbone import backbone_source, prepare_backbone
        from rmlab.models.heads import RewardHead
        from rmlab.models.reward_model import RewardModel

        model, processor = prepare_backbone(cfg, uses_lm_head=self.uses_lm_head(cfg))
        hidden = model.config.get_text_config().hidden_size
        torch.manual_seed(cfg.run.seed + 1)  # the head's init does not depend on how the backbone was built
        head = RewardHead(hidden, cfg.head.layers, str(cfg.head.activation), cfg.head.width, cfg.head.dropout)
        source = backbone_source(cfg.backbone, cfg.scale)
        return RewardModel(model, head, str(cfg.backbone.family), source, self.name), processor

    def encoder(self, processor, cfg):
        from rmlab.data.encode import PairEncoder

        return PairEncoder(processor, cfg.data_mix.max_length)

    def collate(self, items, pad_id, cfg):
        from rmlab.data.packing import collate_for

        return collate_for(cfg.train.pair_layout)(items, pad_id)

    def loss(self, model, batch, cfg):
        return loss_and_metrics(model, batch, cfg.paradigm)

    @torch.no_grad()
    def score(self, model, items, encoder, cfg) -> list[dict]:
        batch = self.collate(items, encoder.tokenizer.pad_token_id, cfg)
        chosen, rejected = rewards(model, batch, cfg.paradigm.length_norm)
        return [{"scores": [c, r]} for c, r in zip(chosen.tolist(), rejected.tolist(), strict=True)]
