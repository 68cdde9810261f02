"""VL-RewardBench (vl-rewardbench/VL_RewardBench; hub MMInstruction/VL-RewardBench), scored as the official
`cal.py` scores it.

Rows: id, query, response [2], human_ranking ([0, 1]: the first is better; better = human_ranking.index(0)), and
image_path (`images/<source>/<file>`, the repository's data.jsonl) or image bytes (the hub release). Source: the
image folder, else the id prefix (RLAIF -> rlaif-v, RLHF -> rlhf-v, mathverse/mmmu -> reasoning_tasks, wildvision ->
wildvision-battle, hallucination -> povid, anything else -> vlfeedback; the official id rule has a typo that drops
povid, fixed here as third-party scripts fix it). Groups: vlfeedback, wildvision-battle -> general; povid, rlaif-v,
rlhf-v -> hallucination; reasoning_tasks -> reasoning.
- overall: micro accuracy over judged items; macro: mean of the three group accuracies.
- an unparseable generative verdict is excluded from numerator and denominator (official; option
  `unparseable=wrong` counts it wrong instead). Several samples per item (`choices`): majority vote, as cal.py:
  right if more than half right, wrong if more than half wrong, else unparseable.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rmlab.data.records import content_with_images
from rmlab.eval.benchmarks.base import BenchItem, Benchmark, SynthExamples, load_items, pct, prefers, register

GROUPS = {
    "vlfeedback": "general",
    "wildvision-battle": "general",
    "povid": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "reasoning_tasks": "reasoning",
}
CATEGORIES = ("general", "hallucination", "reasoning")
SCHEMA = "id, query, response[2], human_ranking[2], image_path | image"


def source_of(item_id: str, image_path: str | None) -> str:
    if image_path and len(Path(image_path).parts) > 1:
        return Path(image_path).parts[1]
    prefix = item_id.replace("-", "_").split("_")[0].lower()
    rules = {
        "rlaif": "rlaif-v",
        "rlhf": "rlhf-v",
        "mathverse": "reasoning_tasks",
        "mmmu": "reasoning_tasks",
        "wildvision": "wildvision-battle",
        "hallucination": "povid",
    }
    return rules.get(prefix, "vlfeedback")


def _item(row: dict, ctx) -> BenchItem:
    ranking = list(row["human_ranking"])
    if sorted(ranking) != [0, 1] or len(row["response"]) != 2:
        raise ValueError(f"human_ranking {ranking} / {len(row['response'])} responses: expected a ranking of two")
    source = source_of(str(row["id"]), row.get("image_path"))
    image = row.get("image") or row.get("image_path")
    return BenchItem(
        id=str(row["id"]),
        prompt=[{"role": "user", "content": content_with_images(row["query"], 1)}],
        responses=list(row["response"]),
        better=ranking.index(0),
        images=[ctx.image(image)] if image else [],
        category=GROUPS[source],
        meta={"source": source},
    )


def load(path: str, image_root: str | None = None) -> list[BenchItem]:
    return load_items(path, _item, SCHEMA, image_root, hub_id="MMInstruction/VL-RewardBench", split="test")


def _verdict(prediction: dict, item: BenchItem) -> bool | None:
    other = 1 - item.better
    if "choices" in prediction:  # k generative samples: cal.py's majority vote
        votes = [prefers({"choice": c}, item.better, other) for c in prediction["choices"]]
        agree, reject = votes.count(True), votes.count(False)
        if agree > len(votes) / 2:
            return True
        return False if reject > len(votes) / 2 else None
    return prefers(prediction, item.better, other)


def metrics(items: list[BenchItem], predictions: list[dict], unparseable: str = "excluded") -> dict:
    right = {c: 0 for c in CATEGORIES}
    judged = {c: 0 for c in CATEGORIES}
    skipped = 0
    for item, prediction in zip(items, predictions, strict=True):
        verdict = _verdict(prediction, item)
        if verdict is None:
            skipped += 1
            if unparseable == "excluded":
                continue
            verdict = False
        judged[item.category] += 1
        right[item.category] += verdict
    per = {c: {"acc": pct(right[c], judged[c]), "n": judged[c]} for c in CATEGORIES if judged[c]}
    return {
        "overall": pct(sum(right.values()), sum(judged.values())),
        "macro": sum(v["acc"] for v in per.values()) / len(per) if per else float("nan"),
        "per_category": per,
        "n": len(items),
        "unparseable": skipped,
    }


def synth(out_dir: Path, rng: random.Random, examples: SynthExamples, n: int = 60) -> None:
    """Rows in the repository's data.jsonl layout, images under images/<source>/, either response order."""

    sources = ["wildvision-battle", "povid", "rlaif-v", "rlhf-v", "reasoning_tasks", "vlfeedback"]
    prefixes = {
        "wildvision-battle": "wildvision_battle",
        "povid": "hallucination_pair",
        "rlaif-v": "RLAIF-V",
        "rlhf-v": "RLHF-V",
        "reasoning_tasks": "mathverse",
        "vlfeedback": "LRVInstruction",
    }
    rows = []
    for i in range(n):
        source = sources[i % len(sources)]
        ex = examples.mm(rng, examples.mm_tasks[i % len(examples.mm_tasks)])
        item_id = f"{prefixes[source]}-{i}"
        image_path = f"images/{source}/{item_id}.png"
        (out_dir / "images" / source).mkdir(parents=True, exist_ok=True)
        (out_dir / image_path).write_bytes(ex["png"])
        first_better = rng.random() < 0.5
        rows.append(
            {
                "id": item_id,
                "image_path": image_path,
                "query": ex["question"],
                "response": [ex["right"], ex["wrong"]] if first_better else [ex["wrong"], ex["right"]],
                "human_ranking": [0, 1] if first_better else [1, 0],
                "models": ["synth-a", "synth-b"],
                "judge": "human",
                "rationale": None,
                "query_source": source,
                "meta": {},
                "human_error_analysis": [],
            }
        )
    with open(out_dir / "data.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


register(
    Benchmark(
        name="vlrb",
        load=load,
        metrics=metrics,
        synth=synth,
        file_name="data.jsonl",
        options={"unparseable": ("excluded", "wrong")},
        headline=("overall", "macro"),
        convention="overall: micro accuracy over judged items; macro: mean of general, hallucination, reasoning; "
        "groups by image folder (else id prefix) as cal.py; unparseable verdicts excluded",
    )
)
