"""Scoring a reward model on a benchmark, and computing a benchmark's metrics from a predictions file.

A scalar model scores every response of a row against the row's prompt; responses go through the model two at a
time (a pair of the pair machinery; an odd last one is paired with itself), batched by length like any pair. A
generative judge reads a two-response row as one pair and its verdict is the row's `choice` (GRM also gives scores).
Metrics always carry the options used, the benchmark's conventions, and a bootstrap interval for each headline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rmlab.data.records import PreferencePair
from rmlab.errors import ConfigError, DataError
from rmlab.eval.benchmarks.base import BenchItem, check_options, get_benchmark, read_predictions, write_predictions
from rmlab.eval.bootstrap import bootstrap_intervals, paired_bootstrap
from rmlab.util.atomic import atomic_write_json


def as_pairs(item: BenchItem) -> list[PreferencePair]:
    """The item's responses two by two, as pairs sharing its prompt and images."""
    out = []
    for k in range(0, len(item.responses), 2):
        first = item.responses[k]
        second = item.responses[k + 1] if k + 1 < len(item.responses) else first
        out.append(
            PreferencePair(
                id=f"{item.id}#{k}",
                prompt=item.prompt,
                chosen=first,
                rejected=second,
                images=item.images,
                videos=item.videos,
                category=item.category,
            )
        )
    return out


def score_items(scorer, items: list[BenchItem]) -> list[dict]:
    """A prediction per item, in the benchmark's order: `scores` per response from a scalar model, or a two-response
    item's `choice` from a judge that only chooses. A row the encoder cannot fit is an error: a benchmark number over
    part of the benchmark would not be the benchmark's number."""
    widest = max(len(item.responses) for item in items)
    if widest > 2 and not scorer.scalar:
        raise DataError(
            f"this benchmark has up to {widest} responses per row, which need a score per response; paradigm "
            f"{scorer.name} judges two responses at a time: score it with a scalar reward model"
        )
    pairs, owners = [], []
    for i, item in enumerate(items):
        for pair in as_pairs(item):
            pairs.append(pair)
            owners.append(i)
    verdicts, kept, skipped = scorer.score_pairs(pairs, "encode benchmark")
    if len(kept) != len(pairs):
        raise DataError(f"{len(pairs) - len(kept)} benchmark row(s) do not fit: raise data_mix.max_length")
    predictions: list[dict] = [{} for _ in items]
    for owner, verdict in zip(owners, verdicts, strict=True):
        prediction = predictions[owner]
        if "scores" in verdict:
            prediction.setdefault("scores", []).extend(verdict["scores"])
        else:
            prediction["choice"] = verdict["choice"]
    for prediction, item in zip(predictions, items, strict=True):
        if "scores" in prediction:
            prediction["scores"] = prediction["scores"][: len(item.responses)]
    return predictions


def compute_metrics(
    name: str,
    items: list[BenchItem],
    predictions: list[dict],
    options: dict | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The benchmark's metrics (official conventions unless options say otherwise), with bootstrap intervals."""
    bench = get_benchmark(name)
    chosen = check_options(bench, dict(options or {}))

    def metric_fn(its, preds):
        return bench.metrics(its, preds, **chosen)

    result = metric_fn(items, predictions)
    if n_boot > 0:
        result["ci95"] = bootstrap_intervals(metric_fn, items, predictions, bench.headline, n_boot=n_boot, seed=seed)
    result.update({"benchmark": name, "options": chosen, "convention": bench.convention, "n_boot": n_boot})
    return _clean(result)


def compare(name: str, items, predictions_a, predictions_b, options=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of A against B on every headline metric of the benchmark."""
    bench = get_benchmark(name)
    chosen = check_options(bench, dict(options or {}))

    def metric_fn(its, preds):
        return bench.metrics(its, preds, **chosen)

    comparisons = paired_bootstrap(metric_fn, items, predictions_a, predictions_b, bench.headline, n_boot, seed)
    return _clean({"benchmark": name, "options": chosen, "comparisons": comparisons})


def evaluate_benchmark(
    scorer, name: str, path: str, image_root: str | None, out_dir: Path, options=None, n_boot: int = 1000
) -> dict:
    """Load, score, write `predictions.jsonl` and `metrics.json` under out_dir; return the metrics. (In a job's
    processes other than rank 0: score their share and return nothing; rank 0 writes.)"""
    items = get_benchmark(name).load(path, image_root=image_root)
    scored = score_items(scorer, items)
    if not scorer.writes:
        return {}
    write_predictions(out_dir / "predictions.jsonl", items, scored)
    predictions = read_predictions(out_dir / "predictions.jsonl", items)
    metrics = compute_metrics(name, items, predictions, options, n_boot=n_boot)
    metrics["data"] = str(path)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def metrics_from_files(name: str, data: str, predictions: str, image_root=None, options=None, n_boot=1000) -> dict:
    items = get_benchmark(name).load(data, image_root=image_root)
    return compute_metrics(name, items, read_predictions(predictions, items), options, n_boot=n_boot)


def _clean(obj):
    """NaN (an empty category) as null, so the JSON is valid everywhere."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)


def configured_benchmarks(cfg) -> list[tuple[str, object]]:
    """(name, location) of every benchmark in `eval.benchmarks`, from where `benchmarks.<name>` says it is."""
    out = []
    for name in cfg.eval.benchmarks:
        get_benchmark(name)
        location = (cfg.get("benchmarks") or {}).get(name)
        if location is None or not location.get("path"):
            raise ConfigError(f"benchmark {name} has no file: set benchmarks.{name}.path (or benchmarks=synth)")
        out.append((name, location))
    return out


def configured_items(cfg) -> dict[str, list[BenchItem]]:
    """The rows of every configured benchmark."""
    return {
        name: get_benchmark(name).load(str(location.path), image_root=location.get("image_root"))
        for name, location in configured_benchmarks(cfg)
    }


def evaluate_configured(cfg, scorer, out_dir_for) -> dict[str, dict]:
    """Every benchmark in `eval.benchmarks` scored, written under `out_dir_for(name)`."""
    results = {}
    for name, location in configured_benchmarks(cfg):
        results[name] = evaluate_benchmark(
            scorer,
            name,
            str(location.path),
            location.get("image_root"),
            out_dir_for(name),
            dict(location.get("options") or {}),
            n_boot=cfg.eval.bootstrap,
        )
    return results
