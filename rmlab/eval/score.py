"""Scoring preference pairs with a trained reward model; per-set predictions.jsonl and metrics.json.

Pairs are batched in order of length (less padding), scored without gradients, and written back in file order.
Accuracy is strict (`chosen > rejected`; a tie counts as wrong), as TRL, OpenRLHF and the MM-RLHF script count it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from rmlab.data.encode import collate_pairs
from rmlab.util.atomic import atomic_write_json, atomic_write_text

CONVENTION = "accuracy = % of pairs with reward_chosen > reward_rejected (strict: ties count as wrong)"


@torch.no_grad()
def score_pairs(model, encoded, batch_size: int, pad_id: int, rewards_fn, progress: bool = False):
    """[(reward_chosen, reward_rejected)] in the order of `encoded`."""
    from rmlab.util.progress import progress as bar

    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    scores: list[tuple[float, float] | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    starts = range(0, len(order), batch_size)
    for start in bar(starts, desc="score", enabled=progress):
        idx = order[start : start + batch_size]
        chosen, rejected = rewards_fn(model, collate_pairs([encoded[i] for i in idx], pad_id))
        for i, c, r in zip(idx, chosen.tolist(), rejected.tolist(), strict=True):
            scores[i] = (c, r)
    model.train(was_training)
    return scores


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


def score_set(model, encoder, pairs, batch_size, pad_id, rewards_fn, out_dir: Path, progress=False) -> dict:
    """Encode, score and write one evaluation set; return its metrics."""
    from rmlab.data.encode import encode_all

    encoded, pairs, skipped = encode_all(encoder, pairs, f"encode {out_dir.name}", progress=False)
    scores = score_pairs(model, encoded, batch_size, pad_id, rewards_fn, progress=progress)
    metrics = metrics_for(pairs, scores, skipped)
    write_predictions(out_dir, pairs, scores, metrics)
    return metrics


def evaluate_sets(
    sources, model, encoder, pad_id: int, rewards_fn, out_dir_for, batch_size: int, progress: bool = False
) -> dict[str, dict]:
    """Score each held-out source; `out_dir_for(name)` says where its predictions and metrics go."""
    from rmlab.data.mix import load_sources

    results = {}
    for src in sources:
        pairs = load_sources([src])
        results[src.name] = score_set(
            model, encoder, pairs, batch_size, pad_id, rewards_fn, out_dir_for(src.name), progress=progress
        )
    return results
