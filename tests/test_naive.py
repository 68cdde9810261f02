"""Naive-RM: the Bradley-Terry loss and the paper's two regularizers, checked against values worked out by hand."""

import math

import pytest
import torch

from rmlab.models.heads import RewardHead
from rmlab.paradigms.naive import bradley_terry_loss, rewards


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -log sigmoid(1) = log(1 + e^-1) = 0.31326; -log sigmoid(-1) = log(1 + e) = 1.31326
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, abs=1e-6)


def test_reward_centering_adds_lambda_mean_squared_sum():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    plain = bradley_terry_loss(chosen, rejected).item()
    # mean((2+1)^2, (0+1)^2) = (9 + 1) / 2 = 5
    assert bradley_terry_loss(chosen, rejected, center_coef=0.01).item() == pytest.approx(plain + 0.05, abs=1e-6)


def test_margin_is_subtracted_from_the_difference():
    loss = bradley_terry_loss(torch.tensor([3.0]), torch.tensor([1.0]), margin=torch.tensor([2.0]))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # -log sigmoid(0)


class _Scores(torch.nn.Module):
    """Stands in for a reward model's forward: returns fixed scores and counts calls."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.calls = torch.tensor(scores), 0

    def forward(self, batch):
        self.calls += 1
        return self.scores


def test_length_normalization_divides_by_log_len_plus_one():
    model = _Scores([2.0, 2.0, 1.0, 1.0])
    batch = {"inputs": {}, "pool_index": None, "response_lengths": torch.tensor([3, 7, 1, 15])}
    chosen, rejected = rewards(model, batch, length_norm=True)
    assert chosen.tolist() == pytest.approx([2 / math.log(4), 2 / math.log(8)])
    assert rejected.tolist() == pytest.approx([1 / math.log(2), 1 / math.log(16)])


def test_chosen_and_rejected_come_from_one_forward():
    model = _Scores([1.0, 2.0, 3.0, 4.0])
    chosen, rejected = rewards(model, {"inputs": {}, "pool_index": None, "response_lengths": None})
    assert model.calls == 1
    assert chosen.tolist() == [1.0, 2.0] and rejected.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(("layers", "activation", "n_linear"), [(1, "none", 1), (2, "silu", 2), (5, "tanh", 5)])
def test_head_shape_follows_the_grid(layers, activation, n_linear):
    head = RewardHead(16, layers=layers, activation=activation, width=8, dropout=0.1)
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == n_linear
    assert linears[-1].out_features == 1
    assert head(torch.randn(3, 16, dtype=torch.float64)).dtype == torch.float32  # the head computes in fp32


def test_head_rejects_unknown_activation():
    with pytest.raises(ValueError, match="known: none, tanh, silu, relu"):
        RewardHead(16, activation="gelu2")
