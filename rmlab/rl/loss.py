"""The clipped policy-gradient loss, with the token statistics it needs.

per token: max(-A * w, -A * clip(w, 1 - clip_low, 1 + clip_high)), w = exp(logp - logp_old) (the log-ratio clamped
to +-20 against overflow), plus `kl_coef` times the k3 estimate of KL(policy || reference) where a reference is
given. Aggregation (`rl.loss_agg`): `token_mean` (DAPO: every response token of the whole batch weighs the same;
the denominator is the batch's token count, passed in, so micro-batches sum to the batch's loss) or
`seq_mean_token_mean` (GRPO's original: each sequence's token mean, averaged over the batch's sequences).
"""

from __future__ import annotations

import torch

from rmlab.errors import ConfigError

AGGREGATIONS = ("token_mean", "seq_mean_token_mean")


def token_logprobs_and_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token and the full-vocabulary entropy of the distribution it came from."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return picked, entropy


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg,
    normalizer: float,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """This micro-batch's share of the batch loss: (N, T) inputs; `normalizer` is the batch's response-token count
    (`token_mean`) or sequence count (`seq_mean_token_mean`)."""
    mask = mask.float()
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - float(cfg.clip_low), 1.0 + float(cfg.clip_high))
    per_token = torch.maximum(-advantages * ratio, -advantages * clipped)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and float(cfg.kl_coef) > 0:
        d = ref_logp - logp
        kl = d.exp() - d - 1.0
        per_token = per_token + float(cfg.kl_coef) * kl
    agg = str(cfg.loss_agg)
    if agg == "token_mean":
        loss = (per_token * mask).sum() / normalizer
    elif agg == "seq_mean_token_mean":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp_min(1.0)).sum() / normalizer
    else:
        raise ConfigError(f"rl.loss_agg={agg}: choose one of {', '.join(AGGREGATIONS)}")
    n = mask.sum().clamp_min(1.0)
    with torch.no_grad():
        metrics = {
            "clip_fraction": (((ratio - clipped).abs() > 0).float() * mask).sum().item() / n.item(),
            "approx_kl_old": ((ratio - 1.0 - log_ratio) * mask).sum().item() / n.item(),
            "kl_ref": (kl * mask).sum().item() / n.item(),
        }
    return loss, metrics
