"""The two adapters the synthetic testbed writes through: RLAIF-V and UltraFeedback (Ultra-All, Ultra-Hard)."""

import json
from pathlib import Path

import pytest

from rmlab.data.adapters import ADAPTERS, load_pairs
from rmlab.data.records import open_image

FIXTURES = Path(__file__).parent / "fixtures" / "data"
RLAIF_V = FIXTURES / "rlaif_v" / "RLAIF-V-Dataset_000.parquet"
ULTRA = FIXTURES / "ultrafeedback" / "evol_instruct.jsonl"


def test_rlaif_v_rows_become_pairs_field_by_field():
    pairs = load_pairs("rlaif_v", str(RLAIF_V))
    assert len(pairs) == 3
    p = pairs[0]
    assert p.id == "OmniLMM-12B_COCO_0"
    assert p.prompt == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What is the colour of the ball in the picture?"}],
        }
    ]
    assert p.chosen == "The ball in the picture is red."
    assert p.rejected == "The ball in the picture is blue and has white stripes."
    assert p.source == "rlaif_v" and p.category == "RLAIF-V"
    assert len(p.images) == 1 and open_image(p.images[0]).getpixel((16, 16)) == (220, 30, 30)
    assert p.origin == f"{RLAIF_V}: row 1"
    assert ADAPTERS["rlaif_v"].hub_id == "openbmb/RLAIF-V-Dataset"


def test_ultra_all_pairs_every_completion_with_a_different_score():
    pairs = load_pairs("ultrafeedback", str(ULTRA))
    first = [p for p in pairs if p.category == "evol_instruct"]
    second = [p for p in pairs if p.category == "flan_v2_niv2"]
    assert len(first) == 6  # 4 completions, 4 distinct scores: all 6 pairs
    assert len(second) == 5  # two completions share 8.5: that pair is not a preference
    p = first[0]
    assert p.prompt == [{"role": "user", "content": "Name three primary colours."}]
    assert (p.chosen, p.rejected) == ("Red, yellow and blue.", "Red, blue and green are the primary colours of light.")
    assert (p.chosen_score, p.rejected_score, p.margin) == (9.0, 7.0, 2.0)
    assert p.source == "ultrafeedback" and p.images == []
    assert all(q.chosen_score > q.rejected_score for q in pairs)


def test_ultra_hard_keeps_only_the_largest_gaps():
    pairs = load_pairs("ultrafeedback_hard", str(ULTRA))
    assert sorted((p.chosen_score, p.rejected_score) for p in pairs) == [
        (6.0, 1.0),
        (7.0, 2.0),
        (8.5, 1.0),
        (8.5, 1.0),
        (9.0, 2.0),
        (9.0, 4.0),
    ]
    stricter = load_pairs("ultrafeedback_hard", str(ULTRA), options={"min_gap": 7})
    assert sorted(p.margin for p in stricter) == [7.0, 7.5, 7.5]


def test_ultrafeedback_schema_matches_the_synthetic_testbed(synth_dir):
    """The synthetic text pairs are written through the same schema the adapter reads."""
    real = json.loads(ULTRA.read_text().splitlines()[0])
    synth = json.loads((synth_dir / "ultrafeedback" / "train.jsonl").read_text().splitlines()[0])
    assert set(real) <= set(synth)
    assert set(real["completions"][0]) == set(synth["completions"][0])


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_adapter_documents_its_schema_and_has_a_fixture(name):
    spec = ADAPTERS[name]
    assert spec.schema and spec.modality in ("multimodal", "text")
    fixture = "ultrafeedback" if name == "ultrafeedback_hard" else name
    assert (FIXTURES / fixture).is_dir(), f"no fixture folder tests/fixtures/data/{fixture}"


def test_a_json_file_holds_a_list_of_rows_an_object_holding_them_or_one_row(tmp_path):
    row = {"prompt": "Which is larger, 3 or 4?", "chosen": "4", "rejected": "3", "tags": ["math", "easy"]}
    forms = {
        "list.json": [row, {**row, "chosen": "four"}],
        "held.json": {"version": 2, "data": [row, {**row, "chosen": "four"}]},
        "only_key.json": {"anything": [row, {**row, "chosen": "four"}]},
        "lone.json": row,  # one row alone, though it has a list-valued field (POVID's README shows an element so)
    }
    for name, content in forms.items():
        (tmp_path / name).write_text(json.dumps(content))
        pairs = load_pairs("preference", str(tmp_path / name))
        assert [p.chosen for p in pairs] == (["4"] if name == "lone.json" else ["4", "four"]), name
