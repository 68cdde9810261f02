"""Adapters of group mm_b (VLFeedback, RLHF-V, POVID, MM-IFEngine DPO, OmniAlign-V DPO): each fixture, written in
the dataset's own on-disk layout, loads into the expected pairs; a malformed row names its file and row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rmlab.data.adapters import ADAPTERS, RowContext, load_pairs
from rmlab.data.records import count_parts, open_image
from rmlab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
VLF = FIXTURES / "vlfeedback"
VLF_FILE = str(VLF / "vlfeedback_80k.jsonl")
VLF_ZIP = str(VLF / "merged_images.zip")


def _decodes(pair, n: int) -> None:
    assert len(pair.images) == n == count_parts(pair.prompt, "image")
    for ref in pair.images:
        assert open_image(ref).size[0] > 0


def _user(text: str, n_images: int = 1) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


# ------------------------------------------------------------------------------------------------ vlfeedback


def test_vlfeedback_silkie_pairs():
    pairs = load_pairs("vlfeedback", VLF_FILE, image_root=VLF_ZIP)
    # row 1: A (4.67) beats B and D (3.67 each, a tie between them: dropped); C has a non-numeric rating: skipped
    # row 2: one pair; row 3: a tie (4.0 vs 4.0): no pair
    assert [p.id for p in pairs] == ["svit-conversation-1219:0", "svit-conversation-1219:1", "lrv-instruction-7:0"]
    first = pairs[0]
    assert first.prompt == _user("What is the main focus of this image?")
    assert first.chosen == "A red square on a plain background."
    assert first.rejected == "A red flag waving."
    assert pairs[1].rejected == "A red car."
    assert first.source == "vlfeedback" and first.category == ""
    assert first.chosen_score == pytest.approx(14 / 3)
    assert first.rejected_score == pytest.approx(11 / 3)
    assert first.margin == pytest.approx(1.0)
    assert first.meta["chosen_model"] == "gpt4v" and first.meta["rejected_model"] == "llava-v1.5-13b"
    assert first.meta["chosen_ratings"] == {
        "Helpfulness": 5.0,
        "Ethical Considerations": 5.0,
        "Visual Faithfulness": 4.0,
    }
    assert first.meta["rejected_rationales"]["Helpfulness"] == "helpfulness 3"
    assert first.images == [f"{VLF_ZIP}::merged_images/svit-conversation-1219.jpg"]
    _decodes(first, 1)
    assert first.origin.endswith("vlfeedback_80k.jsonl: line 1")
    # a prompt with an <image> placeholder puts the image there
    assert pairs[2].prompt == _user("Is there a dog in the picture?")
    assert pairs[2].chosen == "No, there is no dog." and pairs[2].margin == pytest.approx(7 / 3)


def test_vlfeedback_rule_options():
    best_worst = load_pairs("vlfeedback", VLF_FILE, image_root=VLF_ZIP, options={"pairs": "best_worst"})
    assert [p.id for p in best_worst] == ["svit-conversation-1219:0", "lrv-instruction-7:0"]
    assert best_worst[0].rejected == "A red car."  # the last of the tied lowest completions
    gap = load_pairs("vlfeedback", VLF_FILE, image_root=VLF_ZIP, options={"min_gap": 2.0})
    assert [p.id for p in gap] == ["lrv-instruction-7:0"]
    helpful = load_pairs("vlfeedback", VLF_FILE, image_root=VLF_ZIP, options={"aspects": ["Helpfulness"]})
    # on helpfulness alone row 3 is no tie (3 vs 4) and fuyu's "N/A" still drops it
    assert [p.id for p in helpful][-1] == "m3it-vqa-v2-3:0"
    with pytest.raises(DataError, match="pairs='best'"):
        load_pairs("vlfeedback", VLF_FILE, options={"pairs": "best"})


def test_vlfeedback_column_wise_completions_and_img_path():
    """A row as the loading script / parquet conversion gives it: completions column-wise, img_path set."""
    row = json.loads(Path(VLF_FILE).read_text().splitlines()[1])
    comps = row["completions"]
    row["completions"] = {key: [c[key] for c in comps] for key in ("annotations", "model", "response")}
    row["img_path"] = "/data/merged_images/lrv-instruction-7.jpg"
    (pair,) = ADAPTERS["vlfeedback"].fn(row, RowContext("hub", 0))
    assert pair.chosen == "No, there is no dog." and pair.rejected == "Yes, a brown dog."
    assert pair.images == ["/data/merged_images/lrv-instruction-7.jpg"]
    assert ADAPTERS["vlfeedback"].hub_kwargs == {"revision": "refs/convert/parquet"}


# ------------------------------------------------------------------------------------------------ rlhf_v


def test_rlhf_v_parquet():
    pairs = load_pairs("rlhf_v", str(FIXTURES / "rlhf_v" / "RLHF-V-Dataset.parquet"))
    assert len(pairs) == 2
    p = pairs[0]
    assert p.id == "0" and pairs[1].id == "1"
    assert p.prompt == _user("Describe the image in detail.")
    assert p.chosen == "The image shows a plain blue rectangle."
    assert p.rejected == "The image shows a blue rectangle next to a cat sitting on a sofa."
    assert p.source == "rlhf_v" and p.category == "RLHF-V"
    assert p.margin is None and p.chosen_score is None and p.rejected_score is None
    assert isinstance(p.images[0], bytes)
    _decodes(p, 1)
    assert p.meta["origin_split"] == {"model": "Muffin", "type": "detailed_description"}
    assert p.meta["origin_dataset"] == "coco"
    assert p.origin.endswith("RLHF-V-Dataset.parquet: row 1")


def test_rlhf_v_malformed_parquet_row(tmp_path):
    import datasets

    good = datasets.Dataset.from_parquet(str(FIXTURES / "rlhf_v" / "RLHF-V-Dataset.parquet"))
    bad = good.map(lambda r, i: {"text": "{not json" if i == 1 else r["text"]}, with_indices=True)
    path = tmp_path / "RLHF-V-Dataset.parquet"
    bad.to_parquet(str(path))
    with pytest.raises(DataError, match=r"RLHF-V-Dataset\.parquet: row 2: does not match the rlhf_v schema"):
        load_pairs("rlhf_v", str(path))


# ------------------------------------------------------------------------------------------------ povid


POVID_FILE = FIXTURES / "povid" / "POVID_preference_data_for_VLLMs_version_1.json"


def test_povid_json():
    pairs = load_pairs("povid", str(POVID_FILE))
    assert [p.id for p in pairs] == ["COCO_train2014_000000353952", "COCO_train2014_000000000009"]
    p = pairs[0]
    assert p.prompt == _user("Describe this image in detail.")
    assert p.chosen == "A gray square with nothing else in it."
    assert p.rejected == "A gray square with a horse and eleven people around it."
    assert p.source == "povid" and p.category == ""
    assert p.margin is None and p.chosen_score is None
    assert p.images == [str(POVID_FILE.parent / "coco" / "COCO_train2014_000000353952.jpg")]
    _decodes(p, 1)
    # multi-turn kept multi-turn, the image where its placeholder is (after the text here)
    multi = pairs[1]
    assert multi.prompt == [
        {"role": "user", "content": [{"type": "text", "text": "What is the color of the image?"}, {"type": "image"}]},
        {"role": "assistant", "content": "It is orange."},
        {"role": "user", "content": "Is anything drawn on it?"},
    ]
    assert multi.chosen == "No, it is a flat orange field." and multi.rejected == "Yes, a bowl of broccoli and a fork."
    _decodes(multi, 1)
    assert multi.origin.endswith("version_1.json: row 2")


def test_povid_malformed_json_row(tmp_path):
    rows = json.loads(POVID_FILE.read_text())
    del rows[1]["rejected_conversations"]
    path = tmp_path / "povid.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"povid\.json: row 2: does not match the povid schema.*KeyError"):
        load_pairs("povid", str(path))


# ------------------------------------------------------------------------------------------------ mmif


def test_mmif_json():
    path = FIXTURES / "mmif" / "mmif_dpo.json"
    pairs = load_pairs("mmif", str(path))
    assert [p.id for p in pairs] == ["mmif_dpo-0", "mmif_dpo-1"]
    p = pairs[0]
    assert p.prompt == _user(
        "Write a caption for this picture in exactly two sentences, and end it with the word 'sky'."
    )
    assert p.chosen == "A pale blue square fills the frame. It looks like a cloudless sky."
    assert p.rejected == "A blue square."
    assert p.source == "mmif" and p.category == "" and p.margin is None
    _decodes(p, 1)
    two = pairs[1]
    assert two.prompt == [
        {"role": "system", "content": "You are a careful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image"},
                {"type": "text", "text": " and "},
                {"type": "image"},
                {"type": "text", "text": " in one bullet list of at most three items."},
            ],
        },
    ]
    assert two.images == [str(path.parent / "images" / f"allava_00000{i}.jpg") for i in (2, 3)]
    _decodes(two, 2)
    assert two.chosen == "- Left is black\n- Right is white"


def test_mmif_placeholder_mismatch_is_an_error(tmp_path):
    rows = json.loads((FIXTURES / "mmif" / "mmif_dpo.json").read_text())
    rows[0]["images"] = []  # one <image> placeholder, no image
    path = tmp_path / "mmif_dpo.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"mmif_dpo\.json: row 1: .*placeholder"):
        load_pairs("mmif", str(path))


# ------------------------------------------------------------------------------------------------ omnialign_v


def test_omnialign_v_jsonl():
    path = FIXTURES / "omnialign_v" / "knowledge.jsonl"
    pairs = load_pairs("omnialign_v", str(path))
    assert [p.id for p in pairs] == ["knowledge-0", "knowledge-1"]
    p = pairs[0]
    assert p.prompt == _user("What does this artwork suggest about its era? Explain in depth.")
    assert p.chosen.startswith("The muted purple palette") and p.rejected == "It is a purple picture."
    assert p.source == "omnialign_v" and p.category == "knowledge"
    assert p.margin is None and p.chosen_score is None
    _decodes(p, 1)
    assert pairs[1].prompt == _user("How do these two landmarks differ in function?", n_images=2)
    _decodes(pairs[1], 2)
    assert pairs[1].origin.endswith("knowledge.jsonl: line 2")


def test_omnialign_v_malformed_jsonl_line(tmp_path):
    path = tmp_path / "chart.jsonl"
    lines = (FIXTURES / "omnialign_v" / "knowledge.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["rejected"] = None
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    shutil.copytree(FIXTURES / "omnialign_v" / "images", tmp_path / "images")
    with pytest.raises(DataError, match=r"chart\.jsonl: line 2: does not match the omnialign_v schema"):
        load_pairs("omnialign_v", str(path))
    kept = load_pairs("omnialign_v", str(path), policy="skip")
    assert [p.category for p in kept] == ["chart"]


def test_vlfeedback_malformed_jsonl_line(tmp_path):
    lines = Path(VLF_FILE).read_text().splitlines()
    bad = json.loads(lines[2])
    bad["completions"] = "not a list"
    path = tmp_path / "vlfeedback_80k.jsonl"
    path.write_text("\n".join([lines[0], lines[1], json.dumps(bad)]) + "\n")
    with pytest.raises(DataError, match=r"vlfeedback_80k\.jsonl: line 3: .*completions is a str"):
        load_pairs("vlfeedback", str(path))


def test_povid_readme_style_paths_resolve_under_the_coco_folder(tmp_path):
    """POVID's README gives `./data/coco/COCO_train2014_....jpg` while its scripts pass `--image_folder ./data/coco`:
    with image_root at the COCO folder, both that form and the bare file name find the image."""
    rows = json.loads(POVID_FILE.read_text())
    rows[0]["image"] = "./data/coco/" + Path(rows[0]["image"]).name
    rows[1]["image"] = Path(rows[1]["image"]).name
    path = tmp_path / "povid.json"
    path.write_text(json.dumps(rows))
    coco = POVID_FILE.parent / "coco"
    pairs = load_pairs("povid", str(path), image_root=str(coco))
    assert [p.images for p in pairs] == [[str(coco / "COCO_train2014_000000353952.jpg")],
                                         [str(coco / Path(rows[1]["image"]).name)]]  # fmt: skip
    for pair in pairs:
        _decodes(pair, 1)


def test_omnialign_v_category_from_the_hubs_and_the_meta_files_names():
    from rmlab.data.adapters.omnialign_v import subset_of

    assert subset_of("/data/knowledge.jsonl") == "knowledge" and subset_of("ins_follow.jsonl") == "ins_follow"
    assert subset_of("/x/DPO_knowledge_gqa9k_art1500_cc3m30k_fixed.jsonl") == "knowledge"
    # the meta file's names, not the words in them: this file holds ins_follow (tests/test_adapters_real.py checks all)
    assert subset_of("DPO_Knowledge_instruct40k_fixed.jsonl") == "ins_follow"
    assert subset_of("DPO_knowledge_other.jsonl") == "" and subset_of("DPO_chartqa.jsonl") == ""
