"""What a reward paradigm is: how it builds its model, encodes and batches pairs, computes its loss, and scores.

Every paradigm has the same shape (`Paradigm`) so that the trainer, the data layer and evaluation never ask which one
runs; each registers itself in PARADIGMS under the name `paradigm.name` takes.
"""

from __future__ import annotations

from typing import Protocol

from rmlab.util.registry import Registry


class Paradigm(Protocol):
    name: str
    scalar: bool  # one score per response, comparable across responses (benchmarks with more than two need it)
    metric: str  # what its verdicts measure: `pair_accuracy` (a reward model), `exact_match` (a policy's answers)

    def build(self, cfg):
        """(model, processor): a model with `save`, `trainable_state`, `load_trainable_state`."""

    def encoder(self, processor, cfg):
        """`.encode(pair) -> item` (items have `id`, `source`, `length`; an item too long for `data_mix.max_length`
        raises `OverlongPair`) and a `key` naming what the encoding depends on (for the cache)."""

    def collate(self, items: list, pad_id: int, cfg) -> dict:
        """A batch of encoded items as model inputs."""

    def loss(self, model, batch: dict, cfg):
        """(loss, metrics) of a collated batch."""

    def score(self, model, items: list, encoder, cfg) -> list[dict]:
        """Per pair `{"scores": [chosen, rejected]}` (a scalar per response) and/or `{"choice": 0 | 1 | None}` (which
        response a generative judge prefers, or whether a policy's answer matches the chosen one; None when it could
        not be read)."""


PARADIGMS: Registry[type[Paradigm]] = Registry("paradigm", Paradigm)


def verdict_right(verdict: dict) -> bool:
    """Did the verdict prefer the chosen response? Scores strictly (a tie is wrong); a choice must name it."""
    if "scores" in verdict:
        chosen, rejected = verdict["scores"]
        return chosen > rejected
    return verdict.get("choice") == 0
