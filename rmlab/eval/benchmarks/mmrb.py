"""Multimodal RewardBench (facebookresearch/multimodal_rewardbench, `data/all_data.json`), scored as the official
`scripts/2_get_accuracy.py` scores it.

Rows: ID, Text, Image (a path such as images/nocaps/13062.jpg), Output1, Output2, Better ("Output1"/"Output2"),
Category. Responses in benchmark order: [Output1, Output2]; the script never swaps them.
Categories as the script splits them: `safety` -> safety/bias when the ID starts with "pairs", else
safety/toxicity; `reasoning` -> reasoning/math when the ID starts with "math", else reasoning/coding.
- overall_micro: accuracy over every row (the script's `all`).
- overall_macro: the mean of the seven leaderboard columns (general correctness, general preference, knowledge,
  math, coding, safety, VQA), the Overall of the paper's competitor rows; safety pools bias and toxicity.
- an unparseable generative verdict gets a random label, `random.seed(123)` once and drawn only for unparseable rows
  in file order (official); option `unparseable=wrong` counts it wrong. Ties between scalar scores are wrong.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rmlab.data.records import content_with_images
from rmlab.eval.benchmarks.base import BenchItem, Benchmark, SynthExamples, load_items, pct, prefers, register

COLUMNS = {  # leaderboard column -> the script's categories
    "general_correctness": ("open_generation/correctness_task",),
    "general_preference": ("open_generation/preference_task",),
    "knowledge": ("knowledge",),
    "math": ("reasoning/math",),
    "coding": ("reasoning/coding",),
    "safety": ("safety/bias", "safety/toxicity"),
    "vqa": ("vqa",),
}
SCHEMA = "ID, Text, Image, Output1, Output2, Better, Category"


def split_category(category: str, item_id: str) -> str:
    if category == "safety":
        return "safety/bias" if item_id.lower().startswith("pairs") else "safety/toxicity"
    if category == "reasoning":
        return "reasoning/math" if item_id.lower().startswith("math") else "reasoning/coding"
    return category


def _item(row: dict, ctx) -> BenchItem:
    if row["Better"] not in ("Output1", "Output2"):
        raise ValueError(f"Better is {row['Better']!r}, expected Output1 or Output2")
    image = row.get("Image")
    return BenchItem(
        id=str(row["ID"]),
        prompt=[{"role": "user", "content": content_with_images(row["Text"], 1 if image else 0)}],
        responses=[row["Output1"], row["Output2"]],
        better=1 if row["Better"] == "Output2" else 0,
        images=[ctx.image(image)] if image else [],
        category=split_category(row["Category"], str(row["ID"])),
    )


def load(path: str, image_root: str | None = None) -> list[BenchItem]:
    return load_items(path, _item, SCHEMA, image_root)


def metrics(items: list[BenchItem], predictions: list[dict], unparseable: str = "random") -> dict:
    rng = random.Random(123)
    outcomes = []
    for item, prediction in zip(items, predictions, strict=True):
        verdict = prefers(prediction, item.better, 1 - item.better)
        if verdict is None:
            verdict = (rng.random() < 0.5) == (item.better == 0) if unparseable == "random" else False
        outcomes.append(verdict)
    by_category: dict[str, list[bool]] = {}
    for item, ok in zip(items, outcomes, strict=True):
        by_category.setdefault(item.category, []).append(ok)
    per = {}
    for column, categories in COLUMNS.items():
        pooled = [ok for c in categories for ok in by_category.get(c, [])]
        if pooled:
            per[column] = {"acc": pct(sum(pooled), len(pooled)), "n": len(pooled)}
    for sub in ("safety/bias", "safety/toxicity"):
        if by_category.get(sub):
            per[sub] = {"acc": pct(sum(by_category[sub]), len(by_category[sub])), "n": len(by_category[sub])}
    columns = [per[c]["acc"] for c in COLUMNS if c in per]
    return {
        "overall_micro": pct(sum(outcomes), len(outcomes)),
        "overall_macro": sum(columns) / len(columns) if columns else float("nan"),
        "per_category": per,
        "n": len(items),
        "unparseable": sum(prefers(p, 0, 1) is None for p in predictions),
    }


def synth(out_dir: Path, rng: random.Random, examples: SynthExamples, n: int = 56) -> None:
    """all_data.json rows with ID prefixes and categories as the release has them; images under images/<source>/."""

    kinds = [  # (ID prefix, Category)
        ("nocaps", "open_generation/correctness_task"),
        ("visitbench", "open_generation/preference_task"),
        ("mmmu-s", "knowledge"),
        ("mathvista", "reasoning"),
        ("EMMA-Coding", "reasoning"),
        ("pairs", "safety"),
        ("MMBench", "vqa"),
    ]
    rows = []
    for i in range(n):
        prefix, category = kinds[i % len(kinds)]
        ex = examples.mm(rng, examples.mm_tasks[i % len(examples.mm_tasks)])
        image = f"images/{prefix}/{i:05d}.png"
        (out_dir / "images" / prefix).mkdir(parents=True, exist_ok=True)
        (out_dir / image).write_bytes(ex["png"])
        first = rng.random() < 0.5
        rows.append(
            {
                "ID": f"{prefix}_{i}",
                "Text": ex["question"],
                "Image": image,
                "Output1": ex["right"] if first else ex["wrong"],
                "Output2": ex["wrong"] if first else ex["right"],
                "Better": "Output1" if first else "Output2",
                "Category": category,
            }
        )
    (out_dir / "all_data.json").write_text(json.dumps(rows, indent=1))


register(
    Benchmark(
        name="mmrb",
        load=load,
        metrics=metrics,
        synth=synth,
        file_name="all_data.json",
        options={"unparseable": ("random", "wrong")},
        headline=("overall_micro", "overall_macro"),
        convention="overall_micro: accuracy over all rows (the script's `all`); overall_macro: mean of the 7 "
        "leaderboard columns; safety split by ID prefix pairs, reasoning by math; unparseable: random (seed 123)",
    )
)
