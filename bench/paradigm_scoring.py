"""Scoring speed of each reward paradigm: preference pairs per second on the same backbone, size and pairs, and each
one's ratio to Naive-RM (BaseReward says Naive-RM is much faster but prints no numbers).

Every paradigm scores the same held-out synthetic pairs (MM-RLHF schema, with critiques) through rmlab's own
`Scorer` (the path `rmlab eval` takes), with the same tiny backbone built from the same seed, the same batch size, in
fp32 on the CPU with the same torch threads. Encoding the pairs is outside the timed region; batching, forward passes,
generation and decoding are inside. Rounds alternate between the paradigms (after an untimed warm-up of each) and
the medians are compared, so the ratios hold on a busy machine where absolute rates drift.

The weights are untrained, so a generating paradigm (Critic-RM writing critiques, LongCoT-GRM reasoning) rarely
emits its stop token and writes up to its cap (`--critic-tokens`, `--longcot-tokens`): what a verbose model costs.
The tokens generated per pair are printed beside the rates; the cost of generation grows with them.

Run from the repo root: `python bench/paradigm_scoring.py [--pairs 64 --rounds 3 --backbone qwen2_5_vl]`.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

# (row name, paradigm, overrides): what each row of the output measures.
VARIANTS = [
    ("naive", "naive", []),
    ("critic (ground-truth critique)", "critic", ["paradigm.critique=ground_truth"]),
    ("critic (generated critique)", "critic", ["paradigm.critique=generate"]),
    ("grm (one order)", "grm", ["paradigm.both_orders=false"]),
    ("grm (both orders)", "grm", ["paradigm.both_orders=true"]),
    ("longcot (one order)", "longcot", ["paradigm.both_orders=false"]),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=64, help="held-out pairs scored per round (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each paradigm, alternated (default 3)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per scoring batch (default 16)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--backbone", default="qwen2_5_vl", help="a family with a tiny config (default qwen2_5_vl)")
    p.add_argument("--critic-tokens", type=int, default=48, help="Critic-RM's critique cap (default 48)")
    p.add_argument("--longcot-tokens", type=int, default=96, help="LongCoT-GRM's reasoning cap (default 96)")
    args = p.parse_args()
    for name in ("pairs", "rounds", "batch_size", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def build_scorers(args, data_dir: Path):
    from rmlab.config.compose import compose
    from rmlab.data.adapters import load_pairs
    from rmlab.data.encode import encode_all
    from rmlab.eval.score import Scorer
    from rmlab.paradigms import get_paradigm

    text = args.backbone in ("qwen2_5", "qwen3")
    adapter, path = (
        ("ultrafeedback", data_dir / "ultrafeedback" / "test.jsonl")
        if text
        else ("mm_rlhf", data_dir / "mm_rlhf" / "test" / "dpo_pairs.jsonl")
    )
    pairs = load_pairs(adapter, str(path), limit=args.pairs)
    scorers = {}
    for name, paradigm_name, overrides in VARIANTS:
        cfg = compose(
            [
                f"backbone={args.backbone}",
                "scale=tiny",
                f"paradigm={paradigm_name}",
                "tracking=disabled",
                "data_mix.max_length=2048",
                *overrides,
            ]
        )
        if paradigm_name == "critic":
            cfg.paradigm.max_new_tokens = args.critic_tokens
        if paradigm_name == "longcot":
            cfg.paradigm.max_new_tokens = args.longcot_tokens
        paradigm = get_paradigm(paradigm_name)
        torch.manual_seed(0)
        model, processor = paradigm.build(cfg)
        encoder = paradigm.encoder(processor, cfg)
        items, _, skipped = encode_all(encoder, pairs, name, progress=False)
        if len(items) != len(pairs):
            raise SystemExit(f"{name}: {skipped} pairs did not fit")
        scorers[name] = (Scorer(model.eval(), encoder, paradigm, cfg, args.batch_size), items)
    return scorers


def generated_tokens(scorer, items) -> float:
    """Mean tokens the paradigm generates per pair (0 when it generates nothing), counted at `generate`."""
    from rmlab.paradigms import critic, grm

    counted = [0]
    real = critic.generate

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        counted[0] += sum(len(sample) for samples in out for sample in samples)
        return out

    critic.generate = grm.generate = counting
    try:
        scorer.score(items)
    finally:
        critic.generate = grm.generate = real
    return counted[0] / len(items)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from rmlab.testbed import SynthSpec, write_testbed

    with tempfile.TemporaryDirectory(prefix="rmlab-bench-") as tmp:
        write_testbed(tmp, SynthSpec(mm_train=8, text_train=8, mm_test=args.pairs, text_test=args.pairs, mm_val=0,
                                     text_val=0))  # fmt: skip
        scorers = build_scorers(args, Path(tmp))
    tokens = {}
    for name, (scorer, items) in scorers.items():  # warm-up, and what each generates
        tokens[name] = generated_tokens(scorer, items[: args.batch_size])
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for r in range(args.rounds):
        for name, (scorer, items) in scorers.items():
            start = time.perf_counter()
            scorer.score(items)
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rates = {name: args.pairs / statistics.median(t) for name, t in times.items()}
    base = rates["naive"]
    print(
        f"\nScoring {args.pairs} held-out pairs, tiny {args.backbone}, batch {args.batch_size}, "
        f"{args.threads} threads, median of {args.rounds} rounds"
    )
    print(f"{'paradigm':34s} {'pairs/s':>9s} {'x naive':>8s} {'tokens generated/pair':>22s}")
    for name, rate in rates.items():
        print(f"{name:34s} {rate:9.1f} {rate / base:8.3f} {tokens[name]:22.1f}")


if __name__ == "__main__":
    main()
