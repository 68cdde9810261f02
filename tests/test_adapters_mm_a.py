"""Adapters mmpr (MMPR v1.2), r1_reward (R1-Reward-RL) and mm_rlhf (MM-RLHF dpo_pairs.jsonl) on fixtures in each
dataset's own on-disk layout (tests/fixtures/data/<name>/)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from rmlab.data.adapters import ADAPTERS, load_pairs
from rmlab.data.records import open_image
from rmlab.data.validate import InvalidPair, check_pair
from rmlab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "data"

MMPR = FIXTURES / "mmpr"
MMPR_NAME = "scienceqa_multi_choice_en_20240402_extracted_pairs_vqa_format_rules"
MMPR_FILE = MMPR / "MMPR-v1.2" / "annotations" / f"{MMPR_NAME}.jsonl"
MMPR_ROOT = "MMPR-v1.2/images/ScienceQA"  # the meta.json `root` of that annotation

R1 = FIXTURES / "r1_reward"
R1_FILE = R1 / "data" / "train-00000-of-00001.parquet"
R1_PREFIX = "/mmu_mllm_hdd/yfzhang/data/"

MM_RLHF = FIXTURES / "mm_rlhf"
MM_RLHF_FILE = MM_RLHF / "dpo_pairs.jsonl"


def _decoded_sizes(refs) -> list[tuple[int, int]]:
    return [open_image(ref).size for ref in refs]


# ------------------------------------------------------------------------------------------------ mmpr


def _mmpr_pairs():
    return load_pairs("mmpr", str(MMPR_FILE), image_root=str(MMPR / "images.zip"), options={"root": MMPR_ROOT})


def test_mmpr_meta_points_at_the_annotation_and_root():
    meta = json.loads((MMPR / "meta.json").read_text())
    assert meta[MMPR_NAME]["annotation"] == f"MMPR-v1.2/annotations/{MMPR_NAME}.jsonl"
    assert meta[MMPR_NAME]["root"] == MMPR_ROOT


def test_mmpr_single_image_row_field_by_field():
    pairs = _mmpr_pairs()
    assert len(pairs) == 4
    p = pairs[0]
    assert p.prompt == [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {
                    "type": "text",
                    "text": "Which of these states is farthest north?\nA. Ohio\nB. Georgia\n"
                    "Answer with the option's letter from the given choices directly.",
                },
            ],
        }
    ]
    assert p.chosen == "Ohio lies farther north than Georgia on the map.\nAnswer: A"
    assert p.rejected == "Georgia is at the top of the map.\nAnswer: B"
    assert p.images == [f"{MMPR / 'images.zip'}::{MMPR_ROOT}/train/1/image.png"]
    assert _decoded_sizes(p.images) == [(8, 8)]
    assert p.videos == []
    assert p.id == f"{MMPR_NAME}-0"
    assert p.source == "mmpr"
    assert p.category == MMPR_NAME
    assert (p.margin, p.chosen_score, p.rejected_score) == (None, None, None)
    assert p.origin == f"{MMPR_FILE}: line 1"


def test_mmpr_placeholder_free_multi_image_and_text_rows():
    _, no_marker, multi, text = _mmpr_pairs()
    assert no_marker.prompt[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What colour is the square?"}]
    assert multi.prompt[0]["content"] == [
        {"type": "text", "text": "Image-1: "},
        {"type": "image"},
        {"type": "text", "text": "Image-2: "},
        {"type": "image"},
        {"type": "text", "text": "Which image is brighter?"},
    ]
    assert [ref.rsplit("/", 1)[-1] for ref in multi.images] == ["left.png", "right.png"]
    assert open_image(multi.images[0]).getpixel((0, 0)) < open_image(multi.images[1]).getpixel((0, 0))
    assert text.prompt == [{"role": "user", "content": "What is 2 + 3?"}]
    assert text.images == [] and (text.chosen, text.rejected) == ("2 + 3 = 5.", "2 + 3 = 6.")
    for pair in _mmpr_pairs():
        check_pair(pair)


def test_mmpr_images_from_an_unzipped_root_folder(tmp_path):
    with zipfile.ZipFile(MMPR / "images.zip") as zf:
        zf.extractall(tmp_path)
    pairs = load_pairs("mmpr", str(MMPR_FILE), image_root=str(tmp_path / MMPR_ROOT), options={"category": "sqa"})
    assert pairs[2].images == [str(tmp_path / MMPR_ROOT / "train/3" / n) for n in ("left.png", "right.png")]
    assert _decoded_sizes([ref for p in pairs for ref in p.images]) == [(8, 8)] * 4
    assert {p.category for p in pairs} == {"sqa"}


def test_mmpr_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = MMPR_FILE.read_text().splitlines()[0]
    bad.write_text(good + "\n" + json.dumps({"image": "x.png", "question": "<image>\nQ?", "chosen": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2: .*KeyError: 'rejected'"):
        load_pairs("mmpr", str(bad))
    bad.write_text(json.dumps({"image": "x.png", "question": "<image><image>Q?", "chosen": "a", "rejected": "b"}))
    with pytest.raises(DataError, match=r"bad\.jsonl: line 1: .*2 <image> placeholder\(s\) for 1 image"):
        load_pairs("mmpr", str(bad))


# ------------------------------------------------------------------------------------------------ r1_reward


def _r1_pairs():
    return load_pairs("r1_reward", str(R1_FILE), image_root=str(R1), options={"strip_prefix": R1_PREFIX})


def test_r1_reward_row_field_by_field():
    pairs = _r1_pairs()
    assert len(pairs) == 3
    p = pairs[0]  # answer <answer>2</answer>: Response 2 is chosen
    question = "Give a comprehensive description of this artwork."
    assert p.prompt == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    assert p.chosen == "The artwork is a print of a flat green square on a plain ground."
    assert p.rejected == "A green square."
    assert len(p.images) == 1 and isinstance(p.images[0], bytes)  # the base64 image column, decoded
    assert open_image(p.images[0]).getpixel((0, 0)) == (20, 140, 60)
    assert p.videos == []
    assert p.id == "train-00000-of-00001-0"
    assert (p.source, p.category) == ("r1_reward", "")
    assert (p.margin, p.chosen_score, p.rejected_score) == (None, None, None)
    assert p.meta == {"preferred": 2}
    assert p.origin == f"{R1_FILE}: row 1"


def test_r1_reward_label_one_and_image_from_the_message_path():
    _, first, from_path = _r1_pairs()
    assert first.meta == {"preferred": 1}
    assert first.chosen == "There are no circles; the image is a plain square."
    assert first.rejected == "There are three circles."
    # empty image column: the message's absolute path, made relative by strip_prefix, under image_root
    assert from_path.images == [str(R1 / "RLAIF-V-image" / "cake.png")]
    assert open_image(from_path.images[0]).getpixel((0, 0)) == (240, 150, 30)
    assert (from_path.chosen, from_path.rejected) == ("The cake is orange.", "The cake is white.")
    for pair in _r1_pairs():
        check_pair(pair)


def _write_r1_parquet(path: Path, rows: list[dict]) -> None:
    from datasets import Dataset, Features, Value

    features = Features(
        {"question": Value("string"), "message": Value("string"), "answer": [Value("string")], "image": Value("string")}
    )
    Dataset.from_list(rows, features=features).to_parquet(str(path))


def test_r1_reward_malformed_row_names_file_and_row(tmp_path):
    import pandas as pd

    rows = pd.read_parquet(R1_FILE).to_dict("records")
    rows = [{**r, "answer": list(r["answer"])} for r in rows[:2]]
    bad = tmp_path / "bad.parquet"
    _write_r1_parquet(bad, [rows[0], {**rows[1], "answer": ["<answer>3</answer>"]}])
    with pytest.raises(DataError, match=r"bad\.parquet: row 2: .*names neither response 1 nor 2"):
        load_pairs("r1_reward", str(bad))
    no_second = json.loads(rows[0]["message"])
    no_second[0]["content"][0]["text"] = no_second[0]["content"][0]["text"].replace("[Response 2]", "[Answer 2]")
    _write_r1_parquet(bad, [{**rows[0], "message": json.dumps(no_second)}])
    with pytest.raises(DataError, match=r"bad\.parquet: row 1: .*no \[Response 2\]: after"):
        load_pairs("r1_reward", str(bad))


# ------------------------------------------------------------------------------------------------ mm_rlhf


def test_mm_rlhf_image_row_field_by_field():
    pairs = load_pairs("mm_rlhf", str(MM_RLHF_FILE))
    assert len(pairs) == 3
    p = pairs[0]
    assert p.prompt == [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {
                    "type": "text",
                    "text": "Here is a diagram figure extracted from some Grade 1 - 6 science books.\n"
                    "Please first describe the content of this figure in detail.",
                },
            ],
        }
    ]
    assert p.chosen == "The figure is a plain white panel with no labelled parts."
    assert p.rejected == "The figure shows the water cycle with arrows."
    assert p.images == [str(MM_RLHF / "long" / "ai2d_azuregpt_4569.png")]
    assert _decoded_sizes(p.images) == [(8, 8)]
    assert p.id == "ai2d_azuregpt_4569_175031"
    assert (p.source, p.category) == ("mm_rlhf", "long")
    assert (p.margin, p.chosen_score, p.rejected_score) == (None, None, None)
    assert p.meta == {
        "chosen_reason": "The description is accurate.",
        "rejected_reason": "The water cycle is not shown.",
    }
    # the prompt's own <image> marker is dropped and the image put first, as DPODataset does
    assert pairs[1].prompt[0]["content"][0] == {"type": "image"}
    assert pairs[1].prompt[0]["content"][1]["text"].startswith("Question: What is the colour")
    assert pairs[1].category == "mcq"


def test_mm_rlhf_video_row_is_sampled_frames():
    video = load_pairs("mm_rlhf", str(MM_RLHF_FILE))[2]
    frames = [str(MM_RLHF / "video" / "GAF_aZe6HjU" / f"c01_{i:04d}.jpeg") for i in (1, 2, 3)]
    assert video.prompt[0]["content"] == [
        {"type": "video"},
        {"type": "text", "text": "How does the brightness change over the video?"},
    ]
    assert video.images == [] and len(video.videos) == 1
    # DPODataset's np.linspace(0, 2, 10).astype(int) over the 3 sorted frames
    assert video.videos[0] == [frames[i] for i in (0, 0, 0, 0, 0, 1, 1, 1, 1, 2)]
    assert (video.id, video.category) == ("GAF_aZe6HjU_2_117472", "video")
    assert _decoded_sizes(video.videos[0][:1]) == [(8, 8)]
    check_pair(video)
    two = load_pairs("mm_rlhf", str(MM_RLHF_FILE), options={"num_frames": 2})[2]
    assert two.videos == [[frames[0], frames[2]]]
    every = load_pairs("mm_rlhf", str(MM_RLHF_FILE), options={"num_frames": 0})[2]
    assert every.videos == [frames]


def test_mm_rlhf_frames_from_a_zip_image_root(tmp_path):
    archive = tmp_path / "media.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(MM_RLHF.rglob("*")):
            if path.is_file() and path.suffix != ".jsonl":
                zf.write(path, path.relative_to(MM_RLHF).as_posix())
    video = load_pairs("mm_rlhf", str(MM_RLHF_FILE), image_root=str(archive), options={"num_frames": 3})[2]
    assert video.videos == [[f"{archive}::video/GAF_aZe6HjU/c01_{i:04d}.jpeg" for i in (1, 2, 3)]]
    assert _decoded_sizes(video.videos[0]) == [(8, 8)] * 3


def test_mm_rlhf_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "dpo_pairs.jsonl"
    good = MM_RLHF_FILE.read_text().splitlines()[0]
    bad.write_text(
        good + "\n" + json.dumps({"id": "x", "video": "video/missing", "prompt": "Q", "chosen": "a", "rejected": "b"})
    )
    missing = load_pairs("mm_rlhf", str(bad))[1]  # the row reads (frames are listed when the pair is checked)...
    with pytest.raises(InvalidPair, match=r"video frame folder not found: .*video/missing") as e:
        check_pair(missing)  # ...and the check names the folder; its origin names the file and line
    assert e.value.reason == "image_missing" and missing.origin.endswith("dpo_pairs.jsonl: line 2")
    bad.write_text(json.dumps({"id": "x", "prompt": "Q", "chosen": "a"}) + "\n")
    with pytest.raises(DataError, match=r"dpo_pairs\.jsonl: line 1: .*KeyError: 'rejected'"):
        load_pairs("mm_rlhf", str(bad))


def test_hub_ids_and_configs():
    assert ADAPTERS["mmpr"].hub_id == "OpenGVLab/MMPR-v1.2"
    assert ADAPTERS["r1_reward"].hub_id == "yifanzhang114/R1-Reward-RL"
    assert ADAPTERS["mm_rlhf"].hub_id == "yifanzhang114/MM-RLHF"
    assert ADAPTERS["mm_rlhf"].hub_kwargs == {"data_files": "dpo_pairs.jsonl"}  # the pairs, not data.jsonl
    assert {ADAPTERS[n].modality for n in ("mmpr", "r1_reward", "mm_rlhf")} == {"multimodal"}


def test_r1_reward_rows_without_an_image_column_take_the_messages_paths(tmp_path):
    """The training format the R1-Reward README documents has `message`, `question`, `answer` and no `image` key."""
    import pandas as pd

    row = pd.read_parquet(R1_FILE).to_dict("records")[2]
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({k: (list(v) if k == "answer" else v) for k, v in row.items() if k != "image"}) + "\n")
    (pair,) = load_pairs("r1_reward", str(path), image_root=str(R1), options={"strip_prefix": R1_PREFIX})
    assert pair.images == [str(R1 / "RLAIF-V-image" / "cake.png")]
    assert (pair.chosen, pair.rejected) == ("The cake is orange.", "The cake is white.")
