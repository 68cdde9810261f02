"""The synthetic testbed: real datasets' schemas, seeded, and the chosen answer really is the one the image shows."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from rmlab.data.adapters import load_pairs
from rmlab.data.records import open_image
from rmlab.testbed import COLOURS, SynthSpec, write_testbed

BACKGROUND = (245, 245, 245)


def test_multimodal_pairs_use_rlaif_v_parquet_schema(synth_dir):
    df = pd.read_parquet(synth_dir / "rlaif_v" / "train.parquet")
    assert list(df.columns) == [
        "ds_name",
        "image",
        "question",
        "chosen",
        "rejected",
        "origin_dataset",
        "origin_split",
        "idx",
        "image_path",
    ]
    assert set(df.iloc[0]["image"]) == {"bytes", "path"}
    assert json.loads(df.iloc[0]["origin_split"])["split"] == "train"


def test_text_pairs_use_raw_ultrafeedback_schema(synth_dir):
    row = json.loads((synth_dir / "ultrafeedback" / "train.jsonl").read_text().splitlines()[0])
    assert {"source", "instruction", "models", "completions", "correct_answers", "incorrect_answers"} <= set(row)
    c = row["completions"][0]
    assert {
        "model",
        "principle",
        "custom_system_prompt",
        "response",
        "annotations",
        "fine-grained_score",
        "overall_score",
        "critique",
    } <= set(c)
    assert set(c["annotations"]) == {"helpfulness", "honesty", "instruction_following", "truthfulness"}
    assert isinstance(c["annotations"]["honesty"]["Rating"], str)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    small = dict(mm_train=12, mm_test=4, text_train=8, text_test=4)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_testbed(tmp_path / name, SynthSpec(seed=seed, **small))
    read = lambda d: pd.read_parquet(tmp_path / d / "rlaif_v" / "train.parquet")  # noqa: E731
    assert read("a").equals(read("b"))
    assert not read("a").equals(read("c"))
    assert (tmp_path / "a/ultrafeedback/test.jsonl").read_bytes() == (
        tmp_path / "b/ultrafeedback/test.jsonl"
    ).read_bytes()


def test_held_out_split_is_not_the_train_split(synth_dir):
    train = {p.images[0] for p in load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet"))}
    test = [p.images[0] for p in load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "test.parquet"))]
    assert sum(b in train for b in test) / len(test) < 0.05


def _shape_pixels(pair):
    image = np.asarray(open_image(pair.images[0]))
    mask = np.any(np.abs(image.astype(int) - BACKGROUND) > 30, axis=-1)
    return image, mask


@pytest.mark.parametrize("task", ["colour", "count", "position"])
def test_the_chosen_answer_is_what_the_image_shows(synth_dir, task):
    pairs = [p for p in load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet")) if task in p.category]
    assert len(pairs) >= 20
    for p in pairs:
        assert p.chosen != p.rejected
        image, mask = _shape_pixels(p)
        if task == "colour":
            counts = Counter(map(tuple, image[mask]))
            assert counts.most_common(1)[0][0] == COLOURS[p.chosen]
        elif task == "count":
            h, w = mask.shape
            quadrants = [
                mask[: h // 2, : w // 2],
                mask[: h // 2, w // 2 :],
                mask[h // 2 :, : w // 2],
                mask[h // 2 :, w // 2 :],
            ]
            assert sum(q.any() for q in quadrants) == int(p.chosen)
        else:
            xs = np.nonzero(mask)[1]
            assert ("left" if xs.mean() < mask.shape[1] / 2 else "right") == p.chosen


def test_rejected_answers_are_plausible_hallucinations(synth_dir):
    """The rejected answer is another value of the same kind, so no answer is always right or always wrong."""
    pairs = load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet"))
    colour = [p for p in pairs if "colour" in p.category]
    assert {p.rejected for p in colour} <= set(COLOURS)
    assert {p.chosen for p in colour} & {p.rejected for p in colour}


@pytest.mark.parametrize(
    ("adapter", "files"), [("ultrafeedback", "ultrafeedback/{}.jsonl"), ("rlaif_v", "rlaif_v/{}.parquet")]
)
def test_every_split_holds_the_tasks_evenly_and_no_answer_only_shortcut_works(full_synth_dir, adapter, files):
    """The held-out split has the training split's task mix (a task whose examples ran out would leave the others
    to fill the test split), and no property of the two answers alone (larger number, longer answer, each answer's
    rate of being right in training) scores clear of chance on it."""
    from shortcuts import shortcut_accuracies

    train, test = (load_pairs(adapter, str(full_synth_dir / files.format(s))) for s in ("train", "test"))
    for split in (train, test):
        counts = Counter(p.category for p in split)
        assert len(counts) == 4 and max(counts.values()) == min(counts.values()), counts
    scores = shortcut_accuracies(train, test)
    assert max(scores.values()) <= 50.0 + 2 * 2.5, scores  # two standard errors of 400 pairs
