"""Validation: planted bad rows are each counted under the right reason, good rows come through unchanged."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rmlab.cli import main
from rmlab.data.adapters import load_pairs
from rmlab.errors import DataError


def _png(colour, size=(56, 56)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _row(i, question="What colour is the shape?", chosen="red", rejected="blue", image=None):
    return {
        "ds_name": "planted",
        "image": image if image is not None else {"bytes": _png((200, 10 * i, 10)), "path": ""},
        "question": question,
        "chosen": chosen,
        "rejected": rejected,
        "origin_dataset": "test",
        "origin_split": "{}",
        "idx": f"row-{i}",
        "image_path": "",
    }


@pytest.fixture()
def planted(tmp_path):
    good = [_row(0), _row(1, chosen="green"), _row(2, question="How many?", chosen="2", rejected="3")]
    bad = [
        _row(3, chosen="  "),  # empty_field
        _row(4, question=""),  # empty_field
        _row(5, chosen="red", rejected="red"),  # identical
        _row(6, image={"bytes": b"certainly not a png", "path": ""}),  # image_undecodable
        _row(7, image={"bytes": _png((1, 2, 3), (300, 300)), "path": ""}),  # image_too_large (limit below)
        _row(8, image={"bytes": None, "path": "nowhere/missing.png"}),  # image_missing
        _row(9, question="describe everything " * 40),  # overlong
        dict(_row(0), idx="row-0-again"),  # duplicate of row 0
    ]
    path = tmp_path / "planted.parquet"
    # pyarrow, not `datasets`: datasets refuses to write an image whose path does not exist, which is the point here
    pq.write_table(pa.Table.from_pylist(good[:2] + bad[:4] + good[2:] + bad[4:]), path)
    return path, good


def test_validate_counts_each_planted_reason_and_keeps_good_rows(planted, capsys):
    path, good = planted
    rc = main(["data", "validate", "rlaif_v", str(path), "data_mix.max_length=64", "data_mix.max_image_pixels=40000"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == 11 and summary["pairs_read"] == 11
    assert summary["pairs_skipped"] == {
        "empty_field": 2,
        "identical": 1,
        "image_missing": 1,
        "image_undecodable": 1,
        "image_too_large": 1,
        "overlong": 1,
        "duplicate": 1,
    }
    assert summary["pairs_kept"] == 3
    assert summary["examples"]["duplicate"][0].startswith(f"{path}: row 11: the same pair is already at {path}: row 1")


def test_good_rows_come_through_unchanged(planted):
    from rmlab.data.validate import Validator

    path, good = planted
    validator = Validator(max_pixels=40000)
    kept = [p for p in load_pairs("rlaif_v", str(path)) if validator.keep(p)]
    assert [p.id for p in kept] == ["row-0", "row-1", "row-2", "row-9"]  # overlong needs the tokenizer: later
    for pair, row in zip(kept[:3], good, strict=True):
        assert pair.chosen == row["chosen"] and pair.rejected == row["rejected"]
        assert pair.prompt[0]["content"][-1]["text"] == row["question"]
        assert pair.images == [row["image"]["bytes"]]


def test_policy_fail_stops_at_the_first_bad_row_naming_file_and_row(planted, capsys):
    path, _ = planted
    assert main(["data", "validate", "rlaif_v", str(path), "--policy", "fail"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rmlab: error: {path}: row 3: empty_field: chosen is empty"


def test_a_row_outside_the_schema_is_counted_or_named(tmp_path, capsys):
    path = tmp_path / "uf.jsonl"
    rows = [
        {
            "instruction": "q",
            "completions": [{"response": "a", "overall_score": 9}, {"response": "b", "overall_score": 2}],
        },
        {"instruction": "q2"},  # no completions
        {
            "instruction": "q3",
            "completions": [{"response": "c", "overall_score": 8}, {"response": "d", "overall_score": 1}],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "validate", "ultrafeedback", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == 3 and summary["pairs_kept"] == 2 and summary["pairs_skipped"] == {"schema": 1}
    with pytest.raises(DataError, match=rf"{path}: line 2: does not match the ultrafeedback schema .*'completions'"):
        load_pairs("ultrafeedback", str(path))


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"instruction": "q", "completions": []}\n{"instruction": \n')
    with pytest.raises(DataError, match=rf"{path}: line 2: malformed JSON"):
        load_pairs("ultrafeedback", str(path))
