"""Ensembles of trained reward models (`stage=ensemble`, the `ensemble` axis), scored like one model.

Members are run directories, saved model directories or run signatures (looked up under `paths.runs`). Each
member scores a validation set first: `ensemble.val_pairs` pairs drawn evenly across the `data_mix.val` sources
(held out from every member's training). There each member's scores get their mean and standard deviation (its
scores are z-scored with them before combining, unless `standardize` is off), and the weights are worked out:

- `average`: 1/M each
- `accuracy`: acc_m / sum(acc), acc_m the member's pair accuracy on the validation set
- `confidence`: margin_m / sum(margin), margin_m its mean chosen-minus-rejected score there (standardized units
  when standardizing; a member with a negative margin weighs 0)
- `route`: text-only pairs (no image, no video) go to `text_member` alone; the others to the members, combined
  by `combine` (one of the three above), each route fitted on its own part of the validation set

A combined score is sum_m w_m * z_m(score). A judge that only chooses (LongCoT-GRM) counts as scores (1, 0) for the
response it names ((0.5, 0.5) when it names none). A pair is scored when every member it is routed to can encode it.

The stage (`ensemble_stage`) fits the ensemble and scores it on the mix's test sources and `eval.benchmarks`, in its
own run directory (`ensemble.json`: each member's weight and standardization).
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rmlab.data.mix import load_sources, resolve_sources
from rmlab.data.validate import pair_key
from rmlab.errors import ConfigError
from rmlab.eval.benchmarks.run import as_pairs, configured_items, evaluate_configured
from rmlab.eval.score import PairScoring, load_scorer
from rmlab.runtime.lifecycle import StageRun
from rmlab.runtime.run_dir import resolve_run
from rmlab.tracking.logger import numeric_leaves
from rmlab.util.atomic import atomic_write_json
from rmlab.util.registry import Registry

# name -> (each member's (chosen, rejected) scores on the validation pairs) -> raw weights, one per member
WEIGHTINGS: Registry[Callable] = Registry("ensemble weighting")


def member_scores(verdict: dict) -> tuple[float, float]:
    """(chosen, rejected) scores of a member's verdict; a bare choice as (1, 0), (0, 1) or (0.5, 0.5)."""
    if "scores" in verdict:
        chosen, rejected = verdict["scores"]
        return float(chosen), float(rejected)
    return {0: (1.0, 0.0), 1: (0.0, 1.0)}.get(verdict.get("choice"), (0.5, 0.5))


@dataclass
class Standardizer:
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, scores: list[tuple[float, float]]) -> Standardizer:
        """Mean and (population) standard deviation of every score, chosen and rejected alike; 1 when constant."""
        values = [v for pair in scores for v in pair]
        std = statistics.pstdev(values)
        return cls(statistics.fmean(values), std if std > 0 else 1.0)

    def __call__(self, value: float) -> float:
        return (value - self.mean) / self.std


@WEIGHTINGS.register("average")
def _average(scores: list[list[tuple[float, float]]]) -> list[float]:
    return [1.0] * len(scores)


@WEIGHTINGS.register("accuracy")
def _accuracy(scores: list[list[tuple[float, float]]]) -> list[float]:
    return [sum(c > r for c, r in member) / len(member) for member in scores]


@WEIGHTINGS.register("confidence")
def _confidence(scores: list[list[tuple[float, float]]]) -> list[float]:
    return [max(0.0, statistics.fmean(c - r for c, r in member)) for member in scores]


def weights(method: str, scores: list[list[tuple[float, float]]]) -> list[float]:
    """Each member's weight from its (standardized) scores of the validation pairs, summing to 1."""
    raw = WEIGHTINGS.get(method)(scores)
    total = sum(raw)
    if total <= 0:
        raise ConfigError(f"ensemble={method}: every member scores at or below chance on the validation pairs")
    return [w / total for w in raw]


def is_text_only(pair) -> bool:
    return not pair.images and not pair.videos


@dataclass
class Route:
    """Members that score one kind of pair, with their fitted weights and standardizers."""

    names: list[str]
    scorers: list
    weights: list[float]
    standardizers: list[Standardizer]

    @classmethod
    def fit(cls, names, scorers, method: str, standardize: bool, val_pairs: list, route: str) -> Route:
        if not val_pairs and (standardize or method != "average"):
            raise ConfigError(
                f"ensemble: no validation pair for the {route} members; set data_mix.val to held-out sources with"
                " such pairs (or ensemble=average with ensemble.standardize=false, which needs none)"
            )
        if not val_pairs:
            return cls(names, scorers, weights("average", [[]] * len(names)), [Standardizer()] * len(names))
        raw, common = _scores_on_common_pairs(scorers, val_pairs, f"ensemble validation ({route})")
        if not common:
            raise ConfigError(
                f"ensemble: none of the {len(val_pairs)} validation pairs for the {route} members is one every member"
                " can score (each was too long or unreadable for one of them): check data_mix.val and max_length"
            )
        stds = [Standardizer.fit(member) if standardize else Standardizer() for member in raw]
        z = [[(s(c), s(r)) for c, r in member] for s, member in zip(stds, raw, strict=True)]
        return cls(names, scorers, weights(method, z), stds)

    def score(self, pairs: list, desc: str) -> tuple[list[dict], list]:
        raw, kept = _scores_on_common_pairs(self.scorers, pairs, desc)
        verdicts = []
        for i in range(len(kept)):
            chosen = rejected = 0.0
            members = {}
            for name, w, s, member in zip(self.names, self.weights, self.standardizers, raw, strict=True):
                c, r = member[i]
                chosen += w * s(c)
                rejected += w * s(r)
                members[name] = [c, r]
            verdicts.append({"scores": [chosen, rejected], "members": members})
        return verdicts, kept

    def summary(self) -> dict:
        return {
            name: {"weight": w, "mean": s.mean, "std": s.std}
            for name, w, s in zip(self.names, self.weights, self.standardizers, strict=True)
        }


def _scores_on_common_pairs(scorers, pairs: list, desc: str) -> tuple[list[list[tuple[float, float]]], list]:
    """Every scorer's (chosen, rejected) on the pairs all of them could encode, in the pairs' order."""
    per_member = []
    for scorer in scorers:
        verdicts, kept, _ = scorer.score_pairs(pairs, desc)
        per_member.append({id(p): member_scores(v) for p, v in zip(kept, verdicts, strict=True)})
    common = [p for p in pairs if all(id(p) in m for m in per_member)]
    return [[m[id(p)] for p in common] for m in per_member], common


class EnsembleScorer(PairScoring):
    name = "ensemble"
    scalar = True

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes  # "all", or "text" and "other" when routing

    def score_pairs(self, pairs, desc: str = "encode") -> tuple[list[dict], list, dict[str, int]]:
        by_route: dict[str, list] = {}
        for p in pairs:
            by_route.setdefault(self.route_of(p), []).append(p)
        scored: dict[int, dict] = {}
        for route, part in by_route.items():
            verdicts, kept = self.routes[route].score(part, f"{desc} ({route})")
            for p, v in zip(kept, verdicts, strict=True):
                scored[id(p)] = {**v, "route": route}
        kept = [p for p in pairs if id(p) in scored]
        return [scored[id(p)] for p in kept], kept, {"overlong": len(pairs) - len(kept)}

    def route_of(self, pair) -> str:
        if "all" in self.routes:
            return "all"
        return "text" if is_text_only(pair) else "other"

    def summary(self) -> dict:
        return {route: r.summary() for route, r in self.routes.items()}


def validation_pairs(cfg) -> list:
    """`ensemble.val_pairs` pairs drawn evenly across the `data_mix.val` sources (seeded); a source with fewer
    than its share gives all it has and the others make up the rest."""
    sources = resolve_sources(cfg.data_mix.val, cfg.datasets)
    pools = [load_sources([src]) for src in sources]
    rng = random.Random(f"ensemble-val-{cfg.data_mix.seed}")
    for pool in pools:
        rng.shuffle(pool)
    wanted, taken = int(cfg.ensemble.val_pairs), [0] * len(pools)
    while sum(taken) < wanted and any(t < len(pool) for t, pool in zip(taken, pools, strict=True)):
        for i, pool in enumerate(pools):
            if taken[i] < len(pool) and sum(taken) < wanted:
                taken[i] += 1
    return [p for pool, n in zip(pools, taken, strict=True) for p in pool[:n]]


def member_name(path: Path) -> str:
    return path.parent.name if path.name == "model" else path.name


class CachedScores(PairScoring):
    """One member's verdicts on the pairs an ensemble will be asked about, scored while its model was loaded (so
    members need not be in memory together); it answers for those pairs only (found by content)."""

    def __init__(self, scorer, pairs: list, desc: str):
        self.name, self.scalar, self.metric = scorer.name, scorer.scalar, scorer.metric
        verdicts, kept, _ = scorer.score_pairs(pairs, desc)
        self.verdicts = {pair_key(p): v for p, v in zip(kept, verdicts, strict=True)}

    def score_pairs(self, pairs, desc: str = "") -> tuple[list[dict], list, dict[str, int]]:
        kept = [p for p in pairs if pair_key(p) in self.verdicts]
        return [self.verdicts[pair_key(p)] for p in kept], kept, {"overlong": len(pairs) - len(kept)}


def build_ensemble(cfg, progress: bool = False, pairs: list | None = None, device=None) -> EnsembleScorer:
    """The configured ensemble, fitted on the validation pairs.

    With `pairs` (every pair it will be asked about), each member is loaded alone, scores those pairs (and the
    validation pairs) and is freed before the next one loads: a route ensemble of two 7B models and an 8B text model
    fits on one GPU. Without (a policy's reward, asked about rollouts as they come), every member stays loaded."""
    e = cfg.ensemble
    method = str(e.method)
    if not e.members:
        raise ConfigError(
            f"ensemble={method} needs ensemble.members (run directories, model directories or signatures)"
        )
    if method == "route" and not e.text_member:
        raise ConfigError("ensemble=route needs ensemble.text_member: the reward model for text-only prompts")

    needs_val = bool(e.standardize) or method not in ("average", "route") or str(e.combine) != "average"
    val = validation_pairs(cfg) if needs_val else []

    def load(refs, text_only: bool | None):
        paths = [resolve_run(str(ref), cfg, "ensemble member") for ref in refs]
        _check_members_done(paths)
        if pairs is None:
            return [member_name(p) for p in paths], [load_scorer(p, cfg, progress, device=device)[0] for p in paths]
        mine = [p for p in [*val, *pairs] if text_only is None or is_text_only(p) == text_only]
        scorers = []
        for path in paths:
            scorer = load_scorer(path, cfg, progress, device=device)[0]
            scorers.append(CachedScores(scorer, mine, f"member {member_name(path)}"))
            del scorer
            _free_memory()
        return [member_name(p) for p in paths], scorers

    names, scorers = load(e.members, None if method != "route" else False)
    if method != "route":
        return EnsembleScorer({"all": Route.fit(names, scorers, method, e.standardize, val, "all")})
    combine = str(e.combine)
    WEIGHTINGS.get(combine)
    text_names, text_scorers = load([e.text_member], True)
    text_val = [p for p in val if is_text_only(p)]
    other_val = [p for p in val if not is_text_only(p)]
    return EnsembleScorer(
        {
            "text": Route.fit(text_names, text_scorers, "average", e.standardize, text_val, "text-only"),
            "other": Route.fit(names, scorers, combine, e.standardize, other_val, "multimodal"),
        }
    )


def _check_members_done(paths: list[Path]) -> None:
    for path in paths:
        status_file = path / "status.json"
        if status_file.exists():
            state = json.loads(status_file.read_text()).get("state")
            if state != "done":
                raise ConfigError(f"ensemble member {path} is {state}, not done: train it first (rmlab sweep --retry)")


def ensemble_stage(stage: StageRun) -> None:
    """The stage's body: the ensemble fitted on the validation pairs, then scored on the mix's test sources and
    `eval.benchmarks` (predictions with each member's own scores)."""
    cfg, run = stage.cfg, stage.run
    sources = resolve_sources(cfg.data_mix.test, cfg.datasets)
    pairs = [p for src in sources for p in load_sources([src])] + [
        p for items in configured_items(cfg).values() for item in items for p in as_pairs(item)
    ]  # everything the members will be asked about, scored member by member
    ensemble = build_ensemble(cfg, progress=cfg.run.progress, pairs=pairs)
    atomic_write_json(run.path / "ensemble.json", ensemble.summary())
    results = ensemble.evaluate(sources, run.eval_dir)
    results.update(evaluate_configured(cfg, ensemble, run.eval_dir))
    stage.log.summary(numeric_leaves(results, "eval/"))


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
