"""Data throughput of a streamed mix: encoded multimodal pairs per second with 2 loader workers against none, and the
cost of resuming at step 5,000 from the loader's saved state against replaying the stream to it.

- Throughput: the synthetic testbed's multimodal pairs (PNG images of `--image-size` pixels a side) read, checked,
  decoded and encoded through the tiny Qwen2.5-VL processor by `rmlab.data.loader.StreamLoader`, micro-batches of 8,
  as a training rank reads them, with `workers=0` (everything in this process) and `workers=2`, in alternating rounds
  after an untimed warm-up; the ratio of the median rates is reported. Nothing trains: the consumer only takes the
  micro-batches, so the ratio is the loader's, and it is bounded by the cores there are (2 here).
- Resume: a stream of one pair per step (workers=0 for both sides), resumed at step `--resume-step` by
  `StreamedPairs.start` from the state a checkpoint holds, and by its fallback, replaying the stream; each side timed
  from nothing built to the first micro-batch after the resume point.

Why ratios: absolute rates depend on the machine and how busy it is; both sides are measured in the same run.
Run from the repo root: `python bench/data_throughput.py [--pairs 240 --rounds 3 --resume-step 5000]`.
The last line is exactly `data: workers 2/0 = X.XXx, resume state/replay = Y.Yx`.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from rmlab.data.encode import PairEncoder  # noqa: E402
from rmlab.data.loader import StreamLoader  # noqa: E402
from rmlab.data.mix import Source  # noqa: E402
from rmlab.data.stream import ShareStream, draw_weights  # noqa: E402
from rmlab.data.validate import Validator  # noqa: E402
from rmlab.models.families import build_tiny  # noqa: E402
from rmlab.testbed import SynthSpec, write_testbed  # noqa: E402
from rmlab.train.batches import StreamedPairs  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=240, help="pairs per timed throughput round (default 240, <= 400)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (default 3)")
    p.add_argument("--image-size", type=int, default=448, help="side of the testbed's images in pixels (default 448)")
    p.add_argument("--resume-step", type=int, default=5000, help="step the resumed stream starts at (default 5000)")
    return p.parse_args()


def _testbed(folder: Path, side: int) -> list[Source]:
    """The testbed's multimodal training pairs, images `side` pixels a side, as the one source of a mix."""
    sizes = dict(mm_test=20, mm_val=20, text_train=20, text_test=20, text_val=20)
    write_testbed(folder, SynthSpec(mm_train=400, image_size=side, **sizes))
    return [Source("shapes", "rlaif_v", str(folder / "rlaif_v" / "train.parquet"))]


def _make_stream(sources, encoder):
    weights = draw_weights(sources, "size")

    def make(share):
        return ShareStream(sources, encoder, Validator(dedupe=False), 0, 256, weights, share)

    return make


def _rate(sources, encoder, workers: int, pairs: int) -> float:
    loader = StreamLoader(_make_stream(sources, encoder), 0, 1, workers, size=8)
    next(loader)  # the workers started and their first micro-batch made: not timed
    started, taken = time.perf_counter(), 0
    while taken < pairs:
        taken += len(next(loader))
    rate = taken / (time.perf_counter() - started)
    loader.close()
    return rate


def _resume_seconds(sources, encoder, step: int, state: dict | None) -> float:
    started = time.perf_counter()
    data = StreamedPairs(StreamLoader(_make_stream(sources, encoder), 0, 1, 0, size=1), grad_accum=1)
    data.start(step, state)
    data.batches(step)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # one thread per process: the loader workers are the parallelism measured
    with tempfile.TemporaryDirectory() as tmp:
        sources, small = (_testbed(Path(tmp) / name, side) for name, side in (("big", args.image_size), ("small", 56)))
        encoder = PairEncoder(build_tiny("qwen2_5_vl")[1], 4096)

        rates = {0: [], 2: []}
        _rate(sources, encoder, 0, 16)  # warm-up: caches, lazy imports
        for _ in range(args.rounds):
            for workers in (0, 2):
                rates[workers].append(_rate(sources, encoder, workers, args.pairs))
        median = {w: statistics.median(r) for w, r in rates.items()}
        print(f"encoded pairs/s: workers 0 {median[0]:.1f}, workers 2 {median[2]:.1f} ({args.rounds} rounds each)")

        # the state a checkpoint at resume-step holds: the loader run to there once (not timed); small images here,
        # so the replay side (and this) take seconds, not minutes: the ratio only grows with bigger ones
        sources = small
        straight = StreamedPairs(StreamLoader(_make_stream(sources, encoder), 0, 1, 0, size=1), grad_accum=1)
        for step in range(args.resume_step):
            straight.batches(step)
        state = straight.state_dict()
        expected = [p.id for p in straight.batches(args.resume_step)[0]]
        by_state = _resume_seconds(sources, encoder, args.resume_step, state)
        by_replay = _resume_seconds(sources, encoder, args.resume_step, None)
        print(f"resume at step {args.resume_step}: from state {by_state:.3f} s, by replay {by_replay:.2f} s")
        check = StreamedPairs(StreamLoader(_make_stream(sources, encoder), 0, 1, 0, size=1), grad_accum=1)
        check.start(args.resume_step, state)
        assert [p.id for p in check.batches(args.resume_step)[0]] == expected, "resumed stream differs"

    print(f"data: workers 2/0 = {median[2] / median[0]:.2f}x, resume state/replay = {by_replay / by_state:.1f}x")


if __name__ == "__main__":
    main()
