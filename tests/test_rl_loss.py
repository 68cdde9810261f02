"""The clipped policy loss and its token statistics, by hand."""

import math
from types import SimpleNamespace

import pytest
import torch

from rmlab.rl.loss import policy_loss, token_logprobs_and_entropy


def _cfg(**kw):
    return SimpleNamespace(**{"clip_low": 0.2, "clip_high": 0.28, "kl_coef": 0.0, "loss_agg": "token_mean", **kw})


def test_clip_higher_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    loss, metrics = policy_loss(logp, old, adv, mask, _cfg(), normalizer=2.0)
    # +A: min(1.5, 1.28) -> -1.28; -A: ratio 0.5 is clipped to 0.8 -> +0.8
    assert loss.item() == pytest.approx((-1.28 + 0.8) / 2)
    assert metrics["clip_fraction"] == 1.0
    symmetric, _ = policy_loss(logp, old, adv, mask, _cfg(clip_high=0.2), normalizer=2.0)
    assert symmetric.item() == pytest.approx((-1.2 + 0.8) / 2)


def test_token_mean_over_micro_batches_equals_the_whole_batch():
    torch.manual_seed(0)
    logp, old, adv = torch.randn(4, 5) * 0.1, torch.randn(4, 5) * 0.1, torch.randn(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    for agg, normalizer in (("token_mean", mask.sum().item()), ("seq_mean_token_mean", 4.0)):
        cfg = _cfg(loss_agg=agg)
        whole, _ = policy_loss(logp, old, adv, mask, cfg, normalizer)
        parts = sum(policy_loss(logp[i : i + 2], old[i : i + 2], adv[i : i + 2], mask[i : i + 2], cfg, normalizer)[0]
                    for i in (0, 2))  # fmt: skip
        assert parts.item() == pytest.approx(whole.item(), abs=1e-6)


def test_kl_to_the_reference_is_the_k3_estimate():
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    loss, metrics = policy_loss(logp, logp.clone(), torch.zeros(1, 1), torch.ones(1, 1), _cfg(kl_coef=0.1), 1.0, ref)
    d = math.log(0.25) - math.log(0.5)
    assert metrics["kl_ref"] == pytest.approx(math.exp(d) - d - 1)
    assert loss.item() == pytest.approx(0.1 * (math.exp(d) - d - 1))


def test_token_logprobs_and_full_vocabulary_entropy():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, -10.0]]])
    logp, entropy = token_logprobs_and_entropy(logits, torch.tensor([[2, 0]]))
    assert logp[0, 0].item() == pytest.approx(math.log(0.25))
    assert entropy[0, 0].item() == pytest.approx(math.log(4))  # uniform over 4
    p = torch.softmax(logits[0, 1], -1)
    assert entropy[0, 1].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)
