"""Advantage estimators of the policy stage (`rl.algorithm`): GRPO, DAPO, GTPO and GRPO-S, one registry.

Each takes a whole batch of rollout groups (`Rollouts`: every sequence's reward, its group, its response mask and
the full-vocabulary entropies recorded at rollout) and returns a per-token advantage for every sequence. Group
statistics are computed here, where every group is whole, never inside a micro-batch of the update.

- `grpo`: the group z-score of the sequence reward, (r - mean_g) / (std_g + eps) (unbiased std, as verl and TRL),
  broadcast to the sequence's tokens; `rl.norm_by_std=false` gives Dr. GRPO's r - mean_g. A group of one has no
  baseline: advantage 0.
- `dapo`: the same advantage; DAPO's other parts (clip-higher, dynamic sampling, token-mean loss, overlong reward
  shaping) are settings of the loop and the loss (`conf/rl/dapo.yaml`).
- `gtpo` (arXiv 2508.04349, Eq. 3, 5, 6): token rewards shaped by entropy. Correct sequences (reward above
  `rl.correct_threshold`) O+, incorrect O-; at each position t the active ones (with a token at t), d_t and h_t of
  them. r+_{i,t} = a1 + a2 * d_t * H_{i,t} / sum_{O+_t} H; r-_{j,t} = -a1 - a2 * h_t * (1/H_{j,t}) / sum_{O-_t} 1/H
  (confident wrong tokens are punished most). With a1 + a2 = 1 the rewards at a position sum to d_t (and -h_t):
  the entropy only redistributes a fixed budget. Entropies get `eps` added before the shares, so a position where
  every entropy is 0 shares equally. Then the advantage (`rl.gtpo.adv_norm`, Eq. 6's scope being ambiguous in the
  public reading): `joint_group` (default: z-score over every active token of the group, signs kept),
  `separate_group` (O+ and O- tokens z-scored apart within the group: what the public implementations do; it makes
  some correct tokens negative) or `separate_batch` (apart, pooled over the batch: the verl fork). Population std.
- `grpo_s` (Eq. 8, 9): the sequence's mean token entropy H_i; r+_i = b1 + b2 * n * H_i / sum_{O+} H,
  r-_j = -b1 - b2 * m * (1/H_j) / sum_{O-} 1/H; then the group z-score, broadcast to the tokens.

Entropies arrive detached (recorded under the rollout policy): no gradient flows through the shaping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rmlab.errors import ConfigError
from rmlab.util.registry import Registry


@dataclass
class Rollouts:
    """A batch of rollout groups, one row per sequence."""

    rewards: torch.Tensor  # (N,) sequence rewards
    group: torch.Tensor  # (N,) long: which prompt's group each sequence belongs to
    mask: torch.Tensor  # (N, T) 1 on response tokens, 0 on padding
    entropy: torch.Tensor | None = None  # (N, T) full-vocabulary entropies under the rollout policy


ESTIMATORS: Registry[Callable] = Registry("rl.algorithm")  # name -> (Rollouts, rl config) -> (N, T) advantages
register = ESTIMATORS.register


def compute_advantages(name: str, rollouts: Rollouts, cfg) -> torch.Tensor:
    """(N, T) advantages by the named estimator; `cfg` is the `rl` config."""
    return ESTIMATORS.get(name)(rollouts, cfg) * rollouts.mask


def group_zscore(scores: torch.Tensor, group: torch.Tensor, eps: float, by_std: bool = True) -> torch.Tensor:
    """(s - mean of its group) / (unbiased std of its group + eps); 0 for a group of one."""
    out = torch.zeros_like(scores, dtype=torch.float32)
    for g in group.unique():
        idx = group == g
        s = scores[idx].float()
        if s.numel() < 2:
            continue
        centred = s - s.mean()
        out[idx] = centred / (s.std() + eps) if by_std else centred
    return out


@register("grpo")
def grpo(r: Rollouts, cfg) -> torch.Tensor:
    per_seq = group_zscore(r.rewards, r.group, float(cfg.eps), bool(cfg.norm_by_std))
    return per_seq[:, None].expand_as(r.mask).float()


@register("dapo")
def dapo(r: Rollouts, cfg) -> torch.Tensor:
    return grpo(r, cfg)


def _needs_entropy(r: Rollouts, name: str) -> torch.Tensor:
    if r.entropy is None:
        raise ValueError(f"rl.algorithm={name} shapes rewards by token entropy: the rollouts carry none")
    return r.entropy.detach().float()


def _shares(weights: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Each active row's share of the column's total weight (0 where inactive)."""
    w = weights * active
    return w / w.sum(dim=0, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


def gtpo_token_rewards(entropy: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor, cfg) -> torch.Tensor:
    """Eq. 3 and 5 for one group: (G, T) shaped token rewards (0 on padding)."""
    a1, a2, eps = float(cfg.gtpo.alpha1), float(cfg.gtpo.alpha2), float(cfg.eps)
    mask = mask.float()
    out = torch.zeros_like(mask)
    h = entropy + eps
    for rows, weight, sign in ((correct, h, 1.0), (~correct, 1.0 / h, -1.0)):
        if rows.any():
            active = mask[rows]
            count = active.sum(dim=0, keepdim=True)  # d_t or h_t
            out[rows] = sign * (a1 + a2 * count * _shares(weight[rows], active)) * active
    return out


def _zscore_tokens(values: torch.Tensor, active: torch.Tensor, eps: float) -> torch.Tensor:
    """Z-score of the active entries over all of them (population std), 0 elsewhere."""
    picked = values[active]
    if picked.numel() == 0:
        return torch.zeros_like(values)
    mean, std = picked.mean(), picked.std(unbiased=False)
    return torch.where(active, (values - mean) / (std + eps), torch.zeros_like(values))


@register("gtpo")
def gtpo(r: Rollouts, cfg) -> torch.Tensor:
    entropy = _needs_entropy(r, "gtpo")
    mask = r.mask.bool()
    correct = r.rewards > float(cfg.correct_threshold)
    shaped = torch.zeros_like(entropy)
    for g in r.group.unique():
        idx = r.group == g
        shaped[idx] = gtpo_token_rewards(entropy[idx], mask[idx], correct[idx], cfg)
    scope, eps = str(cfg.gtpo.adv_norm), float(cfg.eps)
    if scope == "separate_batch":
        out = torch.zeros_like(shaped)
        for rows in (correct, ~correct):
            sel = rows[:, None] & mask
            out += _zscore_tokens(shaped, sel, eps)
        return out
    if scope not in ("joint_group", "separate_group"):
        raise ConfigError(f"rl.gtpo.adv_norm={scope}: choose joint_group, separate_group or separate_batch")
    out = torch.zeros_like(shaped)
    for g in r.group.unique():
        in_group = (r.group == g)[:, None] & mask
        parts = [in_group] if scope == "joint_group" else [in_group & correct[:, None], in_group & ~correct[:, None]]
        for sel in parts:
            out += _zscore_tokens(shaped, sel, eps)
    return out


def grpo_s_sequence_rewards(mean_entropy: torch.Tensor, correct: torch.Tensor, cfg) -> torch.Tensor:
    """Eq. 9 for one group: (G,) shaped sequence rewards from each sequence's mean token entropy."""
    b1, b2, eps = float(cfg.grpo_s.beta1), float(cfg.grpo_s.beta2), float(cfg.eps)
    h = mean_entropy + eps
    out = torch.zeros_like(h)
    for rows, weight, sign in ((correct, h, 1.0), (~correct, 1.0 / h, -1.0)):
        if rows.any():
            w = weight[rows]
            out[rows] = sign * (b1 + b2 * rows.sum() * w / w.sum())
    return out


@register("grpo_s")
def grpo_s(r: Rollouts, cfg) -> torch.Tensor:
    entropy = _needs_entropy(r, "grpo_s")
    mask = r.mask.float()
    mean_entropy = (entropy * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    correct = r.rewards > float(cfg.correct_threshold)
    shaped = torch.zeros_like(mean_entropy)
    for g in r.group.unique():
        idx = r.group == g
        shaped[idx] = grpo_s_sequence_rewards(mean_entropy[idx], correct[idx], cfg)
    per_seq = group_zscore(shaped, r.group, float(cfg.eps), bool(cfg.norm_by_std))
    return per_seq[:, None].expand_as(mask).float()
