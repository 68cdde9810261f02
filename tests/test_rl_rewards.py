"""Rollout rewards: the rule, a reward model, the hybrid of both, and R1-Reward's pairwise scheme, with a real tiny
reward model."""

import math

import pytest
import torch

from rmlab.config.compose import compose
from rmlab.errors import ConfigError
from rmlab.eval.score import Scorer
from rmlab.paradigms import get_paradigm
from rmlab.paradigms.answers import normalize_answer
from rmlab.rl.rewards import Prompt, compute_rewards, model_scores, rule_reward


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("44", "44", 1.0),
        (" Yellow. ", "yellow", 1.0),
        ("<think>44 beats 34</think><answer>**44**</answer>", "44", 1.0),
        ("The answer is 44", "44", 0.0),  # exact match, not containment
        ("<answer>34</answer> 44", "44", 0.0),  # the tag decides
        ("4 4", "44", 0.0),
        ("", "44", 0.0),
    ],
)
def test_rule_is_an_exact_match_after_normalization(completion, answer, reward):
    assert rule_reward(completion, answer) == reward


def test_normalize_answer():
    assert normalize_answer('  "Red  Circle!" ') == "red circle"


@pytest.fixture(scope="module")
def scorer():
    cfg = compose(["backbone=qwen2_5", "data_mix=synth_text", "tracking=disabled", "paradigm=naive"])
    naive = get_paradigm("naive")
    torch.manual_seed(0)
    model, processor = naive.build(cfg)
    return Scorer(model.eval(), naive.encoder(processor, cfg), naive, cfg, 8)


PROMPTS = [
    Prompt("q0", [{"role": "user", "content": "Which is larger, 34 or 44?"}], "44"),
    Prompt("q1", [{"role": "user", "content": "What colour is a lemon?"}], "yellow"),
]
COMPLETIONS = [["44", "34", "forty", "44."], ["yellow", "green", "Yellow", "blue"]]


class _Recording:
    """The real scorer, recording which responses it was asked about."""

    def __init__(self, scorer):
        self.inner, self.seen = scorer, []
        self.scalar, self.name = scorer.scalar, scorer.name

    def score_pairs(self, pairs, desc=""):
        self.seen += [r for p in pairs for r in (p.chosen, p.rejected)]
        return self.inner.score_pairs(pairs, desc)


def test_hybrid_asks_the_reward_model_exactly_where_the_rule_says_no_match(scorer):
    spy = _Recording(scorer)
    rewards = compute_rewards("hybrid", PROMPTS, COMPLETIONS, spy)
    assert set(spy.seen) == {"34", "forty", "green", "blue"}  # never a matching rollout
    scores = model_scores(scorer, PROMPTS, COMPLETIONS)
    for group, hits, got in zip(scores, [[1, 0, 0, 1], [1, 0, 1, 0]], rewards, strict=True):
        for s, hit, r in zip(group, hits, got, strict=True):
            assert r == pytest.approx(1.0 if hit else 1 / (1 + math.exp(-s)), abs=1e-5)


def test_model_reward_raw_and_sigmoid(scorer):
    raw = compute_rewards("model", PROMPTS, COMPLETIONS, scorer, transform="raw")
    squashed = compute_rewards("model", PROMPTS, COMPLETIONS, scorer, transform="sigmoid")
    for a, b in zip(sum(raw, []), sum(squashed, []), strict=True):
        assert b == pytest.approx(1 / (1 + math.exp(-a)), abs=1e-6)
    alone = model_scores(scorer, PROMPTS[:1], [["forty"]])[0][0]
    assert raw[0][2] == pytest.approx(alone, abs=1e-4)  # a rollout's score does not depend on its neighbours


def test_pairwise_counts_the_rollouts_each_one_beats(scorer):
    spy = _Recording(scorer)
    rewards = compute_rewards("pairwise", PROMPTS, COMPLETIONS, spy)
    assert len(spy.seen) == 2 * 2 * (4 * 3)  # every ordered pair of 4 rollouts, two prompts
    scores = model_scores(scorer, PROMPTS, COMPLETIONS)  # a scalar judge prefers the higher score
    for group, got in zip(scores, rewards, strict=True):
        assert got == [sum(s > t for k, t in enumerate(group) if k != i) for i, s in enumerate(group)]
    assert sorted(rewards[0]) == [0, 1, 2, 3]


def test_reward_errors_name_the_way_out(scorer):
    with pytest.raises(ConfigError, match="needs rl.reward_model"):
        compute_rewards("hybrid", PROMPTS, COMPLETIONS, None)
    with pytest.raises(ConfigError, match="known: rule, model, hybrid, pairwise"):
        compute_rewards("vibes", PROMPTS, COMPLETIONS, scorer)
    assert compute_rewards("rule", PROMPTS, COMPLETIONS) == [[1, 0, 0, 1], [1, 0, 1, 0]]
