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
import re
from dataclasses import dataclass, field

from rmlab.errors import ConfigError

KINDS = ("rule", "model", "hybrid", "pairwise")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_EDGE = re.compile(r"^[\s\"'`*.,;:!?()\[\]]+|[\s\"'`*.,;:!?()\[\]]+$")


@dataclass
class Prompt:
    """A verifiable question: chat messages (images referenced as in preference pairs) and its ground truth."""

    id: str
    messages: list[dict]
    answer: str
    images: list = field(default_factory=list)
    category: str = ""


def normalize_answer(text: str) -> str:
    """What a rule compares: the last `<answer>` tag's content if there is one, lowercased, inner spaces collapsed,
    quotes, brackets and punctuation around it stripped."""
    tagged = _ANSWER.findall(text)
    text = tagged[-1] if tagged else text
    return _EDGE.sub("", " ".join(text.lower().split()))


def rule_reward(completion: str, answer: str) -> float:
    return 1.0 if normalize_answer(completion) == normalize_answer(answer) else 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def model_scores(scorer, prompts: list[Prompt], completions: list[list[str]]) -> list[list[float]]:
    """A scalar reward model's score of every completion, against its prompt (the benchmark path: responses two by
    two through the pair machinery)."""
    from rmlab.eval.benchmarks.base import BenchItem
    from rmlab.eval.benchmarks.run import score_items

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
    from rmlab.data.records import PreferencePair
    from rmlab.paradigms.base import verdict_right

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


def compute_rewards(kind: str, prompts, completions, scorer=None, transform: str = "sigmoid") -> list[list[float]]:
    """Each completion's reward, in the shape of `completions` (a list of G per prompt)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown rl.reward {kind!r}; known: {', '.join(KINDS)}")
    if kind != "rule" and scorer is None:
        raise ConfigError(f"rl.reward={kind} needs rl.reward_model (a trained rmlab model: run dir or signature)")
    if kind == "rule":
        return [[rule_reward(c, p.answer) for c in group] for p, group in zip(prompts, completions, strict=True)]
    if kind == "pairwise":
        return pairwise_rewards(scorer, prompts, completions)
    if transform not in ("raw", "sigmoid"):
        raise ConfigError(f"rl.reward_transform={transform}: choose raw or sigmoid")
    if kind == "model":
        scores = model_scores(scorer, prompts, completions)
        return [[s if transform == "raw" else _sigmoid(s) for s in group] for group in scores]
    matched = [[rule_reward(c, p.answer) for c in group] for p, group in zip(prompts, completions, strict=True)]
    unmatched = [[c for c, m in zip(group, hits, strict=True) if not m] for group, hits in zip(completions, matched, strict=True)]  # fmt: skip
    scores = [iter(s) for s in model_scores(scorer, prompts, unmatched)]
    return [[1.0 if m else _sigmoid(next(it)) for m in hits] for hits, it in zip(matched, scores, strict=True)]
