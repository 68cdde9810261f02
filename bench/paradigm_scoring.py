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

`--engines hf,vllm` (the default where the vLLM environment of `make vllm` exists) adds a `[vllm]` row for each
paradigm that asks its engine anything (generation.engine=vllm: the same model saved and served by a vLLM server,
the same Scorer): each server is started once (its start is not timed), then its rows, their `hf` rows and Naive-RM
are timed in alternating rounds while it runs, so each `[vllm]` row has its own `x naive` and `x hf` from rounds
of the same minutes. vLLM's CPU build has attention kernels for head sizes 32 and up, so with vllm every row's tiny
model has 2 heads of 32 (`scale.tiny.num_heads=2`) instead of 4 of 16.

`--set` changes every row's model, e.g. a model whose compute outweighs the per-request costs: `--set
scale.tiny.hidden_size=512 --set scale.tiny.intermediate_size=1536 --set scale.tiny.num_layers=8 --set
scale.tiny.num_heads=8`.

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
    ("longcot voting@5 (one order)", "longcot", ["paradigm.both_orders=false", "paradigm.samples=5"]),
]


# the rows that ask their engine: (row, the server's paradigm); one server per paradigm
ENGINE_ROWS = [
    ("critic (generated critique)", "critic"),
    ("grm (one order)", "grm"),
    ("grm (both orders)", "grm"),
    ("longcot (one order)", "longcot"),
    ("longcot voting@5 (one order)", "longcot"),
]
VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=64, help="held-out pairs scored per round (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each paradigm, alternated (default 3)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per scoring batch (default 16)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--backbone", default="qwen2_5_vl", help="a family with a tiny config (default qwen2_5_vl)")
    p.add_argument("--critic-tokens", type=int, default=48, help="Critic-RM's critique cap (default 48)")
    p.add_argument("--longcot-tokens", type=int, default=96, help="LongCoT-GRM's reasoning cap (default 96)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every row's model, e.g. scale.tiny.hidden_size=512 (repeatable)",
    )
    p.add_argument("--engines", default="hf,vllm" if VLLM_PYTHON.exists() else "hf",
                   help="hf, or hf,vllm (default: hf,vllm where `make vllm` built .venv-vllm)")  # fmt: skip
    args = p.parse_args()
    args.engines = args.engines.split(",")
    if not set(args.engines) <= {"hf", "vllm"} or "hf" not in args.engines:
        p.error("--engines: hf or hf,vllm")
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
                *(["scale.tiny.num_heads=2"] if "vllm" in args.engines else []),
                *args.set,
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
        scorers[name] = (Scorer(model.eval(), encoder, paradigm, cfg, args.batch_size), items, processor)
    return scorers


def generated_tokens(scorer, items, engine=None) -> float:
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
        timed(scorer, items, engine)
    finally:
        critic.generate = grm.generate = real
    return counted[0] / len(items)


def timed(scorer, items, engine=None) -> float:
    """Seconds to score the items, through `engine` when one is given."""
    if engine is not None:
        scorer.model.generation_engine = engine
    try:
        start = time.perf_counter()
        scorer.score(items)
        return time.perf_counter() - start
    finally:
        if engine is not None:
            del scorer.model.generation_engine


def vllm_rows(args, scorers, tmp: Path) -> dict[str, dict]:
    """For each paradigm of ENGINE_ROWS: its model saved and served, then its [vllm] rows, their hf rows and naive
    timed in alternating rounds; each row's rate, x naive and x hf."""
    from rmlab.config.compose import compose
    from rmlab.generation.engine import start_engine

    cfg = compose(["generation.engine=vllm", "tracking=disabled"])
    out = {}
    for paradigm in dict.fromkeys(p for _, p in ENGINE_ROWS):
        rows = [name for name, p in ENGINE_ROWS if p == paradigm]
        scorer, items, processor = scorers[rows[0]]
        model_dir = scorer.model.save(tmp / paradigm / "model", processor)
        started = time.perf_counter()
        engine = start_engine(scorer.model, processor, model_dir, tmp / paradigm, cfg)
        del scorer.model.generation_engine
        start_s = time.perf_counter() - started
        try:
            tokens = {
                name: generated_tokens(scorers[name][0], scorers[name][1][: args.batch_size], engine) for name in rows
            }  # fmt: skip  (warm-up too)
            times = {key: [] for key in ["naive", *rows, *(f"{r} [vllm]" for r in rows)]}
            for _ in range(args.rounds):
                times["naive"].append(timed(*scorers["naive"][:2]))
                for name in rows:
                    times[name].append(timed(*scorers[name][:2]))
                    times[f"{name} [vllm]"].append(timed(*scorers[name][:2], engine))
        finally:
            engine.close()
        rates = {k: args.pairs / statistics.median(t) for k, t in times.items()}
        for name in rows:
            v = rates[f"{name} [vllm]"]
            out[f"{name} [vllm]"] = {"rate": v, "x_naive": v / rates["naive"], "x_hf": v / rates[name],
                                     "tokens": tokens[name], "server_start_s": start_s}  # fmt: skip
        print(f"vllm {paradigm}: server started in {start_s:.0f} s, {args.rounds} rounds done", flush=True)
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from rmlab.testbed import SynthSpec, write_testbed

    with tempfile.TemporaryDirectory(prefix="rmlab-bench-") as tmp:
        write_testbed(tmp, SynthSpec(mm_train=8, text_train=8, mm_test=args.pairs, text_test=args.pairs, mm_val=0,
                                     text_val=0))  # fmt: skip
        scorers = build_scorers(args, Path(tmp))
        tokens = {}
        for name, (scorer, items, _) in scorers.items():  # warm-up, and what each generates
            tokens[name] = generated_tokens(scorer, items[: args.batch_size])
        times: dict[str, list[float]] = {name: [] for name in scorers}
        for r in range(args.rounds):
            for name, (scorer, items, _) in scorers.items():
                times[name].append(timed(scorer, items))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        served = vllm_rows(args, scorers, Path(tmp)) if "vllm" in args.engines else {}
    rates = {name: args.pairs / statistics.median(t) for name, t in times.items()}
    base = rates["naive"]
    heads = ", 2 heads of 32" if "vllm" in args.engines else ""
    sizes = f" ({' '.join(args.set)})" if args.set else heads
    print(
        f"\nScoring {args.pairs} held-out pairs, tiny {args.backbone}{sizes}, batch {args.batch_size}, "
        f"{args.threads} threads, median of {args.rounds} rounds"
    )
    print(f"{'paradigm':40s} {'pairs/s':>9s} {'x naive':>8s} {'x hf':>6s} {'tokens generated/pair':>22s}")
    for name, rate in rates.items():
        print(f"{name:40s} {rate:9.1f} {rate / base:8.3f} {'':>6s} {tokens[name]:22.1f}")
        if f"{name} [vllm]" in served:
            v = served[f"{name} [vllm]"]
            print(f"{name + ' [vllm]':40s} {v['rate']:9.1f} {v['x_naive']:8.3f} {v['x_hf']:6.2f} {v['tokens']:22.1f}")


if __name__ == "__main__":
    main()
