"""Scoring preference pairs with a trained reward model; per-set predictions.jsonl and metrics.json.

Pairs are batched in order of length (less padding), scored without gradients, and written back in file order.
Accuracy is strict (`chosen > rejected`; a tie counts as wrong), as TRL, OpenRLHF and the MM-RLHF script count it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rmlab.util.atomic import atomic_write_json, atomic_write_text

CONVENTION = "accuracy = % of pairs with reward_chosen > reward_rejected (strict: ties count as wrong)"


def pair_accuracy(scores) -> float:
    """Fraction of pairs where chosen scores strictly higher."""
    return sum(c > r for c, r in scores) / max(1, len(scores))


def metrics_for(pairs, scores, skipped: dict[str, int]) -> dict:
    """Accuracy (percent), overall and per category, with counts and the convention used."""
    by_category = defaultdict(list)
    for p, s in zip(pairs, scores, strict=True):
        by_category[p.category or "all"].append(s)
    return {
        "accuracy": 100.0 * pair_accuracy(scores),
        "n": len(scores),
        "ties": sum(c == r for c, r in scores),
        "skipped": skipped,
        "per_category": {
            k: {"accuracy": 100.0 * pair_accuracy(v), "n": len(v)} for k, v in sorted(by_category.items())
        },
        "convention": CONVENTION,
    }


def write_predictions(out_dir: Path, pairs, scores, metrics: dict) -> None:
    lines = [
        json.dumps({"id": p.id, "category": p.category, "reward_chosen": c, "reward_rejected": r})
        for p, (c, r) in zip(pairs, scores, strict=True)
    ]
    atomic_write_text(out_dir / "predictions.jsonl", "".join(line + "\n" for line in lines))
    atomic_write_json(out_dir / "metrics.json", metrics)


@dataclass
class Scorer:
    """A trained model ready to score pairs: its encoder, how batches are laid out and scored."""

    model: torch.nn.Module
    encoder: object  # rmlab.data.encode.PairEncoder
    pad_id: int
    rewards_fn: Callable  # (model, batch) -> (chosen rewards, rejected rewards)
    collate: Callable  # (encoded pairs, pad_id) -> batch
    batch_size: int = 32
    progress: bool = False

    @torch.no_grad()
    def score(self, encoded) -> list[tuple[float, float]]:
        """[(reward_chosen, reward_rejected)] in the order of `encoded`."""
        from rmlab.util.progress import progress as bar

        order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
        scores: list = [None] * len(encoded)
        was_training = self.model.training
        self.model.eval()
        for start in bar(range(0, len(order), self.batch_size), desc="score", enabled=self.progress):
            idx = order[start : start + self.batch_size]
            chosen, rejected = self.rewards_fn(self.model, self.collate([encoded[i] for i in idx], self.pad_id))
            for i, c, r in zip(idx, chosen.tolist(), rejected.tolist(), strict=True):
                scores[i] = (c, r)
        self.model.train(was_training)
        return scores

    def score_set(self, pairs, out_dir: Path) -> dict:
        """Encode, score and write one evaluation set; return its metrics."""
        from rmlab.data.encode import encode_all

        encoded, pairs, skipped = encode_all(self.encoder, pairs, f"encode {out_dir.name}", progress=False)
        scores = self.score(encoded)
        metrics = metrics_for(pairs, scores, skipped)
        write_predictions(out_dir, pairs, scores, metrics)
        return metrics

    def evaluate(self, sources, out_dir_for: Callable[[str], Path]) -> dict[str, dict]:
        """Score each held-out source; `out_dir_for(name)` says where its predictions and metrics go."""
        from rmlab.data.mix import load_sources

        return {src.name: self.score_set(load_sources([src]), out_dir_for(src.name)) for src in sources}
