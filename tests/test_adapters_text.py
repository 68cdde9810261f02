"""Text-group adapters (shp, tulu3, olmo2, preference, arena): each fixture, written in the dataset's own on-disk
schema, loads into the expected pairs; malformed rows are errors that name the file and the row."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from rmlab.data.adapters import ADAPTERS, LoadReport, load_pairs
from rmlab.data.records import open_image
from rmlab.errors import DataError

DATA = Path(__file__).parent / "fixtures" / "data"
SHP = str(DATA / "shp" / "askculinary" / "train.jsonl")
TULU3 = str(DATA / "tulu3" / "data" / "train-00000-of-00001.parquet")
OLMO2 = str(DATA / "olmo2")  # a folder of parquet shards, as the hub repo's data/
PREF = str(DATA / "preference" / "mixed.jsonl")
PREF_IMAGES = str(DATA / "preference" / "rlaif_v")
ARENA = str(DATA / "arena" / "data" / "train-00000-of-00001.parquet")


def test_registered_with_hub_ids():
    assert ADAPTERS["shp"].hub_id == "stanfordnlp/SHP"
    assert ADAPTERS["tulu3"].hub_id == "allenai/llama-3.1-tulu-3-8b-preference-mixture"
    assert ADAPTERS["olmo2"].hub_id == "allenai/olmo-2-1124-7b-preference-mix"
    assert ADAPTERS["arena"].hub_id == "lmsys/chatbot_arena_conversations"
    assert ADAPTERS["preference"].hub_id is None
    assert all(ADAPTERS[n].modality == "text" for n in ("shp", "tulu3", "olmo2", "preference", "arena"))


# ------------------------------------------------------------------------------------------------ shp


def test_shp_pairs():
    pairs = load_pairs("shp", SHP)
    assert len(pairs) == 3
    a_wins, b_wins = pairs[0], pairs[1]
    question = "How do I keep a roux from going lumpy? I whisk constantly but still get clumps."
    assert a_wins.id == "qt9abc-hk1aaaa-hk1bbbb"
    assert a_wins.prompt == [{"role": "user", "content": question}]
    assert a_wins.chosen == "Add the liquid warm and a little at a time."
    assert a_wins.rejected == "Just buy the jarred stuff."
    assert a_wins.images == [] and a_wins.videos == []
    assert (a_wins.source, a_wins.category) == ("shp", "askculinary")
    assert (a_wins.chosen_score, a_wins.rejected_score) == (120.0, 30.0)
    assert a_wins.margin == pytest.approx(math.log(4.0))
    assert a_wins.meta["domain"] == "askculinary_train" and a_wins.meta["score_ratio"] == 4.0
    assert a_wins.origin == f"{SHP}: line 1"
    # labels = 0: B is the preferred comment
    assert b_wins.chosen == "Add the liquid warm and a little at a time." and b_wins.rejected == "Use a fork."
    assert (b_wins.chosen_score, b_wins.rejected_score) == (120.0, 20.0)


def test_shp_min_score_ratio():
    pairs = load_pairs("shp", SHP, options={"min_score_ratio": 2.0})
    assert [p.id for p in pairs] == ["qt9abc-hk1aaaa-hk1bbbb", "qt9abc-hk1cccc-hk1aaaa"]


# ------------------------------------------------------------------------------------------------ tulu3 / olmo2


def test_tulu3_pairs():
    single, multi = load_pairs("tulu3", TULU3)
    assert single.id == "allenai/tulu-3-sft-reused-on-policy-8b_0"
    assert single.prompt == [{"role": "user", "content": "Write a haiku about rain."}]
    assert single.chosen.startswith("Soft rain on the roof") and single.rejected == "Rain is wet. It falls."
    assert (single.source, single.category) == ("tulu3", "allenai/tulu-3-sft-reused-on-policy-8b")
    assert single.images == [] and single.margin is None and single.chosen_score is None
    assert single.origin == f"{TULU3}: row 1"
    # multi-turn stays multi-turn, the system turn included
    assert [m["role"] for m in multi.prompt] == ["system", "user", "assistant", "user"]
    assert multi.prompt[-1]["content"] == "And in French?"
    assert (multi.chosen, multi.rejected) == ("Merci.", "Danke.")
    assert multi.category == "allenai/tulu-3-wildchat-reused-on-policy-8b"


def test_olmo2_pairs():
    rated, half_rated = load_pairs("olmo2", OLMO2)
    assert rated.id == "sft_p0_42"
    assert rated.prompt == [{"role": "user", "content": "Name a prime number greater than 10."}]
    assert (rated.chosen, rated.rejected) == ("11", "12")
    assert (rated.source, rated.category) == ("olmo2", "ai2-adapt-dev/sft_v3.9_used_on_policy_p0_olmo2_7b")
    assert (rated.chosen_score, rated.rejected_score, rated.margin) == (5.0, 1.5, 3.5)
    assert rated.meta == {"chosen_model": "olmo-2-1124-7b", "rejected_model": "tulu-2-7b"}
    assert half_rated.chosen_score == 4.25 and half_rated.rejected_score is None and half_rated.margin is None


# ------------------------------------------------------------------------------------------------ preference


def test_preference_variants_detected_per_row():
    std_explicit, std_implicit, conv_explicit, conv_implicit = load_pairs("preference", PREF)
    assert [p.meta["variant"] for p in (std_explicit, std_implicit, conv_explicit, conv_implicit)] == [
        "standard_explicit",
        "standard_implicit",
        "conversational_explicit",
        "conversational_implicit",
    ]
    for p in (std_explicit, std_implicit):  # TRL's own example, both ways: the same pair
        assert p.prompt == [{"role": "user", "content": "The sky is"}]
        assert (p.chosen, p.rejected) == (" blue.", " green.")
    assert std_explicit.id == "mixed-0" and std_explicit.origin == f"{PREF}: line 1"
    assert conv_explicit.id == "conv-explicit-1"
    assert conv_explicit.prompt == [{"role": "user", "content": "What color is the sky?"}]
    assert (conv_explicit.chosen, conv_explicit.rejected) == ("It is blue.", "It is green.")
    assert (conv_explicit.chosen_score, conv_explicit.rejected_score, conv_explicit.margin) == (8.0, 3.5, 4.5)
    assert conv_explicit.source == "preference" and conv_explicit.category == ""
    assert [m["content"] for m in conv_implicit.prompt] == ["What color is the sky?", "It is blue.", "And at night?"]
    assert (conv_implicit.chosen, conv_implicit.rejected) == ("Dark blue to black.", "Green.")


def test_preference_category_field_option():
    pairs = load_pairs("preference", PREF, options={"category_field": "source"})
    assert [p.category for p in pairs] == ["", "", "wildchat", ""]


def test_preference_images_in_place():
    one, two = load_pairs("preference", PREF_IMAGES)
    assert one.prompt == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    assert (one.chosen, one.rejected) == ("A red square.", "A blue circle.")
    assert len(one.images) == 1 and open_image(one.images[0]).getpixel((0, 0)) == (255, 0, 0)
    assert [p["type"] for p in two.prompt[0]["content"]] == ["text", "image", "text", "image"]
    assert [open_image(i).size for i in two.images] == [(4, 3), (3, 3)]
    assert two.id == "rlaif_v-1"


def test_preference_images_by_relative_path_and_placeholder(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (2, 2), (0, 255, 0)).save(tmp_path / "imgs" / "a.png")
    row = {"prompt": "Look: <image> What color?", "chosen": "Green.", "rejected": "Red.", "images": ["imgs/a.png"]}
    conv = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What color?"}],
        "chosen": [{"role": "assistant", "content": "Green."}],
        "rejected": [{"role": "assistant", "content": "Red."}],
        "image": "imgs/a.png",
    }
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(conv) + "\n")
    std, chat = load_pairs("preference", str(path))
    assert std.prompt == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look: "},
                {"type": "image"},
                {"type": "text", "text": " What color?"},
            ],
        }
    ]
    assert std.images == [str(tmp_path / "imgs" / "a.png")]
    assert open_image(std.images[0]).getpixel((0, 0)) == (0, 255, 0)
    # no image part in the prompt: the image goes before the first user message's text (TRL's rule)
    assert chat.prompt[1] == {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]}
    assert chat.prompt[0] == {"role": "system", "content": "Be brief."}


# ------------------------------------------------------------------------------------------------ arena


def test_arena_pairs_skip_ties_and_multi_turn_by_default():
    (pair,) = load_pairs("arena", ARENA)
    assert pair.id == "58210e39b3fd4441a2bd4a518bb44c2d"
    assert pair.prompt == [{"role": "user", "content": "What is 2+2?"}]
    assert (pair.chosen, pair.rejected) == ("2+2 is 4.", "5, probably.")
    assert (pair.source, pair.category) == ("arena", "")
    assert pair.images == [] and pair.margin is None and pair.chosen_score is None
    assert pair.meta["chosen_model"] == "vicuna-13b" and pair.meta["rejected_model"] == "koala-13b"
    assert pair.meta["winner"] == "model_a" and pair.meta["tie"] is False and pair.meta["language"] == "English"
    assert pair.origin == f"{ARENA}: row 1"


def test_arena_options_keep_ties_and_first_turn():
    pairs = load_pairs("arena", ARENA, options={"keep_ties": True, "multi_turn": "first_turn"})
    assert [p.meta["winner"] for p in pairs] == ["model_a", "model_b", "tie", "tie (bothbad)"]
    multi = pairs[1]  # model_b won a two-turn battle: its first reply against model_a's
    assert multi.prompt == [{"role": "user", "content": "Say hi."}]
    assert (multi.chosen, multi.rejected) == ("Hi there.", "Hello!")
    assert multi.meta["chosen_model"] == "alpaca-13b"
    tie = pairs[2]
    assert tie.meta["tie"] is True and tie.margin == 0.0
    assert (tie.chosen, tie.rejected) == ("Paris.", "It is Paris.")
    assert pairs[3].meta["moderation_flagged"] is True


def test_arena_bad_option_names_the_choices():
    with pytest.raises(DataError, match="multi_turn='last'; expected one of skip, first_turn"):
        load_pairs("arena", ARENA, options={"multi_turn": "last"})


# ------------------------------------------------------------------------------------------------ malformed rows


def test_malformed_jsonl_row_names_file_and_line(tmp_path):
    rows = [json.loads(line) for line in Path(SHP).read_text().splitlines()]
    rows[1]["labels"] = 2
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataError, match=rf"{re.escape(str(path))}: line 2: does not match the shp schema .*labels is 2"
    ):
        load_pairs("shp", str(path))
    report = LoadReport()
    assert len(load_pairs("shp", str(path), policy="skip", report=report)) == 2
    assert report.rejected["schema"] == 1

    mixed = tmp_path / "pref.jsonl"
    mixed.write_text(json.dumps({"prompt": "Hi", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}))
    with pytest.raises(DataError, match=rf"{re.escape(str(mixed))}: line 1: .*chosen is str and rejected list"):
        load_pairs("preference", str(mixed))


def test_malformed_parquet_row_names_file_and_row(tmp_path):
    import datasets

    rows = datasets.Dataset.from_parquet(TULU3).to_list()
    rows[1]["rejected"] = rows[1]["rejected"][:-1]  # now ends with the user's turn
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(
        DataError, match=rf"{re.escape(str(path))}: row 2: does not match the tulu3 schema .*not the assistant's"
    ):
        load_pairs("tulu3", str(path))

    battles = datasets.Dataset.from_parquet(ARENA).to_list()
    battles[0]["winner"] = "model_c"
    path = tmp_path / "arena.parquet"
    datasets.Dataset.from_list(battles).to_parquet(str(path))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: row 1: .*winner is 'model_c'"):
        load_pairs("arena", str(path))


def test_a_line_that_is_not_json_is_a_counted_fault_under_skip_and_a_file_line_error_under_fail(tmp_path):
    lines = Path(SHP).read_text().splitlines()
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([lines[0], '{"history": "cut off', *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: line 2: malformed JSON"):
        load_pairs("shp", str(path))
    report = LoadReport()
    assert len(load_pairs("shp", str(path), policy="skip", report=report)) == len(lines)  # the rest all read
    assert report.rejected == {"malformed_json": 1} and report.rows == len(lines) + 1


def test_ultrafeedback_completions_without_scores_are_a_counted_fault_not_a_silent_empty_file(tmp_path):
    row = {"instruction": "Say hi.", "source": "x", "completions": [{"response": "hi"}, {"response": "hello"}]}
    path = tmp_path / "uf.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"line 1: .*2 of 2 completions have no overall_score"):
        load_pairs("ultrafeedback", str(path))
    report = LoadReport()
    assert load_pairs("ultrafeedback", str(path), policy="skip", report=report) == []
    assert report.rejected == {"schema": 1}
