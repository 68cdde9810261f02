"""Scoring preference pairs with a trained model; per-set predictions.jsonl and metrics.json.

Pairs are batched in order of length (less padding), scored without gradients, and written back in file order.
A reward model's metric is `pair_accuracy`, strict (`chosen > rejected`; a tie counts as wrong), as TRL, OpenRLHF
and the MM-RLHF script count it. A policy (paradigm=sft) answers the prompt instead: its metric is `exact_match`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rmlab.data.encode import encode_all
from rmlab.data.mix import load_sources
from rmlab.errors import ConfigError
from rmlab.models.backbone import DTYPES
from rmlab.models.reward_model import load_reward_model
from rmlab.paradigms import get_paradigm
from rmlab.paradigms.base import verdict_right
from rmlab.runtime.distributed import SINGLE, Dist
from rmlab.util.atomic import atomic_write_json, atomic_write_text
from rmlab.util.progress import progress as progress_bar

CONVENTIONS = {
    "pair_accuracy": "% of pairs with reward_chosen > reward_rejected (strict: ties count as wrong); a generative "
    "judge's verdict counts when it names the chosen response (an unreadable verdict is wrong)",
    "exact_match": "% of prompts whose greedy answer equals the chosen response after normalization (an <answer> "
    "tag's content, case, surrounding punctuation)",
}


def pair_accuracy(verdicts) -> float:
    """Fraction of pairs whose verdict prefers the chosen response."""
    return sum(verdict_right(v) for v in verdicts) / max(1, len(verdicts))


def by_position(verdicts) -> dict[str, float]:
    """A judge's accuracy with the chosen response shown first and shown second (percent; from the verdicts'
    per-order probabilities of the chosen label), for position bias."""
    out = {}
    for at, name in ((0, "chosen_first"), (1, "chosen_second")):
        read = [v["by_position"][at] for v in verdicts if at in v.get("by_position", {})]
        if read:
            out[name] = 100.0 * sum(p > 0.5 for p in read) / len(read)
    return out


def metrics_for(pairs, verdicts, skipped: dict[str, int], metric: str = "pair_accuracy") -> dict:
    """The metric (percent: `pair_accuracy` or `exact_match`, whichever the scorer's verdicts measure), overall and
    per category, with counts and the convention used."""
    by_category = defaultdict(list)
    for p, v in zip(pairs, verdicts, strict=True):
        by_category[p.category or "all"].append(v)
    position = by_position(verdicts)
    return {
        **({f"{metric}_by_position": position} if position else {}),
        metric: 100.0 * pair_accuracy(verdicts),
        "n": len(verdicts),
        "ties": sum("scores" in v and v["scores"][0] == v["scores"][1] for v in verdicts),
        "unreadable": sum("choice" in v and v["choice"] is None for v in verdicts),
        "skipped": skipped,
        "per_category": {k: {metric: 100.0 * pair_accuracy(v), "n": len(v)} for k, v in sorted(by_category.items())},
        "convention": CONVENTIONS[metric],
    }


def _prediction(pair, verdict: dict) -> dict:
    row = {"id": pair.id, "category": pair.category}
    if "scores" in verdict:
        row["reward_chosen"], row["reward_rejected"] = verdict["scores"]
    if "choice" in verdict:
        row["choice"] = verdict["choice"]
    return {**row, **{k: v for k, v in verdict.items() if k not in ("scores", "choice")}}


def write_predictions(out_dir: Path, pairs, verdicts, metrics: dict) -> None:
    lines = [json.dumps(_prediction(p, v)) for p, v in zip(pairs, verdicts, strict=True)]
    atomic_write_text(out_dir / "predictions.jsonl", "".join(line + "\n" for line in lines))
    atomic_write_json(out_dir / "metrics.json", metrics)


class PairScoring:
    """What scores pairs for evaluation, one model or an ensemble: `score_pairs`, `scalar` (one comparable score per
    response), `name` and `metric` (what its verdicts measure); scoring whole sets and held-out sources is built on
    those."""

    name = ""
    scalar = True
    metric = "pair_accuracy"
    writes = True  # False in the processes of a job other than rank 0: they score their share, rank 0 writes

    def score_pairs(self, pairs, desc: str = "encode") -> tuple[list[dict], list, dict[str, int]]:
        raise NotImplementedError

    def score_set(self, pairs, out_dir: Path) -> dict:
        """Score and write one evaluation set; return its metrics."""
        verdicts, pairs, skipped = self.score_pairs(pairs, f"encode {out_dir.name}")
        metrics = metrics_for(pairs, verdicts, skipped, self.metric)
        if self.writes:
            write_predictions(out_dir, pairs, verdicts, metrics)
        return metrics

    def evaluate(self, sources, out_dir_for: Callable[[str], Path]) -> dict[str, dict]:
        """Score each held-out source; `out_dir_for(name)` says where its predictions and metrics go."""
        return {src.name: self.score_set(load_sources([src]), out_dir_for(src.name)) for src in sources}


@dataclass
class Scorer(PairScoring):
    """A trained model ready to score pairs: its paradigm's encoder, batching and way of judging them."""

    model: torch.nn.Module
    encoder: object  # the paradigm's encoder (rmlab.paradigms.base)
    paradigm: object
    cfg: object
    batch_size: int = 32
    progress: bool = False
    dist: Dist = SINGLE  # a job's processes split the items between them; every one gets every verdict

    @property
    def name(self) -> str:
        return self.paradigm.name

    @property
    def writes(self) -> bool:
        return self.dist.is_main

    @property
    def scalar(self) -> bool:
        return self.paradigm.scalar

    @property
    def metric(self) -> str:
        return self.paradigm.metric

    @torch.no_grad()
    def score(self, items) -> list[dict]:
        """A verdict per encoded pair (`{"scores": [chosen, rejected]}` and/or `{"choice": ...}`), in item order.

        Items are batched in order of length. In a job of several processes the batches are dealt out in turn, each
        process scores its own (the same batches as one process would: the same numbers), the short-handed ones
        repeat a batch so that a sharded model runs the same forwards everywhere, and the verdicts are gathered."""
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        dist = self.dist
        mine = batches[dist.rank :: dist.world_size]
        rounds = -(-len(batches) // dist.world_size) if batches else 0
        was_training = self.model.training
        self.model.eval()
        scored = []
        for k in progress_bar(range(rounds), desc="score", enabled=self.progress):
            idx = mine[k] if k < len(mine) else batches[0]  # a repeat: its verdicts are dropped
            verdicts = self.paradigm.score(self.model, [items[i] for i in idx], self.encoder, self.cfg)
            if k < len(mine):
                scored += zip(idx, verdicts, strict=True)
        self.model.train(was_training)
        out: list = [None] * len(items)
        for i, verdict in dist.gather(scored):
            out[i] = verdict
        return out

    def score_pairs(self, pairs, desc: str = "encode") -> tuple[list[dict], list, dict[str, int]]:
        """(verdicts, the pairs they are for, skipped counts): pairs are encoded here, overlong ones left out."""
        encoded, kept, skipped = encode_all(self.encoder, pairs, desc, progress=False)
        return self.score(encoded), kept, skipped


def scorer_for(cfg, model, encoder, progress: bool = False, dist: Dist = SINGLE) -> Scorer:
    """Scores pairs the way this config trains them (its paradigm and options)."""
    return Scorer(model, encoder, get_paradigm(cfg.paradigm.name), cfg, cfg.eval.batch_size, progress, dist)


def model_dir_of(path: Path) -> tuple[Path, Path | None]:
    """(saved model directory, run directory or None) for what `eval.model` points at."""
    if (path / "rmlab_model.json").exists():
        run = path.parent if (path.parent / "status.json").exists() else None
        return path, run
    if (path / "model" / "rmlab_model.json").exists():
        return path / "model", path
    raise ConfigError(f"eval.model={path}: neither a run directory (with model/) nor a saved rmlab model")


def load_scorer(ref: str | Path, cfg, progress: bool = False, dist: Dist = SINGLE, device: torch.device | None = None):
    """(Scorer, run directory or None) for a run directory or saved model: the model on this process's GPU in the
    dtype its run computed in (bf16 at scale; on a CPU, float32), scoring as its run was trained (paradigm options,
    pair layout, max length); a model outside a run scores with `cfg`, whose paradigm must be the model's. In a job
    of several processes each holds the model and scores its share of every set (rank 0 writes). `device`: where
    the model goes instead of this process's device (a policy's reward model, asked by its own process alone)."""
    model_dir, run_dir = model_dir_of(Path(ref))
    score_cfg = OmegaConf.load(run_dir / "config.yaml") if run_dir else cfg
    device = device or dist.device
    on_gpu = device.type == "cuda"
    model, processor = load_reward_model(model_dir, DTYPES[str(score_cfg.backbone.dtype)] if on_gpu else torch.float32)
    if str(score_cfg.paradigm.name) != model.paradigm:
        raise ConfigError(f"{model_dir} is a {model.paradigm} model: score it with paradigm={model.paradigm}")
    model.to(device)
    encoder = get_paradigm(model.paradigm).encoder(processor, score_cfg)
    run_scorer = scorer_for(score_cfg, model, encoder, progress=progress, dist=dist)
    run_scorer.batch_size = cfg.eval.batch_size
    return run_scorer, run_dir
