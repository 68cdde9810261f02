"""Advantage estimators on small groups worked out by hand (the vectors of the reference notes on GTPO / GRPO-S)."""

from types import SimpleNamespace

import pytest
import torch

from rmlab.errors import ConfigError
from rmlab.rl.advantages import Rollouts, compute_advantages, grpo_s_sequence_rewards, gtpo_token_rewards


def _cfg(**kw):
    base = {
        "eps": 1e-6,
        "norm_by_std": True,
        "correct_threshold": 0.5,
        "gtpo": SimpleNamespace(alpha1=0.9, alpha2=0.1, adv_norm="joint_group"),
        "grpo_s": SimpleNamespace(beta1=0.9, beta2=0.1),
    }
    return SimpleNamespace(**{**base, **kw})


def _padded(rows, pad=0.0):
    width = max(len(r) for r in rows)
    values = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.float32)
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows])
    return values, mask


# The reference notes' example: correct O+ = {H = [2, 4, 1], [3, 1]}, incorrect O- = {H = [1, 4, 0.5], [3, 0.5]}.
ENTROPY, MASK = _padded([[2, 4, 1], [3, 1], [1, 4, 0.5], [3, 0.5]])
CORRECT = torch.tensor([True, True, False, False])
REWARDS = torch.tensor([1.0, 1.0, 0.0, 0.0])


def test_grpo_is_the_group_z_score_broadcast_to_the_tokens():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two groups of three
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = torch.tensor([[1, 1, 0]] * 6, dtype=torch.float32)
    adv = compute_advantages("grpo", Rollouts(rewards, group, mask), _cfg())
    # group 0: mean 1/3, unbiased std sqrt(1/3); group 1 is all-correct: no signal
    std = (1 / 3) ** 0.5
    expected = [(2 / 3) / std, (-1 / 3) / std, (-1 / 3) / std, 0, 0, 0]
    assert adv[:, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(adv[:, 2], torch.zeros(6))  # padding gets nothing
    dr = compute_advantages("grpo", Rollouts(rewards, group, mask), _cfg(norm_by_std=False))
    assert dr[:3, 0].tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3])
    assert compute_advantages("dapo", Rollouts(rewards, group, mask), _cfg()).tolist() == adv.tolist()


def test_a_group_of_one_has_no_baseline():
    adv = compute_advantages("grpo", Rollouts(torch.tensor([1.0]), torch.tensor([0]), torch.ones(1, 2)), _cfg())
    assert adv.tolist() == [[0.0, 0.0]]


def test_gtpo_token_rewards_by_hand():
    shaped = gtpo_token_rewards(ENTROPY, MASK, CORRECT, _cfg())
    assert shaped[0].tolist() == pytest.approx([0.98, 1.06, 1.00], abs=1e-5)
    assert shaped[1].tolist() == pytest.approx([1.02, 0.94, 0.0], abs=1e-5)  # padding: 0
    assert shaped[2].tolist() == pytest.approx([-1.05, -0.9 - 0.2 / 9, -1.00], abs=1e-5)
    assert shaped[3].tolist() == pytest.approx([-0.95, -0.9 - 1.6 / 9, 0.0], abs=1e-5)


def test_gtpo_conserves_the_reward_at_each_position_when_alphas_sum_to_one():
    torch.manual_seed(0)
    entropy = torch.rand(6, 5) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0],
                         [1, 1, 1, 1, 1]], dtype=torch.float32)  # fmt: skip
    correct = torch.tensor([True, True, True, False, False, False])
    shaped = gtpo_token_rewards(entropy, mask, correct, _cfg())
    d = mask[correct].sum(0)
    h = mask[~correct].sum(0)
    assert shaped[correct].sum(0).tolist() == pytest.approx(d.tolist(), abs=1e-5)  # the number of active correct
    assert shaped[~correct].sum(0).tolist() == pytest.approx((-h).tolist(), abs=1e-5)


def test_gtpo_single_active_sequence_and_zero_entropy():
    # one correct sequence active at positions 1-2: it gets a1 + a2 there, whatever its entropy
    entropy, mask = _padded([[5.0, 0.1, 2.0], [1.0]])
    shaped = gtpo_token_rewards(entropy, mask, torch.tensor([True, True]), _cfg())
    assert shaped[0, 1:].tolist() == pytest.approx([1.0, 1.0])
    # zero entropy everywhere: the budget is shared equally, still conserved
    zero = torch.zeros(3, 2)
    shaped = gtpo_token_rewards(zero, torch.ones(3, 2), torch.tensor([True, True, False]), _cfg())
    assert shaped[:2].flatten().tolist() == pytest.approx([1.0] * 4)
    assert shaped[2].tolist() == pytest.approx([-1.0, -1.0])
    assert torch.isfinite(shaped).all()


def test_gtpo_advantage_scopes():
    r = Rollouts(REWARDS, torch.zeros(4, dtype=torch.long), MASK, ENTROPY)
    separate = compute_advantages(
        "gtpo", r, _cfg(gtpo=SimpleNamespace(alpha1=0.9, alpha2=0.1, adv_norm="separate_group"))
    )
    # the notes' values: the constant a1 * r_i is subtracted away, only the entropy share is left
    assert separate[0].tolist() == pytest.approx([-0.5, 1.5, 0.0], abs=1e-3)
    assert separate[1].tolist() == pytest.approx([0.5, -1.5, 0.0], abs=1e-3)
    assert separate[2].tolist() == pytest.approx([-0.855, 1.330, 0.0], abs=1e-3)
    assert separate[3].tolist() == pytest.approx([0.855, -1.330, 0.0], abs=1e-3)
    joint = compute_advantages("gtpo", r, _cfg())
    assert (joint[:2][MASK[:2].bool()] > 0).all() and (joint[2:][MASK[2:].bool()] < 0).all()  # signs kept
    # two copies of the group in one batch: batch scope equals group scope on each
    r2 = Rollouts(torch.cat([REWARDS] * 2), torch.tensor([0] * 4 + [1] * 4), torch.cat([MASK] * 2),
                  torch.cat([ENTROPY] * 2))  # fmt: skip
    batch = compute_advantages(
        "gtpo", r2, _cfg(gtpo=SimpleNamespace(alpha1=0.9, alpha2=0.1, adv_norm="separate_batch"))
    )
    assert torch.allclose(batch[:4], separate, atol=1e-5)
    with pytest.raises(ConfigError, match="adv_norm"):
        compute_advantages("gtpo", r, _cfg(gtpo=SimpleNamespace(alpha1=0.9, alpha2=0.1, adv_norm="global")))


def test_gtpo_all_correct_and_all_wrong_groups():
    entropy, mask = _padded([[1.0, 3.0], [2.0, 2.0], [4.0]])
    for rewards in (torch.ones(3), torch.zeros(3)):
        r = Rollouts(rewards, torch.zeros(3, dtype=torch.long), mask, entropy)
        adv = compute_advantages("gtpo", r, _cfg())
        active = adv[mask.bool()]
        assert active.sum().item() == pytest.approx(0.0, abs=1e-4)  # centred: only the entropy shares remain
    correct = compute_advantages(
        "gtpo", Rollouts(torch.ones(3), torch.zeros(3, dtype=torch.long), mask, entropy), _cfg()
    )
    assert correct[2, 0] > correct[0, 0]  # among correct tokens, the higher entropy is pushed up more


def test_grpo_s_by_hand():
    mean_h = torch.tensor([7 / 3, 2.0, 5.5 / 3, 1.75])
    shaped = grpo_s_sequence_rewards(mean_h, CORRECT, _cfg())
    assert shaped.tolist() == pytest.approx([1.0077, 0.9923, -0.9977, -1.0023], abs=1e-4)
    adv = compute_advantages("grpo_s", Rollouts(REWARDS, torch.zeros(4, dtype=torch.long), MASK, ENTROPY), _cfg())
    expected = (shaped - shaped.mean()) / (shaped.std() + 1e-6)
    assert adv[:, 0].tolist() == pytest.approx(expected.tolist(), abs=1e-4)
    assert adv[1, 2].item() == 0.0 and adv[1, 1].item() == pytest.approx(expected[1].item(), abs=1e-4)


def test_entropy_shaping_without_entropies_or_an_unknown_algorithm_is_an_error():
    r = Rollouts(REWARDS, torch.zeros(4, dtype=torch.long), MASK)
    with pytest.raises(ValueError, match="entropy"):
        compute_advantages("gtpo", r, _cfg())
    with pytest.raises(ConfigError, match="known: grpo, dapo, gtpo, grpo_s"):
        compute_advantages("ppo", r, _cfg())
