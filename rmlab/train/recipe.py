"""The reward-model stage (`stage=reward_model`): one config in, a trained model and its scores out. Read top down.

The run's lifecycle (lock, status, attempts, logging, threads and seeds) is rmlab.runtime.lifecycle's; this is the
body it runs:

1. data: the mix's sources, a validation split, encoded once (overlong pairs reported, never cut)
2. model: the paradigm's (backbone + frozen vision tower, LoRA, checkpointing; a reward head), optionally from a
   finished run's weights (`train.init_from`)
3. loop: AdamW, warmup + schedule, gradient accumulation, validation and atomic checkpoints every N steps; a run
   that stopped resumes from its last checkpoint
4. the trained model saved (loads back with one call), then scored on the mix's held-out sets and benchmarks
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from omegaconf import DictConfig

from rmlab.data.adapters.base import LoadReport
from rmlab.data.cache import encode_cached
from rmlab.data.loader import StreamLoader
from rmlab.data.mix import load_train_mix, resolve_sources
from rmlab.data.stream import ShareStream, draw_weights, source_sizes, validation_head
from rmlab.data.validate import Validator
from rmlab.errors import ConfigError, TrainingDiverged
from rmlab.eval.benchmarks.run import evaluate_configured
from rmlab.eval.score import pair_accuracy, scorer_for
from rmlab.generation.engine import generation_engine
from rmlab.models.reward_model import load_reward_model
from rmlab.paradigms import get_paradigm
from rmlab.runtime.checkpoint import CheckpointWriter, resume
from rmlab.runtime.distributed import SINGLE
from rmlab.runtime.lifecycle import StageRun
from rmlab.runtime.optim import make_optimizer, make_scheduler
from rmlab.runtime.preemption import PreemptionGuard
from rmlab.runtime.run_dir import resolve_run
from rmlab.runtime.strategy import Strategy
from rmlab.tracking.logger import numeric_leaves
from rmlab.train.batches import HeldPairs, StreamedPairs
from rmlab.util.progress import progress

SINGLE_PROCESS = Strategy("single", SINGLE, torch.float32)  # one process computing in float32


def build_model(cfg: DictConfig):
    """(model, processor) for the config's paradigm, backbone, scale and options."""
    return get_paradigm(cfg.paradigm.name).build(cfg)


def _streamed_data(cfg: DictConfig, encoder, dist):
    """(StreamedPairs, validation pairs from the head of each source, validator that counted them) for a streamed
    mix: this rank's loader over its shares (rmlab.data.loader), the validation pairs kept out of training."""
    dm = cfg.data_mix
    sources = resolve_sources(dm.train, cfg.datasets)
    sizes = source_sizes(sources)
    weights = draw_weights(sources, dm.weighting, sizes)
    validator = Validator(policy=str(dm.on_invalid), max_pixels=dm.max_image_pixels, dedupe=False)
    val_set, exclude = validation_head(sources, encoder, validator, dm.val_pairs, weights, sizes)
    if cfg.train.batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} does not split over {dist.world_size} processes")

    def make_stream(share):  # (run in the loader process: a validator of its own, its counts in the stream state)
        own = Validator(policy=str(dm.on_invalid), max_pixels=dm.max_image_pixels, dedupe=False)
        return ShareStream(sources, encoder, own, dm.seed, dm.stream_buffer, weights, share, exclude)

    loader = StreamLoader(make_stream, dist.rank, dist.world_size, dm.workers, cfg.train.batch_size // dist.world_size)
    return StreamedPairs(loader, cfg.train.grad_accum), val_set, validator


def _data_summary(data, validator, dist) -> dict:
    """Composition (pairs per source the training set holds, or the streams have served, over every process) and
    the checks' counts. Every process calls this."""
    counts, report = data.counts()
    if report is not None:  # a stream: its counts are the loader processes', on every rank
        gathered = dist.gather([(dict(counts), report.state_dict())])
        counts = sum((Counter(c) for c, _ in gathered), Counter())
        total = LoadReport.from_state(validator.report.state_dict())
        for _, r in gathered:
            total.add(LoadReport.from_state(r))
        validator = Validator(policy=validator.policy, report=total)
    return {
        "data/composition": dict(sorted(counts.items())),
        "data/validation": validator.summary(),
        "data/train_pairs": sum(counts.values()),
    }


def encode_weighted(encoder, pairs, cache_dir, desc, progress, validator) -> list:
    """Encode each distinct pair once (a weight above 1 repeats pairs), then lay them out as the weighted list."""
    unique = list({id(p): p for p in pairs}.values())
    encoded, kept, _ = encode_cached(encoder, unique, cache_dir, desc, progress, validator)
    by_pair = {id(p): e for p, e in zip(kept, encoded, strict=True)}
    return [by_pair[id(p)] for p in pairs if id(p) in by_pair]


def train_reward_model(stage: StageRun) -> None:
    """The stage's body: train (or resume) the config's model, save it, score it."""
    cfg, run, dist, log = stage.cfg, stage.run, stage.dist, stage.log
    t = cfg.train

    # 1. data, 2. model
    paradigm = get_paradigm(cfg.paradigm.name)
    model, processor = paradigm.build(cfg)
    if t.init_from:
        load_weights_from(model, t.init_from, cfg)
    encoder = paradigm.encoder(processor, cfg)
    if cfg.data_mix.streaming:
        data, val_set, validator = _streamed_data(cfg, encoder, dist)
    else:
        mix = load_train_mix(cfg)
        validator = mix.validator
        train_set = encode_weighted(encoder, mix.train, cfg.paths.cache, "encode train", cfg.run.progress, validator)
        val_set, _, _ = encode_cached(encoder, mix.val, cfg.paths.cache, "encode val", False, validator)
        if not train_set:
            raise ConfigError(
                f"data_mix {cfg.data_mix.name}: no training pair left after validation: {validator.summary()}"
            )
        data = HeldPairs(train_set, t.batch_size, t.grad_accum, cfg.run.seed, dist)

    # 3. the model spread over the processes (fp32 masters), optimizer, schedule, the checkpoint to resume from
    strategy = Strategy.for_config(cfg, dist)
    model = strategy.wrap(model, processor)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, t.lr, t.weight_decay)
    scheduler = make_scheduler(optimizer, str(t.schedule), t.max_steps, t.warmup_ratio)

    trainer = resume(run.checkpoints, model, optimizer, scheduler, dist)
    start_step = trainer["step"] if trainer else 0
    log.rewind(start_step)  # the steps after the checkpoint are done again: logged once
    data.start(start_step, trainer.get("rank_state") if trainer else None)

    log.summary(
        {
            "model/trainable_params": sum(p.numel() for p in params),
            "threads": stage.threads,
            "strategy": strategy.name,
            "data/val_pairs": len(val_set),
            **_data_summary(data, validator, dist),
        }
    )
    # 4. loop, then the model saved (gathered from its shards, in the compute dtype) and scored by every process
    try:
        _loop(cfg, run, model, optimizer, scheduler, data, val_set, encoder, start_step, log, strategy)
    finally:
        data.close()
    log.summary(_data_summary(data, validator, dist))  # a stream's counts grow while it is read
    state = strategy.full_state_dict(model)
    module = strategy.module(model)
    if dist.is_main:
        module.save(run.model, processor, state, dtype=strategy.dtype)
    del state
    final = scorer_for(cfg, module, encoder, cfg.run.progress, dist)
    with generation_engine(cfg, module, run.model, run.path / "vllm", processes=dist.world_size):
        results = final.evaluate(resolve_sources(cfg.data_mix.test, cfg.datasets), run.eval_dir)
        results.update(evaluate_configured(cfg, final, run.eval_dir))
    log.summary(numeric_leaves(results, "eval/"))


def load_weights_from(model, ref: str, cfg: DictConfig) -> None:
    """Copy a finished run's trained weights into a freshly built model of the same configuration."""
    path = resolve_run(str(ref), cfg, "train.init_from")
    trained, _ = load_reward_model(path)
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or [k for k in missing if not k.startswith("head.")]:
        raise ConfigError(f"train.init_from {path}: its model does not match this config's ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected weights)")  # fmt: skip
    print(f"[rmlab] weights from {path}")


def train_step(
    model, optimizer, scheduler, batches: list[list], pad_id: int, cfg, strategy: Strategy = SINGLE_PROCESS
) -> dict[str, float]:
    """One optimizer step over its micro-batches (this process's lists of encoded pairs: its slice of each global
    one; gradients reduced over the processes on the last one); returns the step's metrics, averaged over them."""
    dist = strategy.dist
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    paradigm = get_paradigm(cfg.paradigm.name)
    diverged = None
    for i, pairs in enumerate(batches):
        batch = paradigm.collate(pairs, pad_id, cfg)
        with strategy.micro_step(model, last=i == len(batches) - 1):
            with strategy.autocast():
                loss, metrics = paradigm.loss(model, batch, cfg)
            if diverged is None and not torch.isfinite(loss):
                diverged = loss.item()
            (loss / len(batches)).backward()  # (even so: the processes' gradient reductions must still meet)
        for k, v in {"loss": loss.item(), **metrics}.items():
            totals[k] = totals.get(k, 0.0) + v / len(batches)
    if dist.any(diverged is not None):  # every process stops, before any steps the optimizer
        raise TrainingDiverged(f"loss is {diverged}" if diverged is not None else "loss is not finite on a process")
    totals = dist.mean(totals)
    params = [p for p in model.parameters() if p.requires_grad]
    totals["grad_norm"] = strategy.clip_grad_norm(params, cfg.train.max_grad_norm)
    optimizer.step()
    scheduler.step()
    return totals


def _loop(cfg, run, model, optimizer, scheduler, data, val_set, encoder, start_step, log, strategy: Strategy) -> None:
    t, dist = cfg.train, strategy.dist
    model.train()
    bar = progress(
        total=t.max_steps, initial=start_step, desc=f"train {run.signature}", enabled=cfg.run.progress and dist.is_main
    )
    pad_id = encoder.tokenizer.pad_token_id
    val_scorer = scorer_for(cfg, strategy.module(model), encoder, progress=False, dist=dist)
    guard = PreemptionGuard().install()
    with CheckpointWriter(run.checkpoints, cfg.run.keep_checkpoints, dist) as writer:
        for step in range(start_step, t.max_steps):
            started = time.perf_counter()
            try:
                totals = train_step(model, optimizer, scheduler, data.batches(step), pad_id, cfg, strategy)
            except TrainingDiverged as e:
                raise TrainingDiverged(
                    f"{e} at step {step + 1}; last good checkpoint kept in {run.checkpoints}"
                    " (lower train.lr or set train.max_grad_norm)"
                ) from None
            done = step + 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{totals['loss']:.3f}", acc=f"{totals.get('pair_accuracy', float('nan')):.2f}", refresh=False
            )
            pairs_per_s = t.batch_size * t.grad_accum / max(time.perf_counter() - started, 1e-9)
            log.log(
                {
                    **{f"train/{k}": v for k, v in totals.items()},
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/pairs_per_s": pairs_per_s,
                },
                step=done,
            )
            if (t.eval_every and done % t.eval_every == 0 or done == t.max_steps) and val_set:
                model.eval()  # every process scores its share (a sharded model's forward needs them all)
                log.log({f"val/{val_scorer.metric}": 100.0 * pair_accuracy(val_scorer.score(val_set))}, step=done)
                model.train()
            preempted = dist.any(guard.requested)  # every process stops after the same step
            r = cfg.run
            if (r.save_every and done % r.save_every == 0 or preempted) and done < t.max_steps:
                writer.save(done, model, optimizer, scheduler, rank_state=data.state_dict())
                if dist.is_main:
                    run.update_status(step=done)
            if preempted and done < t.max_steps:  # (at the last step the run finishes instead: its model is saved)
                writer.finish()  # the checkpoint is in place, on every process, before any leaves
                print(f"[rmlab] preempted: checkpoint of step {done} written, handing over to the requeue")
                guard.hand_over()
    guard.uninstall()
    bar.close()
    model.eval()
