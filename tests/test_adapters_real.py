"""Adapters on rows their datasets' authors published (tests/fixtures/real/, whose README names each file's
repository, path and commit; MM-RLHF's pair layout on the MM-RLHF-RewardBench rows in tests/fixtures/benchmarks/),
read the way a user reads a file (load_pairs / iter_pairs, then the checks every run makes), each field compared with
the value read from the raw JSON here. No image of these datasets is in the repository: a pair whose media are
missing still loads, and validation counts it as `image_missing`."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import image_or_text
from PIL import Image

from rmlab.data.adapters import LoadReport, RowContext, iter_pairs, load_pairs
from rmlab.data.adapters.omnialign_v import SUBSETS
from rmlab.data.validate import Validator
from rmlab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
SYNTHETIC = FIXTURES / "data"  # rows we wrote in each schema (used only where the authors published no row)


def _validated(name: str, path: Path, **kwargs):
    """(every pair the adapter made, the pairs that pass the checks, the validator with its counts)."""
    validator = Validator(policy="skip")
    pairs = list(iter_pairs(name, str(path), policy="skip", report=validator.report, **kwargs))
    kept = [p for p in pairs if validator.keep(p)]
    return pairs, kept, validator


# ------------------------------------------------------------------------------------------------ POVID


def test_povid_readme_element_with_its_coco_path(tmp_path):
    path = REAL / "povid" / "readme_element.json"  # a lone JSON object: one row
    raw = json.loads(path.read_text())
    coco = tmp_path / "coco"  # image_root at the COCO train2014 folder, as the README's --image_folder ./data/coco
    pairs, kept, validator = _validated("povid", path, image_root=str(coco))
    assert len(pairs) == 1 and validator.report.rows == 1
    (pair,) = pairs
    human, answer = raw["conversations"]
    rejected_human, rejected_answer = raw["rejected_conversations"]
    assert (human["from"], answer["from"]) == ("human", "gpt") and rejected_human == human
    assert pair.prompt == [{"role": "user", "content": image_or_text(human["value"])}]
    assert pair.prompt[0]["content"][1] == {"type": "text", "text": "Describe this image in detail."}
    assert pair.chosen == answer["value"] and pair.rejected == rejected_answer["value"]
    assert raw["image"] == "./data/coco/COCO_train2014_000000353952.jpg"
    assert pair.images == [str(coco / "COCO_train2014_000000353952.jpg")] and pair.videos == []
    assert pair.id == raw["id"] == "COCO_train2014_000000353952"
    assert (pair.source, pair.category) == ("povid", "")
    assert (pair.margin, pair.chosen_score, pair.rejected_score) == (None, None, None)
    assert pair.origin == f"{path}: row 1"
    # the image is not in the repository: the pair is read, then counted as image_missing, naming the path
    assert kept == [] and validator.summary()["pairs_skipped"] == {"image_missing": 1}
    assert validator.report.examples["image_missing"][0].endswith(f"image not found: {pair.images[0]}")
    coco.mkdir()
    Image.new("RGB", (8, 8)).save(coco / "COCO_train2014_000000353952.jpg")
    _, kept, validator = _validated("povid", path, image_root=str(coco))
    assert len(kept) == 1 and validator.summary()["pairs_skipped"] == {}


# ------------------------------------------------------------------------------------------------ R1-Reward


def test_r1_reward_readme_training_row_layout_and_its_elided_prompt():
    from rmlab.data.adapters.r1_reward import _chat, _image_ref, _preferred

    path = REAL / "r1_reward" / "readme_training_row.json"
    raw = json.loads(path.read_text())
    assert set(raw) == {"message", "question", "answer"}  # no image column: the message names the image
    chat = _chat(raw["message"])  # a JSON string holding the chat
    assert [m["role"] for m in chat] == ["user"]
    text, image = chat[0]["content"]
    assert text["type"] == "text" and image["type"] == "image"
    assert _preferred(raw["answer"]) == 2 and raw["answer"] == ["<answer>2</answer>"]
    ctx = RowContext(str(path), 0, "/data/r1", {"strip_prefix": "/mmu_mllm_hdd/yfzhang/data/"})
    assert _image_ref(image["image"], ctx) == "/data/r1/RLAIF-V-image/edouard-vuillard_the-cake-shop.jpg"
    # the README elides the judge prompt, so the responses cannot be cut out of it: a counted schema fault
    assert "<evaluation prompt text>" in text["text"] and "[Question]" not in text["text"]
    report = LoadReport()
    assert load_pairs("r1_reward", str(path), policy="skip", report=report) == []
    assert report.rows == 1 and report.pairs == 0 and dict(report.rejected) == {"schema": 1}
    assert report.examples["schema"][0].startswith(f"{path}: row 1: ")
    with pytest.raises(DataError, match=r"readme_training_row\.json: row 1: .*no \[Question\]: section"):
        load_pairs("r1_reward", str(path))


# ------------------------------------------------------------------------------------------------ UltraFeedback


def test_ultrafeedback_readme_row_fields_and_no_scores():
    path = REAL / "ultrafeedback" / "readme_dataset_format.json"
    raw = json.loads(path.read_text())
    assert raw["source"] == "sharegpt" and raw["instruction"].startswith("I am going to cairo in June")
    (completion,) = raw["completions"]  # the README shows the first of four
    assert completion["model"] == raw["models"][0] == "falcon-40b-instruct"
    assert set(completion) == {"model", "principle", "custom_system_prompt", "response", "annotations"}
    assert {a: completion["annotations"][a]["Rating"] for a in completion["annotations"]} == {
        "instruction_following": "2",
        "honesty": "3",
        "truthfulness": "3",
        "helpfulness": "3",
    }
    # the README's form has no overall_score: no pair, and a counted fault that says why (never a silent 0)
    report = LoadReport()
    for name in ("ultrafeedback", "ultrafeedback_hard"):
        assert load_pairs(name, str(path), report=report, policy="skip") == []
    assert (report.rows, report.pairs, dict(report.rejected)) == (2, 0, {"schema": 2})
    assert "1 of 1 completions have no overall_score" in report.examples["schema"][0]


# ------------------------------------------------------------------------------------------------ SHP


def test_shp_dataset_card_example(tmp_path):
    path = REAL / "shp" / "askculinary" / "train.json"  # JSON lines under a .json name, as SHP ships its files
    raw = json.loads(path.read_text())
    pairs, kept, validator = _validated("shp", path)
    assert len(pairs) == len(kept) == 1 and validator.summary()["pairs_skipped"] == {}
    (pair,) = pairs
    assert raw["labels"] == 1  # A preferred
    assert pair.prompt == [{"role": "user", "content": raw["history"]}]
    assert "https://i.imgur.com/Z0c6ZKE.jpg" in raw["history"]  # the card's escaped slashes, decoded
    assert (pair.chosen, pair.rejected) == (raw["human_ref_A"], raw["human_ref_B"])
    assert (pair.chosen_score, pair.rejected_score) == (raw["score_A"], raw["score_B"]) == (340, 166)
    assert raw["score_ratio"] == pytest.approx(raw["score_A"] / raw["score_B"])  # preferred over the other
    assert pair.margin == pytest.approx(math.log(raw["score_ratio"]))
    assert pair.id == f"{raw['post_id']}-{raw['c_root_id_A']}-{raw['c_root_id_B']}" == "qt3nxl-hkh25sc-hkh25lp"
    assert (pair.source, pair.category) == ("shp", "askculinary")
    assert pair.meta == {
        "domain": "askculinary_train",
        "post_id": "qt3nxl",
        "score_ratio": raw["score_ratio"],
        "upvote_ratio": raw["upvote_ratio"],
        "seconds_difference": raw["seconds_difference"],
    }
    assert pair.images == [] and pair.origin == f"{path}: row 1"
    assert load_pairs("shp", str(path), options={"min_score_ratio": 2.5}) == []  # its ratio is 2.05
    # several lines under the .json name are read line by line (the same row twice: the second is a duplicate)
    lines = tmp_path / "askculinary" / "train.json"
    lines.parent.mkdir()
    lines.write_text(path.read_text() * 2)
    pairs, kept, validator = _validated("shp", lines)
    assert len(pairs) == 2 and len(kept) == 1 and validator.summary()["pairs_skipped"] == {"duplicate": 1}
    assert pairs[1].origin == f"{lines}: row 2"


# ------------------------------------------------------------------------------------------------ MM-RLHF


def test_mm_rlhf_reads_the_released_reward_bench_pairs_and_counts_their_missing_media(tmp_path):
    path = FIXTURES / "benchmarks" / "mmrlhf" / "mm_reward_bench.jsonl"  # dpo_pairs.jsonl's layout, 170 rows
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    pairs, kept, validator = _validated("mm_rlhf", path)
    assert len(pairs) == len(rows) == validator.report.rows == 170
    for i, (pair, row) in enumerate(zip(pairs, rows, strict=True), 1):
        kind = "image" if row.get("image") else "video"
        media = row[kind]
        assert pair.prompt == [
            {"role": "user", "content": [{"type": kind}, {"type": "text", "text": row["prompt"].strip()}]}
        ]
        assert (pair.chosen, pair.rejected) == (row["chosen"], row["rejected"])
        assert pair.meta == {"chosen_reason": row["chosen_reason"], "rejected_reason": row["rejected_reason"]}
        assert pair.id == row["id"] and pair.category == media.split("/")[0]
        if kind == "image":
            assert pair.images == [str(path.parent / media)] and pair.videos == []
        else:
            assert pair.images == [] and len(pair.videos) == 1 and pair.videos[0].where == media
        assert (pair.source, pair.margin, pair.chosen_score) == ("mm_rlhf", None, None)
        assert pair.origin == f"{path}: line {i}"
    assert Counter(p.category for p in pairs) == {"mcq": 42, "long": 37, "short": 34, "safety": 32, "video": 25}
    # no image or frame folder here: every pair is read, and every one is counted as image_missing
    assert kept == [] and validator.summary()["pairs_skipped"] == {"image_missing": 170}
    assert validator.summary()["skipped_share"] == {"mm_rlhf": 1.0}
    root = tmp_path / "MM-RLHF"
    moved = load_pairs("mm_rlhf", str(path), image_root=str(root), limit=1)
    assert moved[0].images == [str(root / rows[0]["image"])]


# ------------------------------------------------------------------------------------------------ meta files


def test_mmpr_internvl_meta_gives_category_and_image_root(tmp_path):
    """InternVL's v1.2 debug meta file (no annotation row of MMPR was available: the row is our synthetic one)."""
    text = (REAL / "mmpr" / "debug_mpo.json").read_text()
    meta = json.loads(re.sub(r",\s*}\s*$", "}", text))  # the file as released ends its last entry with a comma
    assert len(meta) == 2
    annotations = SYNTHETIC / "mmpr" / "MMPR-v1.2" / "annotations"
    row = json.loads(next(annotations.glob("*.jsonl")).read_text().splitlines()[0])
    archive = tmp_path / "images.zip"
    for key, entry in meta.items():
        assert entry["annotation"] == f"MMPR-v1.2/annotations/{key}.jsonl"
        assert entry["root"] == "MMPR-v1.2/images/M3CoT"
        annotation = tmp_path / entry["annotation"]
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text(json.dumps(row) + "\n")
        (pair,) = load_pairs("mmpr", str(annotation), image_root=str(archive), options={"root": entry["root"]})
        assert pair.category == key and pair.id == f"{key}-0"
        assert pair.images == [f"{archive}::{entry['root']}/{row['image']}"]


def test_omnialign_v_every_dpo_file_of_the_meta_gets_its_data_type(tmp_path):
    """The repository's DPO meta file names one annotation file per subset; a file's category is its data_type (the
    names mislead: DPO_Knowledge_instruct40k holds ins_follow). The row is our synthetic one: none was available."""
    meta = json.loads((REAL / "omnialign_v" / "ominialign_v_dpo.json").read_text())
    row = json.loads((SYNTHETIC / "omnialign_v" / "knowledge.jsonl").read_text().splitlines()[0])
    assert sorted(entry["data_type"] for entry in meta.values()) == sorted(SUBSETS)
    for entry in meta.values():
        annotation = tmp_path / entry["annotation"]
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text(json.dumps(row) + "\n")
        root = tmp_path / entry["root"]
        (pair,) = load_pairs("omnialign_v", str(annotation), image_root=str(root))
        assert pair.category == entry["data_type"], entry["annotation"]
        assert pair.images == [str(root / row["image"])]
    other = tmp_path / "my_dpo.jsonl"
    other.write_text(json.dumps(row) + "\n")
    assert load_pairs("omnialign_v", str(other))[0].category == ""
    assert load_pairs("omnialign_v", str(other), options={"category": "chart"})[0].category == "chart"
