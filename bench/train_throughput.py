"""Training throughput: rmlab's Naive-RM step against TRL's `RewardTrainer`, as pairs per second and their ratio.

Both sides train the same tiny Qwen2 backbone (rmlab's `build_tiny("qwen2_5")` dims, the same initial weights) with a
linear reward head, on the same synthetic text preference pairs (`rmlab.testbed.text_example`), rendered through
the same chat template, at the same batch size (pairs per optimizer step) for the same number of optimizer steps, in
fp32 on the CPU with the same number of torch threads.

- rmlab: timed the way `rmlab/train/recipe.py` steps: pairs encoded beforehand (outside the timed region), then per
  step `micro_batches` -> `collate_pairs` -> `naive.loss_and_metrics` (one forward over chosen + rejected,
  Bradley-Terry loss) -> backward -> `clip_grad_norm_` -> AdamW step -> LambdaLR step. Building the model and the
  optimizer is outside the timed region; collation is inside, as TRL's dataloader collates inside its loop.
- TRL: a `RewardTrainer` on a conversational explicit-prompt dataset, built (and its dataset tokenized) outside the
  timed region; the wall clock around `trainer.train()` is timed. That includes what `train()` does before its
  first step (optimizer, scheduler, dataloader, accelerate setup), so the in-loop rate (first step begin -> last step
  end, taken from a callback) is printed beside it.

rmlab's default head is a 2-layer MLP; here it is `RewardHead(hidden, layers=1, activation="none")`, a linear probe
like TRL's `score` layer (rmlab's keeps a bias, TRL's has none).

Why a ratio: absolute pairs/s depend on the machine and on how busy it is at the moment, so they do not compare
across runs. Both frameworks are measured in one process, in alternating rounds (after an untimed warm-up of each),
and the ratio of the medians is reported together with both medians. With a model this small the step is dominated by
per-step framework overhead (Python, dispatch, data loading), not by matrix multiplies, so the ratio measures the
loops, not the model.

Run from the repo root: `python bench/train_throughput.py [--steps 64 --batch-size 8 --rounds 3 --threads 2]`.
"""

from __future__ import annotations

import os

# No network here: everything must stay offline, and nothing may try to log anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402

# rmlab's default pair layout and TRL's (two rows per pair), both measured.
RMLAB_LAYOUTS = {"rmlab": "shared_prefix", "rmlab-concat": "concat"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=64, help="optimizer steps per timed round (default 64)")
    p.add_argument("--batch-size", type=int, default=8, help="preference pairs per optimizer step (default 8)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds of each framework, alternated (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--pairs", type=int, default=512, help="synthetic preference pairs in the dataset (default 512)")
    p.add_argument("--warmup-steps", type=int, default=4, help="untimed steps of each before the rounds (default 4)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate for both (default 1e-4)")
    p.add_argument("--max-length", type=int, default=256, help="longest sequence allowed, in tokens (default 256)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for name in ("steps", "batch_size", "rounds", "threads", "pairs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def make_pairs(n: int, seed: int):
    """n synthetic text preference pairs (the four text tasks in turn), as rmlab records."""
    from rmlab.data.records import PreferencePair, user_prompt
    from rmlab.testbed import TEXT_TASKS, text_example

    rng = random.Random(f"bench-{seed}")
    pairs = []
    for i in range(n):
        ex = text_example(rng, TEXT_TASKS[i % len(TEXT_TASKS)])
        pairs.append(
            PreferencePair(
                id=f"bench-{i}",
                prompt=user_prompt(ex["question"]),
                chosen=ex["right"],
                rejected=ex["wrong"],
                source="bench",
                category=ex["task"],
            )
        )
    return pairs


def trl_dataset(pairs):
    """The same pairs as a conversational explicit-prompt dataset (prompt / chosen / rejected message lists)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": p.prompt,
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    )


# ---------------------------------------------------------------------------------------------------------- rmlab


def rmlab_round(
    init_model, train_set, pad_id: int, steps: int, batch_size: int, lr: float, seed: int, layout: str
) -> dict:
    """One timed run of rmlab's training step (recipe.py's `_loop` without logging, validation or checkpoints)."""
    from rmlab.runtime.optim import make_optimizer, make_scheduler
    from rmlab.train.batches import HeldPairs, micro_batches
    from rmlab.train.recipe import train_step

    model = copy.deepcopy(init_model)
    model.train()
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], lr, 0.0)
    scheduler = make_scheduler(optimizer, "cosine", steps, 0.0)
    paradigm = SimpleNamespace(name="naive", length_norm=False, center_coef=0.0)  # plain BT, like TRL's default
    t = SimpleNamespace(batch_size=batch_size, grad_accum=1, seed=seed, max_grad_norm=1.0, pair_layout=layout)
    cfg = SimpleNamespace(paradigm=paradigm, train=t)
    data = HeldPairs(train_set, batch_size, 1, seed)
    losses = []

    start = time.perf_counter()
    for step in range(steps):
        losses.append(train_step(model, optimizer, scheduler, data.batches(step), pad_id, cfg)["loss"])
    elapsed = time.perf_counter() - start

    def row_length(e, response) -> int:
        if layout == "shared_prefix":  # one row per pair: prompt, chosen, rejected
            return len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids)
        return len(e.prompt_ids) + len(response)

    widths = [  # padded width of each batch, worked out after the clock stopped
        max(row_length(train_set[i], r) for i in idx for r in (train_set[i].chosen_ids, train_set[i].rejected_ids))
        for step in range(steps)
        for idx in micro_batches(len(train_set), batch_size, 1, step, seed)
    ]

    return {
        "seconds": elapsed,
        "pairs_per_s": steps * batch_size / elapsed,
        "loss_first": statistics.fmean(losses[: max(1, len(losses) // 8)]),
        "loss_last": statistics.fmean(losses[-max(1, len(losses) // 8) :]),
        "mean_width": statistics.fmean(widths),
    }


# ------------------------------------------------------------------------------------------------------------ TRL


class _RecordingCollator:
    """TRL's own collator, also noting the padded width of each batch (a list append: no measurable cost)."""

    def __init__(self, inner):
        self.inner = inner
        self.widths: list[int] = []

    def __call__(self, examples):
        out = self.inner(examples)
        self.widths.append(out["input_ids"].shape[1])
        return out


def _step_clock():
    """A TrainerCallback noting when the first step begins and the last one ends (in-loop time, no setup)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.first_begin = None
            self.last_end = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.first_begin is None:
                self.first_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.last_end = time.perf_counter()

    return StepClock()


def trl_round(init_model, dataset, tok, steps: int, batch_size: int, lr: float, seed: int, max_length: int) -> dict:
    """One timed `RewardTrainer.train()`; the trainer (and the dataset's tokenization) is built before the clock."""
    from transformers import PrinterCallback
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    with tempfile.TemporaryDirectory(prefix="rmlab-bench-trl-") as out_dir:
        config = RewardConfig(
            output_dir=out_dir,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            max_steps=steps,
            max_length=max_length,
            learning_rate=lr,
            weight_decay=0.0,
            lr_scheduler_type="cosine",  # rmlab's cosine schedule with no warmup
            warmup_steps=0,
            max_grad_norm=1.0,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            report_to="none",
            dataloader_num_workers=0,
            save_strategy="no",
            eval_strategy="no",
            use_cpu=True,
            seed=seed,
            data_seed=seed,
            logging_steps=10**9,
            disable_tqdm=True,
        )
        collator = _RecordingCollator(DataCollatorForPreference(pad_token_id=tok.pad_token_id))
        clock = _step_clock()
        trainer = RewardTrainer(
            model=copy.deepcopy(init_model),
            args=config,
            data_collator=collator,
            train_dataset=dataset,
            processing_class=tok,
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # with tqdm off it prints the final metrics dict to stdout
        start = time.perf_counter()
        out = trainer.train()
        elapsed = time.perf_counter() - start

    in_loop = clock.last_end - clock.first_begin
    return {
        "seconds": elapsed,
        "pairs_per_s": steps * batch_size / elapsed,
        "in_loop_pairs_per_s": steps * batch_size / in_loop,
        "setup_s": elapsed - in_loop,
        "own_samples_per_s": out.metrics.get("train_samples_per_second", float("nan")),
        "loss": out.metrics.get("train_loss", float("nan")),
        "mean_width": statistics.fmean(collator.widths),
        "optim": str(config.optim),
        "dataset": trainer.train_dataset,
    }


# ----------------------------------------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("transformers", "trl", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    t0 = time.perf_counter()
    import trl  # slow import (~10 s): once, outside any timed region
    from transformers import AutoModelForSequenceClassification

    from rmlab.config.schema import TinyConfig
    from rmlab.data.encode import PairEncoder
    from rmlab.models.families import build_tiny
    from rmlab.models.heads import RewardHead
    from rmlab.models.reward_model import RewardModel

    import_s = time.perf_counter() - t0

    # Models: rmlab's tiny Qwen2 with a linear head, and TRL's Qwen2ForSequenceClassification with its weights.
    dims = TinyConfig()
    backbone, tok = build_tiny("qwen2_5", dims, seed=args.seed)
    torch.manual_seed(args.seed + 1)
    head = RewardHead(dims.hidden_size, layers=1, activation="none")
    rm_model = RewardModel(backbone, head, "qwen2_5", "tiny")
    seq_config = copy.deepcopy(backbone.config)
    seq_config.num_labels = 1
    seq_config.architectures = None
    seq_config.pad_token_id = tok.pad_token_id
    trl_model = AutoModelForSequenceClassification.from_config(seq_config)
    trl_model.model.load_state_dict(backbone.model.state_dict())
    with torch.no_grad():
        trl_model.score.weight.copy_(head.net[-1].weight)
    n_params = {
        "rmlab": sum(p.numel() for p in rm_model.base_model().parameters()) + sum(p.numel() for p in head.parameters()),
        "TRL": sum(p.numel() for p in trl_model.parameters()),
    }

    # Data: the same pairs; rmlab encodes them once up front, TRL tokenizes them when its trainer is built.
    pairs = make_pairs(args.pairs, args.seed)
    encoder = PairEncoder(tok, args.max_length)
    train_set = [encoder.encode(p) for p in pairs]
    rm_lengths = [len(e.prompt_ids) + len(r) for e in train_set for r in (e.chosen_ids, e.rejected_ids)]

    # Warm-up (untimed): first-call costs (allocator, kernels, lazy imports) land here. The TRL warm-up also
    # tokenizes the dataset; the timed rounds reuse its token ids (TRL skips tokenizing an already tokenized set).
    for layout in RMLAB_LAYOUTS.values():
        rmlab_round(
            rm_model, train_set, tok.pad_token_id, args.warmup_steps, args.batch_size, args.lr, args.seed, layout
        )
    warm = trl_round(
        trl_model, trl_dataset(pairs), tok, args.warmup_steps, args.batch_size, args.lr, args.seed, args.max_length
    )
    trl_set = warm["dataset"].select_columns(["chosen_ids", "rejected_ids"])
    trl_ids = list(zip(trl_set["chosen_ids"], trl_set["rejected_ids"], strict=True))
    trl_lengths = [len(ids) for c, r in trl_ids for ids in (c, r)]
    same = sum(
        (e.prompt_ids + e.chosen_ids == list(c)) + (e.prompt_ids + e.rejected_ids == list(r))
        for e, (c, r) in zip(train_set, trl_ids, strict=True)
    )
    if len(trl_set) != len(train_set):
        sys.exit(f"TRL kept {len(trl_set)} of {len(train_set)} pairs (max_length?): not the same data")

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    print(
        f"threads {torch.get_num_threads()}, fp32, CPU; {args.pairs} pairs, batch {args.batch_size} pairs "
        f"(= {2 * args.batch_size} sequences), {args.steps} optimizer steps per round, {args.rounds} rounds each "
        f"(alternated, after {args.warmup_steps} warm-up steps each); imports {import_s:.1f} s"
    )
    print(
        f"model: tiny Qwen2 (hidden {dims.hidden_size}, {dims.num_layers} layers, vocab {len(tok)}), same initial "
        f"weights; attention {backbone.config._attn_implementation} (rmlab) / "
        f"{trl_model.config._attn_implementation} (TRL); params rmlab {n_params['rmlab']:,} / TRL {n_params['TRL']:,}"
    )
    print(
        "head: rmlab RewardHead(layers=1, activation='none') = linear (apples-to-apples with TRL's linear `score`;"
        " rmlab's default is a 2-layer SiLU MLP)"
    )
    print(
        f"optimizer: rmlab torch.optim.AdamW (recipe default), TRL optim={warm['optim']} (TRL default); lr "
        f"{args.lr:g}, no weight decay, cosine schedule, grad-norm clip 1.0 for both"
    )
    print(
        f"tokens per sequence: rmlab {statistics.fmean(rm_lengths):.2f} (min {min(rm_lengths)}, max "
        f"{max(rm_lengths)}), TRL {statistics.fmean(trl_lengths):.2f} (min {min(trl_lengths)}, max "
        f"{max(trl_lengths)}); identical token ids in {same}/{len(rm_lengths)} sequences"
    )

    # TRL's train() starts with accelerate's free_memory(), a full gc.collect(): a fixed cost per train() call that
    # grows with the live Python objects in the process. Shown so the gap between the two TRL figures is explained.
    gc_start = time.perf_counter()
    gc.collect()
    gc_s = time.perf_counter() - gc_start
    load_before = os.getloadavg()[0]
    print(f"one full gc.collect() here: {gc_s:.2f} s; 1-min load average {load_before:.2f} on {os.cpu_count()} cores")

    results: dict[str, list[dict]] = {name: [] for name in (*RMLAB_LAYOUTS, "TRL")}
    names = list(results)
    for r in range(args.rounds):
        # Rotate which goes first, so none always runs on a machine another just warmed (or heated).
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in RMLAB_LAYOUTS:
                res = rmlab_round(
                    rm_model,
                    train_set,
                    tok.pad_token_id,
                    args.steps,
                    args.batch_size,
                    args.lr,
                    args.seed + r,
                    RMLAB_LAYOUTS[name],
                )
                print(
                    f"round {r + 1} {name:12s} {res['pairs_per_s']:7.1f} pairs/s ({res['seconds']:.2f} s; mean padded "
                    f"width {res['mean_width']:.1f}; loss {res['loss_first']:.3f} -> {res['loss_last']:.3f})"
                )
            else:
                res = trl_round(
                    trl_model, trl_set, tok, args.steps, args.batch_size, args.lr, args.seed + r, args.max_length
                )
                print(
                    f"round {r + 1} TRL          {res['pairs_per_s']:7.1f} pairs/s ({res['seconds']:.2f} s; mean padded "
                    f"width {res['mean_width']:.1f}; train() setup+teardown {res['setup_s']:.2f} s, in-loop "
                    f"{res['in_loop_pairs_per_s']:.1f} pairs/s; own train_samples_per_second "
                    f"{res['own_samples_per_s']:.1f}; mean loss {res['loss']:.3f})"
                )
            if torch.get_num_threads() != args.threads:
                print(f"warning: torch threads changed to {torch.get_num_threads()}; resetting to {args.threads}")
                torch.set_num_threads(args.threads)
            results[name].append(res)

    spreads = {
        name: max(x["pairs_per_s"] for x in runs) / min(x["pairs_per_s"] for x in runs)
        for name, runs in results.items()
    }
    if max(spreads.values()) > 1.5:
        print(
            "warning: rounds disagree (fastest/slowest: "
            + ", ".join(f"{k} {v:.1f}x" for k, v in spreads.items())
            + f"; "
            f"1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}): the machine was busy, rerun when it "
            "is quiet or with --threads 1 (when other processes take the cores, torch's OpenMP threads wait on each "
            "other and a step can take 100x longer)"
        )
    rm_med = statistics.median(x["pairs_per_s"] for x in results["rmlab"])
    concat_med = statistics.median(x["pairs_per_s"] for x in results["rmlab-concat"])
    trl_med = statistics.median(x["pairs_per_s"] for x in results["TRL"])
    trl_loop = statistics.median(x["in_loop_pairs_per_s"] for x in results["TRL"])
    trl_own = statistics.median(x["own_samples_per_s"] for x in results["TRL"])
    print(
        f"TRL's own train_samples_per_second: median {trl_own:.0f}; wall clock around train(), its setup included: "
        f"median {trl_med:.0f} pairs/s -> rmlab ratio {rm_med / trl_med:.2f} over {args.steps} steps"
    )
    print(
        f"rmlab with TRL's layout (pair_layout=concat, 2 rows per pair): {concat_med:.0f} pairs/s -> ratio "
        f"{concat_med / trl_loop:.2f}"
    )
    print(
        f"rmlab/TRL pairs/s ratio (training steps, rmlab default pair_layout=shared_prefix): {rm_med / trl_loop:.2f} "
        f"(rmlab {rm_med:.0f} pairs/s, TRL {trl_loop:.0f} pairs/s, median of {args.rounds})"
    )


if __name__ == "__main__":
    main()
