"""What a model scores on a preference test set from the two answers alone, without reading the prompt: the
baselines a learning test must pass clear of. A reward model that only learned "prefer the larger number" (or that
never looked at the image) would otherwise pass a threshold set above chance alone.

Each shortcut prefers one answer of a pair; a tie (no number, same length, same training rate) counts half.
"""

from __future__ import annotations

import collections
import math
import re

from rmlab.data.records import PreferencePair

_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*")


def _number(text: str) -> float | None:
    found = _NUMBER.fullmatch(text)
    return float(found.group(1)) if found else None


def _prefer(a, b) -> float:
    """1 when the chosen answer's value `a` is the larger, 0 when smaller, 1/2 on a tie or when either is None."""
    if a is None or b is None or a == b:
        return 0.5
    return float(a > b)


def shortcut_accuracies(train: list[PreferencePair], test: list[PreferencePair]) -> dict[str, float]:
    """Held-out pair accuracy (percent) of each shortcut; `answer_prior` learns each answer's rate of being the
    chosen one from the training pairs (add-one smoothed), the best an answer-only model could learn."""
    chosen = collections.Counter(p.chosen.strip() for p in train)
    rejected = collections.Counter(p.rejected.strip() for p in train)

    def prior(answer: str) -> float:
        answer = answer.strip()
        return (chosen[answer] + 1) / (rejected[answer] + 1)

    rules = {
        "larger_number": lambda p: _prefer(_number(p.chosen), _number(p.rejected)),
        "smaller_number": lambda p: _prefer(
            *(None if x is None else -x for x in (_number(p.chosen), _number(p.rejected)))
        ),
        "longer_answer": lambda p: _prefer(len(p.chosen), len(p.rejected)),
        "shorter_answer": lambda p: _prefer(len(p.rejected), len(p.chosen)),
        "answer_prior": lambda p: _prefer(prior(p.chosen), prior(p.rejected)),
    }
    return {name: 100.0 * sum(rule(p) for p in test) / len(test) for name, rule in rules.items()}


def threshold_clear_of_shortcuts(train: list[PreferencePair], test: list[PreferencePair], margin: float = 4.0):
    """(best shortcut's name, its accuracy, the lowest passing accuracy): `margin` standard errors of a pair
    accuracy on this many pairs above both chance (50) and the best shortcut. A judge read in both orders has a
    "first response" shortcut of exactly 50 by construction, so chance covers it."""
    scores = shortcut_accuracies(train, test)
    best = max(scores, key=scores.get)
    standard_error = 100.0 * math.sqrt(0.25 / len(test))
    return best, scores[best], max(50.0, scores[best]) + margin * standard_error


# The synthetic held-out sets the learning tests score, by test-source name: adapter and file per split (the
# multimodal mixes, synth_shapes and synth_critic, hold the same pairs in two schemas).
TESTBED_SETS = {
    "synth_text": ("ultrafeedback", "ultrafeedback/{}.jsonl"),
    "synth_shapes": ("rlaif_v", "rlaif_v/{}.parquet"),
}


def threshold_for(synth_dir, name: str) -> tuple[str, float, float]:
    """threshold_clear_of_shortcuts for one of the testbed's held-out sets, trained on its train split."""
    from rmlab.data.adapters import load_pairs

    adapter, files = TESTBED_SETS[name]
    train, test = (load_pairs(adapter, str(synth_dir / files.format(split))) for split in ("train", "test"))
    return threshold_clear_of_shortcuts(train, test)
