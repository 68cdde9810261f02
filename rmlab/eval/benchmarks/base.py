"""What every benchmark shares: the item type, the registry, prediction files, and the verdict rules.

A benchmark module registers a `Benchmark`: how to load its released file into `BenchItem`s, how to compute its
metrics from (items, predictions) as its official script does (a pure function, options for the conventions that
differ between scripts), and how to write a synthetic file in its schema. Predictions are one row per benchmark row,
in file order, carrying the row's id and either `scores` (one per response, in the benchmark's order) or `choice`
(a generative judge's preferred index, or null when its verdict could not be parsed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmlab.data.adapters.base import AdapterSpec, RowContext
from rmlab.data.adapters.base import read_rows as data_rows
from rmlab.data.readers import MalformedRow
from rmlab.errors import DataError
from rmlab.util.atomic import atomic_write_text
from rmlab.util.registry import Registry


@dataclass
class BenchItem:
    """One benchmark row: a prompt and its candidate responses, in the order the benchmark gives them."""

    id: str
    prompt: list[dict]
    responses: list[str]
    better: int | None = None  # index of the preferred response (None where the benchmark defines it otherwise)
    images: list[Any] = field(default_factory=list)
    videos: list[list[Any]] = field(default_factory=list)
    category: str = ""
    group: str = ""  # the prompt this row belongs to (rows sharing one are resampled together)
    meta: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    name: str
    load: Callable[..., list[BenchItem]]  # (path, image_root=None) -> items in file order
    metrics: Callable[..., dict]  # (items, predictions, **options) -> metrics (percentages)
    synth: Callable[..., None]  # (out_dir, rng, SynthExamples) -> writes a file in the official schema
    file_name: str  # what `synth` writes under its folder
    options: dict[str, tuple]  # option -> allowed values (official first)
    headline: tuple[str, ...]  # the metrics a bootstrap interval is reported for
    convention: str  # one line stating the official conventions


@dataclass
class SynthExamples:
    """What a benchmark's synthetic-file writer draws from (the testbed, rmlab.testbed, supplies it): examples no
    training or test split holds, by task."""

    mm: Callable  # (rng, task) -> a multimodal example (png, question, right, wrong, others, evidence, task)
    text: Callable  # (rng, task) -> a text example
    mm_tasks: tuple[str, ...]
    text_tasks: tuple[str, ...]


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", error=DataError)


def register(benchmark: Benchmark) -> Benchmark:
    return BENCHMARKS.add(benchmark.name, benchmark)


def get_benchmark(name: str) -> Benchmark:
    return BENCHMARKS.get(name)


def check_options(benchmark: Benchmark, options: dict) -> dict:
    """The official conventions, with the given options replacing them (each checked against its choices)."""
    chosen = {k: v[0] for k, v in benchmark.options.items()}
    for key, value in options.items():
        if key not in benchmark.options:
            known = ", ".join(benchmark.options) or "none"
            raise DataError(f"{benchmark.name} has no option {key!r}; its options: {known}")
        if value not in benchmark.options[key]:
            raise DataError(f"{benchmark.name} option {key}={value!r}: choose one of {list(benchmark.options[key])}")
        chosen[key] = value
    return chosen


# ------------------------------------------------------------------------------------------------ predictions


def read_predictions(path: str | Path, items: list[BenchItem]) -> list[dict]:
    """Prediction rows, checked against the items: same count, same ids in the same order, a score per response."""
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {line_no}: malformed JSON ({e.msg})") from None
    if len(rows) != len(items):
        raise DataError(f"{path}: {len(rows)} predictions for {len(items)} benchmark rows")
    for i, (row, item) in enumerate(zip(rows, items, strict=True), 1):
        if str(row.get("id")) != item.id:
            raise DataError(f"{path}: line {i}: id {row.get('id')!r} where the benchmark has {item.id!r}")
        if "scores" in row:
            if len(row["scores"]) != len(item.responses):
                raise DataError(f"{path}: line {i}: {len(row['scores'])} scores for {len(item.responses)} responses")
        elif "choice" not in row:
            raise DataError(f"{path}: line {i}: neither `scores` nor `choice`")
    return rows


def write_predictions(path: str | Path, items: list[BenchItem], predictions: list[dict]) -> None:
    """One row per item: its id and its prediction (`scores` or `choice`)."""
    lines = [json.dumps({"id": item.id, **p}) for item, p in zip(items, predictions, strict=True)]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------------------ verdicts


def prefers(prediction: dict, i: int, j: int) -> bool | None:
    """Does the prediction put response i strictly above response j? None for an unparseable generative verdict.

    Scalar scores: strictly greater (a tie is not a preference, as every official script counts it). A generative
    `choice` (over a two-response item) prefers the response it names.
    """
    if "scores" in prediction:
        return prediction["scores"][i] > prediction["scores"][j]
    choice = prediction.get("choice")
    if choice is None:
        return None
    return int(choice) == i


def pct(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else float("nan")


def groups_of(items: list[BenchItem]) -> list[list[int]]:
    """Item indices grouped by prompt (`group`, else the id), in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        order.setdefault(item.group or item.id, []).append(i)
    return list(order.values())


# ------------------------------------------------------------------------------------------------ reading files


def load_items(
    path: str, to_item, schema: str, image_root: str | None = None, hub_id: str | None = None, **hub_kwargs
) -> list[BenchItem]:
    """Every row of a benchmark file (jsonl, json, parquet, a folder of parquet shards, a hub id, or `hub` for the
    benchmark's own dataset) through `to_item(row, ctx)`, with the data layer's readers and image resolution; a row
    outside the schema is an error naming the file and the row (a benchmark is never scored on part of itself)."""
    spec = AdapterSpec(name="benchmark", fn=None, hub_id=hub_id, modality="", schema=schema, hub_kwargs=hub_kwargs)
    items = []
    for index, row in data_rows(path, spec):
        if isinstance(row, MalformedRow):
            raise DataError(row.detail)
        ctx = RowContext(path, index, image_root)
        try:
            items.append(to_item(row, ctx))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise DataError(
                f"{ctx.where}: does not match the benchmark schema ({schema}): {type(e).__name__}: {e}"
            ) from None
    if not items:
        raise DataError(f"{path}: no rows")
    return items
