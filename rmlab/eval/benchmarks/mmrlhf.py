"""MM-RLHF-Reward Bench (yifanzhang114/MM-RLHF-RewardBench, `mm_reward_bench.jsonl`), scored as the official
`llava/eval/cal_performance_mmreweard_bench.py` (julyanghar/MM-RLHF) scores it.

Rows: id, prompt, chosen, rejected, chosen_reason, rejected_reason, image or video (a folder of frames); several
rows share an id. Responses in benchmark order: [chosen, rejected].
- acc: pairs where chosen scores strictly higher (a tie is wrong; an unparseable generative verdict is wrong, as
  the official mapping to [0, 1] makes it).
- acc_plus: ids whose every pair is right, over all ids.
- per category, as the official script does it: the category is the first of mcq, long, short, safety, video found
  in the row's image path (else its video path); a row matching none counts only overall. Category acc_plus credits
  an all-right id to the first keyword any of its rows' image+video strings contains; its denominator counts every
  id with a row containing the keyword (so one id can sit in several denominators).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rmlab.data.adapters.mm_rlhf import mm_rlhf as mm_rlhf_row
from rmlab.eval.benchmarks.base import BenchItem, Benchmark, SynthExamples, load_items, pct, prefers, register

KEYWORDS = ("mcq", "long", "short", "safety", "video")
SCHEMA = "id, prompt, chosen, rejected, image | video"


def _item(row: dict, ctx) -> BenchItem:
    pair = next(iter(mm_rlhf_row(row, ctx)))  # the training adapter's reading of the same layout
    image, video = row.get("image") or "", row.get("video") or ""
    if isinstance(image, list):
        image = " ".join(image)
    path = image or video
    category = next((k for k in KEYWORDS if k in path), "")
    return BenchItem(
        id=str(row["id"]),
        prompt=pair.prompt,
        responses=[pair.chosen, pair.rejected],
        better=0,
        images=pair.images,
        videos=pair.videos,
        category=category,
        group=str(row["id"]),
        meta={"image": image, "video": video},
    )


def load(path: str, image_root: str | None = None) -> list[BenchItem]:
    return load_items(path, _item, SCHEMA, image_root, hub_id="yifanzhang114/MM-RLHF-RewardBench")


def metrics(items: list[BenchItem], predictions: list[dict]) -> dict:
    right = [bool(prefers(p, 0, 1)) for p in predictions]
    by_id: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_id.setdefault(item.id, []).append(i)
    all_right = {k: all(right[i] for i in idx) for k, idx in by_id.items()}
    out = {
        "acc": pct(sum(right), len(right)),
        "acc_plus": pct(sum(all_right.values()), len(by_id)),
        "n_pairs": len(items),
        "n_ids": len(by_id),
        "per_category": {},
    }
    credited = {}  # id -> the first keyword its rows mention (where an all-right id is counted)
    for k, idx in by_id.items():
        strings = [items[i].meta["image"] + items[i].meta["video"] for i in idx]
        credited[k] = next((kw for kw in KEYWORDS if any(kw in s for s in strings)), None)
    for kw in KEYWORDS:
        rows = [i for i, item in enumerate(items) if item.category == kw]
        ids = [k for k, idx in by_id.items() if any(kw in items[i].meta["image"] + items[i].meta["video"] for i in idx)]
        plus = sum(all_right[k] for k in by_id if credited[k] == kw)
        if rows or ids:
            out["per_category"][kw] = {
                "acc": pct(sum(right[i] for i in rows), len(rows)),
                "acc_plus": pct(plus, len(ids)),
                "n_pairs": len(rows),
                "n_ids": len(ids),
            }
    return out


def synth(out_dir: Path, rng: random.Random, examples: SynthExamples, n_ids: int = 24) -> None:
    """Each id: one image (or a 3-frame video) with a question and two or three rejected answers: several pairs."""

    rows = []
    for i in range(n_ids):
        kw = KEYWORDS[i % len(KEYWORDS)]
        ex = examples.mm(rng, examples.mm_tasks[i % len(examples.mm_tasks)])
        if kw == "video":
            media = {"video": f"video/clip{i:04d}"}
            frames = [ex["png"]] * 3
            for f, png in enumerate(frames):
                (out_dir / "video" / f"clip{i:04d}").mkdir(parents=True, exist_ok=True)
                (out_dir / "video" / f"clip{i:04d}" / f"{f:03d}.png").write_bytes(png)
        else:
            media = {"image": f"{kw}/{i:04d}.png"}
            (out_dir / kw).mkdir(parents=True, exist_ok=True)
            (out_dir / kw / f"{i:04d}.png").write_bytes(ex["png"])
        wrongs = list(dict.fromkeys([ex["wrong"], *(ex.get("others") or [])]))[: 1 + i % 2]
        for wrong in wrongs:
            rows.append(
                {
                    "id": f"mmrlhf-{i}",
                    "prompt": ex["question"],
                    "chosen": ex["right"],
                    "rejected": wrong,
                    "chosen_reason": "Matches the image.",
                    "rejected_reason": "Does not match the image.",
                    **media,
                }
            )
    with open(out_dir / "mm_reward_bench.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


register(
    Benchmark(
        name="mmrlhf",
        load=load,
        metrics=metrics,
        synth=synth,
        file_name="mm_reward_bench.jsonl",
        options={},
        headline=("acc", "acc_plus"),
        convention="acc: chosen strictly above rejected (ties wrong); acc_plus: ids with every pair right; categories "
        "by the first of mcq/long/short/safety/video in the image (else video) path, as the official script",
    )
)
