"""Streamed mixes: pairs read as training needs them, drawn by weight, and a resumed run equal to a straight one."""

import json

import pytest
import torch
from conftest import SMALL_SYNTH, interrupt_after_checkpoint

from rmlab.config.compose import compose
from rmlab.data.encode import PairEncoder
from rmlab.data.mix import resolve_sources
from rmlab.data.stream import PairStream
from rmlab.data.validate import Validator
from rmlab.launch.job import run_config
from rmlab.models.families import build_tiny
from rmlab.models.reward_model import load_reward_model


def _stream(synth_dir, weights, buffer=16):
    cfg = compose(
        [
            "data_mix=synth_all",
            f"data_mix.synth.dir={synth_dir}",
            *(f"data_mix.train.{i}.weight={w}" for i, w in enumerate(weights)),
        ]
    )
    _, processor = build_tiny("qwen2_5_vl")
    validator = Validator(dedupe=False)
    sources = resolve_sources(cfg.data_mix.train, cfg.datasets)
    return PairStream(sources, PairEncoder(processor, 512), validator, seed=0, buffer_size=buffer), validator


def test_sources_are_drawn_by_weight(synth_dir):
    stream, _ = _stream(synth_dir, [3.0, 1.0])
    served = stream.take(400)
    shapes = sum(p.source == "synth_shapes" for p in served)
    # binomial(400, 0.75): mean 300, std 8.7; the seed makes it exact, four std of room keeps the intent honest
    assert abs(shapes - 300) < 35
    assert dict(stream.served) == {"synth_shapes": shapes, "synth_text": 400 - shapes}


def test_a_stream_reads_only_as_far_as_it_is_consumed_and_wraps_around(synth_dir):
    stream, validator = _stream(synth_dir, [1.0, 1.0], buffer=8)
    stream.take(10)
    assert validator.report.rows <= 8 + 10  # the buffer plus what was taken: nothing read ahead
    n = SMALL_SYNTH["mm_train"] + SMALL_SYNTH["text_train"]
    stream.take(2 * n)  # past the end of both sources: each is reopened for its next epoch
    assert stream.epochs["synth_shapes"] >= 1 and stream.epochs["synth_text"] >= 1


def test_a_zero_weight_mix_is_refused(synth_dir):
    from rmlab.errors import DataError

    with pytest.raises(DataError, match="every source of the streamed mix has weight 0"):
        _stream(synth_dir, [0.0, 0.0])


STREAMED = [
    "data_mix=synth_all",
    "data_mix.streaming=true",
    "data_mix.val_pairs=8",
    "train.max_steps=10",
    "run.save_every=4",
    "train.batch_size=4",
    "tracking=disabled",
    "head.dropout=0.1",
]


def test_a_streamed_run_trains_logs_its_composition_and_resumes_to_the_same_weights(workdir, tmp_path, monkeypatch):
    straight = run_config(compose([*workdir, *STREAMED]))
    summary = json.loads((straight.path / "summary.json").read_text())
    assert sum(summary["data/composition"].values()) == 10 * 4  # every pair trained on, counted by source
    assert set(summary["data/composition"]) == {"synth_shapes", "synth_text"}

    other = [o.replace(str(tmp_path / "runs"), str(tmp_path / "runs2")) for o in workdir]
    cfg = compose([*other, *STREAMED])
    restore = interrupt_after_checkpoint(monkeypatch, step=8)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg)
    restore()
    resumed = run_config(cfg)  # replays the stream to step 8, then trains steps 9-10 on the same pairs
    resumed_summary = json.loads((resumed.path / "summary.json").read_text())
    assert resumed_summary["data/composition"] == summary["data/composition"]
    a, _ = load_reward_model(straight.model)
    b, _ = load_reward_model(resumed.model)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
