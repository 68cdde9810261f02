"""Streamed mixes: sources drawn by size and weight, each pair read by exactly one process (ranks x loader workers),
and a resumed stream (or run) equal to a straight one without reading what it had consumed."""

import json
import math
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import interrupt_after_checkpoint

from rmlab.config.compose import compose
from rmlab.data import stream as stream_module
from rmlab.data.adapters import get_adapter
from rmlab.data.encode import PairEncoder
from rmlab.data.loader import StreamLoader
from rmlab.data.mix import Source
from rmlab.data.readers import WHOLE, HubReader, Share, open_reader
from rmlab.data.stream import ShareStream, draw_weights
from rmlab.data.validate import Validator
from rmlab.errors import DataError
from rmlab.launch.job import run_config
from rmlab.models.families import build_tiny
from rmlab.models.reward_model import load_reward_model


@pytest.fixture(scope="module")
def encoder():
    return PairEncoder(build_tiny("qwen2_5_vl")[1], 512)


@pytest.fixture(scope="module")
def sources(synth_dir, tmp_path_factory):
    """The testbed's 240 multimodal rows as a folder of 3 parquet shards (rows groups of 20: 12 groups), and 80 of
    its text rows as jsonl: sizes 240 and 80."""
    folder = tmp_path_factory.mktemp("shards")
    table = pq.read_table(synth_dir / "rlaif_v" / "train.parquet")
    for i in range(3):
        pq.write_table(table.slice(80 * i, 80), folder / f"part-{i:03d}.parquet", row_group_size=20)
    lines = (synth_dir / "ultrafeedback" / "train.jsonl").read_text().splitlines(keepends=True)
    text = tmp_path_factory.mktemp("text") / "train.jsonl"
    text.write_text("".join(lines[:80]))
    return [Source("shapes", "rlaif_v", str(folder)), Source("text", "ultrafeedback", str(text))]


def _stream(sources, encoder, share=WHOLE, weighting="size", passes=None, window=16, seed=0):
    return ShareStream(
        sources, encoder, Validator(dedupe=False), seed, window, draw_weights(sources, weighting), share, passes=passes
    )


def test_a_share_of_a_source_reads_its_own_rows_and_every_share_together_read_each_row_once(sources, synth_dir):
    spec = get_adapter("rlaif_v")
    whole = [i for i, _ in open_reader(sources[0].path, spec).rows()]
    assert whole == list(range(240))
    for count in (4, 24):  # 12 row groups: whole groups per share (4), or every 24th row (24 > 12 groups)
        parts = [[i for i, _ in open_reader(sources[0].path, spec, Share(k, count)).rows()] for k in range(count)]
        assert sorted(i for part in parts for i in part) == whole
    # a position taken mid-way starts exactly there, in a jsonl file and in parquet shards
    for path in (sources[1].path, sources[0].path):
        reader = open_reader(path, get_adapter("ultrafeedback" if path.endswith("jsonl") else "rlaif_v"), Share(1, 3))
        rows = reader.rows()
        head = [next(rows)[0] for _ in range(5)]
        at = json.loads(json.dumps(reader.position()))
        rest = [i for i, _ in open_reader(path, reader_spec(path), Share(1, 3)).rows(at)]
        assert head + rest == [i for i, _ in open_reader(path, reader_spec(path), Share(1, 3)).rows()]
    # parquet rows read by pyarrow are the rows `datasets` gives (images left encoded)
    from rmlab.data.adapters.base import read_rows

    one = synth_dir / "rlaif_v" / "train.parquet"
    mine = [row for _, row in open_reader(str(one), spec).rows()]
    import datasets

    theirs = list(datasets.Dataset.from_parquet(str(one)).cast_column("image", datasets.Image(decode=False)))
    assert mine == theirs and [r for _, r in read_rows(str(one), spec)] == mine


def reader_spec(path):
    return get_adapter("ultrafeedback" if path.endswith("jsonl") else "rlaif_v")


def test_hub_streams_are_split_by_node_and_resume_from_their_state(sources):
    """The hub path (datasets streaming + split_dataset_by_node + the IterableDataset's state), run on local parquet
    shards through the `parquet` builder: no network."""
    files = sorted(str(p) for p in Path(sources[0].path).glob("*.parquet"))
    kwargs = {"data_files": files}
    ids = lambda rows: [row["question"] for _, row in rows]  # noqa: E731
    whole = ids(HubReader("parquet", Share(), kwargs).rows())
    parts = [ids(HubReader("parquet", Share(k, 2), kwargs).rows()) for k in range(2)]
    assert Counter(parts[0] + parts[1]) == Counter(whole) and len(whole) == 240
    reader = HubReader("parquet", Share(1, 2), kwargs)
    rows = reader.rows()
    head = [next(rows)[1]["question"] for _ in range(7)]
    at = json.loads(json.dumps(reader.position()))
    assert head + ids(HubReader("parquet", Share(1, 2), kwargs).rows(at)) == parts[1]
    assert ids(reader.rows()) == parts[1]  # the next epoch reads the share again (not the loaded state's end)

    # through the loader's worker processes (where `datasets` would split a plain iteration again by worker), as a
    # registered adapter whose hub dataset is those shards
    from rmlab.data.adapters import ADAPTERS, adapter
    from rmlab.data.adapters.rlaif_v import rlaif_v

    if "test_hub_rlaif_v" not in ADAPTERS:
        adapter("test_hub_rlaif_v", hub_id="parquet", modality="multimodal", schema="rlaif_v", data_files=files)(
            rlaif_v
        )
    hub = [Source("hub", "test_hub_rlaif_v", "hub", size=240)]
    encoder = PairEncoder(build_tiny("qwen2_5_vl")[1], 512)
    one = Counter(p.id for p in _one_pass(hub, encoder, 0, 1, 0))
    ranks = [_one_pass(hub, encoder, r, 2, 2) for r in range(2)]
    assert sum(one.values()) == 240 and Counter(p.id for p in ranks[0] + ranks[1]) == one


def test_sources_are_drawn_by_size_times_weight_or_by_weight_alone(sources, encoder):
    n = 600
    for weighting, expected in (("size", 240 / 320), ("uniform", 0.5)):
        stream = _stream(sources, encoder, weighting=weighting)
        served = [next(stream).source for _ in range(n)]
        shapes = served.count("shapes")
        # binomial(n, p): four standard deviations of room (the seed makes it exact; the bound keeps it honest)
        assert abs(shapes - n * expected) < 4 * math.sqrt(n * expected * (1 - expected)), (weighting, shapes)
        assert dict(stream.served) == {"shapes": shapes, "text": n - shapes}
    weighted = [Source(s.name, s.adapter, s.path, weight=w) for s, w in zip(sources, (1.0, 3.0), strict=True)]
    assert draw_weights(weighted, "size") == {"shapes": 240.0, "text": 240.0}  # weights multiply the sizes


def test_a_stream_runs_the_adapter_only_on_rows_it_serves_and_wraps_around(sources, encoder):
    stream = _stream(sources, encoder, window=8)
    stream_pairs = [next(stream) for _ in range(10)]
    report = stream.validator.report
    assert report.rows == 10 + sum(report.rejected.values())  # one pair per row: nothing parsed ahead
    assert len({p.id for p in stream_pairs}) == 10
    for _ in range(400):  # past the end of the 80 text rows: that source is reopened for its next epoch
        next(stream)
    assert stream.cursors["text"].epoch >= 1


def test_a_zero_weight_mix_is_refused(sources, encoder):
    zero = [Source(s.name, s.adapter, s.path, weight=0.0) for s in sources]
    with pytest.raises(DataError, match="every source of the streamed mix has weight 0"):
        _stream(zero, encoder)


def _one_pass(sources, encoder, rank, world, workers):
    def make_stream(share):
        return _stream(sources, encoder, share=share, passes=1)

    loader = StreamLoader(make_stream, rank, world, workers, size=4)
    return [p for batch in loader for p in batch]


def _same_encoding(a, b) -> bool:
    same_ids = (a.prompt_ids, a.chosen_ids, a.rejected_ids) == (b.prompt_ids, b.chosen_ids, b.rejected_ids)
    return (
        same_ids and a.vision.keys() == b.vision.keys() and all(torch.equal(a.vision[k], b.vision[k]) for k in a.vision)
    )


def test_two_ranks_with_two_loader_workers_each_read_exactly_what_one_process_reads(sources, synth_dir, encoder):
    testbed = [
        Source("shapes", "rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet")),
        Source("text", "ultrafeedback", str(synth_dir / "ultrafeedback" / "train.jsonl")),
    ]
    for mix in (testbed, sources):  # one parquet file + jsonl; a folder of parquet shards + jsonl
        single = _one_pass(mix, encoder, 0, 1, 0)
        alone, one = {p.id: p for p in single}, Counter(p.id for p in single)
        assert sum(one.values()) == (320 if mix is sources else 480) == len(alone)
        ranks = [_one_pass(mix, encoder, r, 2, 2) for r in range(2)]
        assert not {p.id for p in ranks[0]} & {p.id for p in ranks[1]}
        assert Counter(p.id for p in ranks[0] + ranks[1]) == one  # no pair twice, none lost
        # and each arrives from its loader process as it was encoded (image tensors packed in shared memory)
        assert all(_same_encoding(p, alone[p.id]) for p in ranks[0] + ranks[1])


def _take(loader, n):
    return [[p.id for p in next(loader)] for _ in range(n)]


def test_a_resumed_loader_serves_what_an_uninterrupted_one_does_and_reads_nothing_it_had_consumed(
    sources, encoder, monkeypatch
):
    made: list[str] = []
    real = stream_module.make_pairs

    def counting(spec, row, ctx, policy, report):
        pairs = real(spec, row, ctx, policy, report)
        made.extend(p.id for p in pairs)
        return pairs

    monkeypatch.setattr(stream_module, "make_pairs", counting)

    def loader():
        return StreamLoader(lambda share: _stream(sources, encoder, share=share, window=16), 0, 1, 2, size=4)

    straight = _take(loader(), 30)
    first = loader()
    before = _take(first, 13)  # an odd number of micro-batches: the other worker is due next
    state = json.loads(json.dumps(first.state_dict()))
    first.close()
    made.clear()
    resumed = loader()
    assert resumed.load_state_dict(state)
    after = _take(resumed, 17)
    assert before + after == straight  # the same pairs, in the same order
    consumed = {i for batch in before for i in batch}
    assert not consumed & set(made)  # no consumed pair made (let alone decoded or encoded) again
    # a state saved with another layout of loader processes is refused (the caller replays instead)
    assert not StreamLoader(lambda share: None, 0, 1, 3, size=4).load_state_dict(state)


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


def test_a_streamed_run_trains_logs_its_composition_and_resumes_from_loader_state_to_the_same_weights(
    workdir, tmp_path, monkeypatch, capsys
):
    straight = run_config(compose([*workdir, *STREAMED]))
    summary = json.loads((straight.path / "summary.json").read_text())
    assert sum(summary["data/composition"].values()) == 10 * 4  # every pair trained on, counted by source
    assert set(summary["data/composition"]) == {"synth_shapes", "synth_text"}
    shares = summary["data/validation"]["skipped_share"]  # per source: what its checks and max_length left out
    assert set(shares) == {"synth_shapes", "synth_text"} and all(0 <= v < 1 for v in shares.values())

    other = [o.replace(str(tmp_path / "runs"), str(tmp_path / "runs2")) for o in workdir]
    cfg = compose([*other, *STREAMED])
    restore = interrupt_after_checkpoint(monkeypatch, step=8)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg)
    restore()
    checkpoint = max((tmp_path / "runs2").glob("*/*/checkpoints/step_*"))
    state = json.loads((checkpoint / "data_rank0.json").read_text())
    assert state["taken"] == 8 and set(state["streams"]) == {"0", "1"}  # two loader workers' positions
    capsys.readouterr()
    resumed = run_config(cfg)  # the loader continues from its state: steps 9-10 on the same pairs
    assert "replaying" not in capsys.readouterr().out
    resumed_summary = json.loads((resumed.path / "summary.json").read_text())
    assert resumed_summary["data/composition"] == summary["data/composition"]
    a, _ = load_reward_model(straight.model)
    b, _ = load_reward_model(resumed.model)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_a_malformed_line_in_a_streamed_source_is_counted_and_the_stream_goes_on(sources, encoder, tmp_path):
    lines = Path(sources[1].path).read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join([lines[0], "{not json\n", *lines[1:]]))
    stream = _stream([Source("text", "ultrafeedback", str(broken))], encoder, window=4)
    served = [next(stream) for _ in range(len(lines) + 5)]  # through the bad line and into the next epoch
    assert len(served) == len(lines) + 5 and stream.validator.report.rejected["malformed_json"] >= 1
    assert "line 2: malformed JSON" in stream.validator.summary()["examples"]["malformed_json"][0]


def test_a_source_smaller_than_the_shares_is_left_out_of_the_shares_without_its_rows(sources, encoder, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(Path(sources[1].path).read_text().splitlines(keepends=True)[0])
    mix = [Source("one", "ultrafeedback", str(one)), sources[1]]
    streams = [_stream(mix, encoder, share=Share(k, 2), weighting="uniform") for k in range(2)]
    served = [[next(s).source for _ in range(30)] for s in streams]
    assert "one" in served[0] and "one" not in served[1] and streams[1].empty == {"one"}
    resumed = _stream(mix, encoder, share=Share(1, 2), weighting="uniform")
    resumed.load_state_dict(json.loads(json.dumps(streams[1].state_dict())))
    assert [next(resumed).id for _ in range(5)] == [next(streams[1]).id for _ in range(5)]
    with pytest.raises(DataError, match="fewer rows than there are loader processes"):
        next(_stream(mix[:1], encoder, share=Share(1, 2)))


def test_a_judges_items_cross_from_a_loader_process_with_their_images(synth_dir):
    """Items whose images sit in their parts (a GRM judge item's two orders) travel packed like pairs."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from rmlab.data.adapters import load_pairs
    from rmlab.data.loader import MicroBatch
    from rmlab.paradigms import get_paradigm

    cfg = compose(["paradigm=grm", "tracking=disabled"])
    grm = get_paradigm("grm")
    encoder = grm.encoder(build_tiny("qwen2_5_vl")[1], cfg)
    items = [encoder.encode(p) for p in load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet"), limit=3)]
    sent = MicroBatch(items, 0, {})
    got = pickle.loads(ForkingPickler.dumps(sent))
    for a, b in zip(items, got.pairs, strict=True):
        for x, y in zip(a.orders, b.orders, strict=True):
            assert x.vision and x.vision.keys() == y.vision.keys()
            assert all(torch.equal(x.vision[k], y.vision[k]) for k in x.vision) and x.prompt_ids == y.prompt_ids
    assert all(o.vision for item in items for o in item.orders)  # the sender's items keep their tensors
