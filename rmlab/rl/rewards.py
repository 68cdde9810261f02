"""Rewards for the policy's rollouts (`rl.reward`), BaseReward Table 11's four:

- `rule`: 1 when the answer matches the ground truth exactly (after normalization: `<answer>` tag content if any,
  case, surrounding punctuation and spaces), else 0.
- `model`: a trained reward model's score of (prompt, rollout): any scalar rmlab model or ensemble (a run
  directory, model directory or signature), `rl.reward_transform` raw or sigmoid.
- `hybrid`: 1 on a rule match, else sigmoid(model score); the reward model is asked only about rollouts the rule
  rejects.
- `pairwise` (R1-Reward's scheme): every ordered pair (i, j) of a prompt's G rollouts is judged with i shown first;
  R_i = sum over j != i of S(i, j), S = 1 when the judge prefers i (G (G - 1) judgements per prompt: 56 for 8).
  Any rmlab model judges: a generative one (GRM, LongCoT-GRM) or a scalar one comparing its two scores.

A rollout batch is a list of `Prompt`s and, per prompt, its G completions; rewards come back in the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rmlab.data.records import PreferencePair
from rmlab.errors import ConfigError
from rmlab.eval.benchmarks.base import BenchItem
from rmlab.eval.benchmarks.run import score_items
from rmlab.paradigms.answers import exact_match
from rmlab.paradigms.base import verdict_right
from rmlab.util.registry import Registry

REWARDS = Registry("rl.reward")  # kind -> (prompts, completions, scorer, transform) -> rewards


@dataclass
class Prompt:
    """A verifiable question: chat messages (images referenced as in preference pairs) and its ground truth."""

    id: str
    messages: list[dict]
    answer: str
    images: list = field(default_factory=list)
    category: str = ""


def rule_reward(completion: str, answer: str) -> float:
    return 1.0 if exact_match(completion, answer) else 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def model_scores(scorer, prompts: list[Prompt], completions: list[list[str]]) -> list[list[float]]:
    """A scalar reward model's score of every completion, against its prompt (the benchmark path: responses two by
    two through the pair machinery)."""
    if not scorer.scalar:
        raise ConfigError(
            f"rl.reward=model/hybrid needs a scalar reward model; paradigm {scorer.name} judges pairs: use "
            "rl.reward=pairwise"
        )
    items = [
        BenchItem(id=p.id, prompt=p.messages, responses=list(c), images=p.images)
        for p, c in zip(prompts, completions, strict=True)
        if c
    ]
    predictions = iter(score_items(scorer, items)) if items else iter(())
    return [next(predictions)["scores"] if c else [] for c in completions]


def pairwise_rewards(scorer, prompts: list[Prompt], completions: list[list[str]]) -> list[list[float]]:
    """R_i = number of the other rollouts the judge prefers rollout i to, i shown first."""
    pairs, where = [], []
    for k, (p, group) in enumerate(zip(prompts, completions, strict=True)):
        for i, first in enumerate(group):
            for j, second in enumerate(group):
                if i != j:
                    pairs.append(
                        PreferencePair(
                            id=f"{p.id}#{i}>{j}", prompt=p.messages, chosen=first, rejected=second, images=p.images
                        )
                    )
                    where.append((k, i))
    verdicts, kept, _ = scorer.score_pairs(pairs, "judge rollouts")
    if len(kept) != len(pairs):
        raise ConfigError(f"{len(pairs) - len(kept)} rollout pair(s) do not fit the judge: raise data_mix.max_length")
    out = [[0.0] * len(group) for group in completions]
    for (k, i), verdict in zip(where, verdicts, strict=True):
        out[k][i] += float(verdict_right(verdict))
    return out


def _needs_scorer(kind: str, scorer) -> None:
    if scorer is None:
        raise ConfigError(f"rl.reward={kind} needs rl.reward_model (a trained rmlab model: run dir or signature)")


def _transformed(score: float, transform: str) -> float:
    if transform not in ("raw", "sigmoid"):
        raise ConfigError(f"rl.reward_transform={transform}: choose raw or sigmoid")
    return score if transform == "raw" else _sigmoid(score)


@REWARDS.register("rule")
def rule(prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    return [[rule_reward(c, p.answer) for c in group] for p, group in zip(prompts, completions, strict=True)]


@REWARDS.register("model")
def model(prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    _needs_scorer("model", scorer)
    return [[_transformed(s, transform) for s in group] for group in model_scores(scorer, prompts, completions)]


@REWARDS.register("hybrid")
def hybrid(prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    _needs_scorer("hybrid", scorer)
    matched = rule(prompts, completions)
    unmatched = [[c for c, m in zip(group, hits, strict=True) if not m] for group, hits in zip(completions, matched, strict=True)]  # fmt: skip
    scores = [iter(s) for s in model_scores(scorer, prompts, unmatched)]
    return [[1.0 if m else _sigmoid(next(it)) for m in hits] for hits, it in zip(matched, scores, strict=True)]


@REWARDS.register("pairwise")
def pairwise(prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    _needs_scorer("pairwise", scorer)
    return pairwise_rewards(scorer, prompts, completions)


def compute_rewards(kind: str, prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    """Each completion's reward, in the shape of `completions` (a list of G per prompt)."""
    return REWARDS.get(kind)(prompts, completions, scorer, transform)
