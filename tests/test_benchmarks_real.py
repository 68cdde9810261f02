"""Benchmark loaders on their released rows (tests/fixtures/benchmarks/, whose README names each file's repository,
path and commit), every item's fields compared with the values read from the raw JSON here. The media are not in
the repository: the loaders read the rows without them. (RM-Bench's per-domain files and the MM-RLHF-RewardBench
metrics are checked in tests/test_benchmarks.py. Multimodal RewardBench and RewardBench have no released rows here:
their files are too large for the repository snapshots available or live only on the hub.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from conftest import image_or_text

from rmlab.eval.benchmarks import get_benchmark

BENCHMARKS = Path(__file__).parent / "fixtures" / "benchmarks"
# VL-RewardBench's cal.py: the image folder (the row's source) -> its group
VLRB_GROUPS = {
    "vlfeedback": "general",
    "wildvision-battle": "general",
    "povid": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "reasoning_tasks": "reasoning",
}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_vlrb_every_released_row_field_by_field(tmp_path):
    path = BENCHMARKS / "vl_rewardbench" / "data.jsonl"
    rows = _rows(path)
    root = tmp_path / "VL_RewardBench"  # where a user unpacked the images (not here)
    items = get_benchmark("vlrb").load(str(path), image_root=str(root))
    assert len(items) == len(rows) == 1250
    for item, row in zip(items, rows, strict=True):
        folder = row["image_path"].split("/")[1]
        assert item.id == row["id"]
        assert item.prompt == [{"role": "user", "content": image_or_text(row["query"])}]
        assert item.responses == row["response"]
        assert item.better == row["human_ranking"].index(0)  # 0 ranks the better response
        assert item.images == [str(root / row["image_path"])] and item.videos == []
        assert (item.category, item.meta["source"]) == (VLRB_GROUPS[folder], folder)
    assert Counter(i.meta["source"] for i in items) == {
        "povid": 448,
        "reasoning_tasks": 318,
        "rlaif-v": 233,
        "wildvision-battle": 173,
        "rlhf-v": 68,
        "vlfeedback": 10,
    }
    assert Counter(i.better for i in items) == {0: 1245, 1: 5}
    assert get_benchmark("vlrb").load(str(path))[0].images == [str(path.parent / rows[0]["image_path"])]


def test_mmrlhf_every_released_row_field_by_field(tmp_path):
    path = BENCHMARKS / "mmrlhf" / "mm_reward_bench.jsonl"
    rows = _rows(path)
    root = tmp_path / "MM-RLHF-RewardBench"
    items = get_benchmark("mmrlhf").load(str(path), image_root=str(root))
    assert len(items) == len(rows) == 170 and len({i.group for i in items}) == 46
    for item, row in zip(items, rows, strict=True):
        kind = "image" if row.get("image") else "video"
        assert item.prompt == [
            {"role": "user", "content": [{"type": kind}, {"type": "text", "text": row["prompt"].strip()}]}
        ]
        assert item.responses == [row["chosen"], row["rejected"]] and item.better == 0
        assert item.id == item.group == row["id"]
        assert item.category == row[kind].split("/")[0]  # each path's top folder is one of the official keywords
        if kind == "image":
            assert item.images == [str(root / row["image"])] and item.videos == []
        else:  # a frame folder, listed only when its frames are used (not here)
            assert item.images == [] and [v.where for v in item.videos] == [row["video"]]
        assert item.meta == {"image": row.get("image") or "", "video": row.get("video") or ""}
