"""The policy stage (`stage=rl`): train a policy with rewards, in one readable loop.

Prompts are the data mix's pairs read as verifiable questions (the prompt, with the chosen response as the ground
truth); the held-out ones are the mix's test sources. Each step:

1. rollout: `rl.prompts_per_step` prompts, `rl.group_size` sampled completions each (`rl.temperature`, capped at
   `rl.max_new_tokens`; a completion that stops keeps its stop token as its last action). With
   `rl.dynamic_sampling` (DAPO), groups whose rewards are all equal carry no signal and are dropped, and more
   prompts are rolled out (up to `rl.max_gen_batches` rollout batches) until the step has its prompts.
2. rewards (`rl.reward`: rmlab.rl.rewards), plus DAPO's overlong shaping when `rl.overlong_buffer` > 0: a
   completion longer than max_new_tokens - buffer loses (length - (max - buffer)) / buffer * overlong_penalty.
3. the old policy's log-probabilities and full-vocabulary entropies of every completion token (no gradient);
   advantages by `rl.algorithm` over the whole batch of groups (rmlab.rl.advantages).
4. `rl.ppo_epochs` passes of `rl.mini_batches` optimizer steps (AdamW at the constant `rl.lr`) with the clipped
   loss (rmlab.rl.loss), gradient clipped at `rl.max_grad_norm`; a KL term to the starting policy when
   `rl.kl_coef` > 0.

The run's lifecycle is rmlab.runtime.lifecycle's (as every stage's); checkpoints every `run.save_every` steps and on
preemption, and resumption from them. At the end the policy is saved (`model/`) and answers the held-out prompts:
`eval/<source>/metrics.json` holds its greedy `exact_match` (the rule reward's mean), `sampled_exact_match` and the
mean configured reward, the same numbers before training under `initial_*`.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from rmlab.data.encode import frames_as_images
from rmlab.data.mix import load_sources, resolve_sources
from rmlab.data.records import PreferencePair
from rmlab.errors import ConfigError
from rmlab.eval.standalone import load_reward_scorer
from rmlab.generation.engine import check_one_process, start_engine
from rmlab.models.reward_model import JudgeModel, load_reward_model
from rmlab.paradigms.sft import SFT, AnswerEncoder
from rmlab.paradigms.tokens import Sequence, collate_completions, generate, stop_ids
from rmlab.rl.advantages import Rollouts, compute_advantages
from rmlab.rl.loss import policy_loss, token_logprobs_and_entropy
from rmlab.rl.rewards import Prompt, compute_rewards, rule_reward
from rmlab.runtime.checkpoint import CheckpointWriter, resume
from rmlab.runtime.distributed import SINGLE
from rmlab.runtime.lifecycle import StageRun
from rmlab.runtime.optim import make_optimizer, make_scheduler
from rmlab.runtime.preemption import PreemptionGuard
from rmlab.runtime.run_dir import resolve_run
from rmlab.runtime.strategy import Strategy
from rmlab.tracking.logger import numeric_leaves
from rmlab.util.atomic import atomic_write_json, atomic_write_text
from rmlab.util.progress import progress


@dataclass
class Batch:
    """One step's rollouts, one row per completion."""

    seqs: list[Sequence]  # prompt + completion tokens (the completion as the LM targets)
    texts: list[str]
    rewards: torch.Tensor
    group: torch.Tensor
    lengths: list[int]
    prompts_used: int
    groups_dropped: int
    groups_kept: int = 0  # over every process


def as_prompt(pair) -> Prompt:
    return Prompt(id=pair.id, messages=pair.prompt, answer=pair.chosen, images=pair.images, category=pair.category)


def overlong_penalty(length: int, max_new_tokens: int, buffer: int, factor: float) -> float:
    """DAPO's soft overlong punishment: 0 up to max - buffer, then linearly down to -factor at max."""
    if buffer <= 0:
        return 0.0
    exceed = length - (max_new_tokens - buffer)
    return min(-exceed / buffer * factor, 0.0)


class PolicyRun:
    """What one policy run holds while it trains: the policy (spread over the job's processes by `run.strategy`),
    its encoder, prompts, the reward scorer, the reference policy for the KL term.

    Over several processes every process draws the same prompts, rolls out and rewards its share of them (every
    sample drawn from a generator seeded by its prompt and number, so a rollout does not depend on which process
    made it), and the step's groups, advantages and loss normalizers are decided on the whole batch: a step on N
    processes is the step of one process on the same prompts."""

    def __init__(self, cfg: DictConfig, strategy: Strategy | None = None):
        self.cfg, self.rl = cfg, cfg.rl
        self.strategy = strategy or Strategy("single", SINGLE, torch.float32)
        self.dist = self.strategy.dist
        policy, processor = load_policy(cfg)
        reference = None
        if float(self.rl.kl_coef) > 0:
            reference = copy.deepcopy(policy).eval()
            for p in reference.parameters():
                p.requires_grad_(False)
        self.policy = self.strategy.wrap(policy, processor)
        self.reference = self.strategy.wrap(reference, processor) if reference is not None else None
        self.module = self.strategy.module(self.policy)  # generation, saving
        self.encoder = AnswerEncoder(processor, cfg.data_mix.max_length)
        self.tokenizer = self.encoder.tokenizer
        self.pad_id, self.stops = self.tokenizer.pad_token_id, stop_ids(self.tokenizer)
        self.train_pairs = load_sources(resolve_sources(cfg.data_mix.train, cfg.datasets))
        self.test_sources = resolve_sources(cfg.data_mix.test, cfg.datasets)
        if not self.train_pairs:
            raise ConfigError(f"data_mix {cfg.data_mix.name}: no training prompt")
        # what a process with no share runs, so that a sharded policy's collectives meet on every process
        self.idle_prompt = as_prompt(self.train_pairs[0])
        base = self.encode(self.idle_prompt)
        self.idle_seq = Sequence(base.prompt_ids, base.prompt_token_types, base.vision, base.before, [self.pad_id], [])
        self.reward_scorer = None
        if str(self.rl.reward) != "rule":
            if not self.rl.reward_model:
                raise ConfigError(f"rl.reward={self.rl.reward} needs rl.reward_model (a run dir or signature)")
            path = resolve_run(str(self.rl.reward_model), cfg, "rl.reward_model")
            self.reward_scorer = load_reward_scorer(path, cfg, device=self.dist.device)

    def mine(self, n: int) -> list[int]:
        """This process's share of n items (every world-size-th)."""
        return list(range(self.dist.rank, n, self.dist.world_size))

    # ------------------------------------------------------------------------------------------------ rollouts
    def encode(self, prompt: Prompt) -> Sequence:
        pair = PreferencePair(
            id=prompt.id, prompt=prompt.messages, chosen=prompt.answer, rejected="", images=prompt.images
        )
        messages, refs = frames_as_images(pair)
        encoded = self.encoder.encode_prompt(messages, refs, f"prompt {prompt.id}")
        before, _, end = self.encoder.completion(messages, "x", f"prompt {prompt.id}")
        return Sequence.of(encoded, (before, [], end))

    def sample(
        self, prompts: list[Prompt], seed: int, greedy: bool = False
    ) -> tuple[list[Sequence], list[str], list[int]]:
        """G completions per prompt (one when greedy): the sequences to train on, their texts and lengths."""
        rl = self.rl
        if not prompts:  # no share of these prompts: generate an idle one with the others, keep nothing
            self.sample([self.idle_prompt], seed, greedy)
            return [], [], []
        bases = [self.encode(p) for p in prompts]
        samples = 1 if greedy else int(rl.group_size)
        self.policy.eval()
        engine = getattr(self.module, "generation_engine", None)
        if engine is not None:  # generation.engine=vllm: the server's log-probabilities too (the gap is logged)
            outputs, logps = engine.generate_with_logprobs(
                bases, self.stops, int(rl.max_new_tokens), samples, float(rl.temperature), seed, keep_stop=True
            )
        else:
            outputs = generate(
                self.module, bases, self.pad_id, self.stops, int(rl.max_new_tokens), samples, float(rl.temperature),
                seed, keep_stop=True,
            )  # fmt: skip
            logps = [[None] * len(group) for group in outputs]
        seqs, texts, lengths = [], [], []
        for base, group, group_logps in zip(bases, outputs, logps, strict=True):
            for tokens, lp in zip(group, group_logps, strict=True):
                answer = [t for t in tokens if t not in self.stops]
                texts.append(self.tokenizer.decode(answer))
                lengths.append(len(tokens))
                meta = {} if lp is None else {"engine_logp": lp}
                seqs.append(Sequence(base.prompt_ids, base.prompt_token_types, base.vision, base.before, tokens, [],
                                     meta))  # fmt: skip
        return seqs, texts, lengths

    def rewards(self, prompts: list[Prompt], texts: list[str], lengths: list[int]) -> list[float]:
        if not prompts:
            return []
        g = len(texts) // len(prompts)
        grouped = [texts[k * g : (k + 1) * g] for k in range(len(prompts))]
        rl = self.rl
        rewards = compute_rewards(str(rl.reward), prompts, grouped, self.reward_scorer, str(rl.reward_transform))
        flat = [r for group in rewards for r in group]
        return [
            r + overlong_penalty(n, int(rl.max_new_tokens), int(rl.overlong_buffer), float(rl.overlong_penalty))
            for r, n in zip(flat, lengths, strict=True)
        ]

    def collect(self, step: int) -> Batch:
        """This process's rollouts of the step, with DAPO's dynamic sampling when asked (which groups are kept is
        decided on every process's rewards, in the prompts' order)."""
        rl = self.rl
        rng = random.Random(f"rl-{self.cfg.run.seed}-{step}")
        wanted, g = int(rl.prompts_per_step), int(rl.group_size)
        seqs, texts, rewards, group, lengths = [], [], [], [], []
        used = dropped = kept = 0
        tries = int(rl.max_gen_batches) if rl.dynamic_sampling else 1
        for attempt in range(tries):
            drawn = [as_prompt(p) for p in rng.sample(self.train_pairs, min(wanted, len(self.train_pairs)))]
            mine = self.mine(len(drawn))
            prompts = [drawn[i] for i in mine]
            s, t, n = self.sample(prompts, seed=int(self.cfg.run.seed) * 1_000_003 + step * 101 + attempt)
            r = self.rewards(prompts, t, n)
            rewards_of = dict(self.dist.gather([(i, r[k * g : (k + 1) * g]) for k, i in enumerate(mine)]))
            used += len(drawn)
            for i in range(len(drawn)):
                if kept >= wanted:
                    break
                if rl.dynamic_sampling and len(set(rewards_of[i])) == 1:
                    dropped += 1
                    continue
                if i in mine:
                    k = mine.index(i)
                    for j in range(k * g, (k + 1) * g):
                        seqs.append(s[j])
                        texts.append(t[j])
                        rewards.append(r[j])
                        lengths.append(n[j])
                        group.append(kept)
                kept += 1
            if kept >= wanted:
                break
        return Batch(
            seqs, texts, torch.tensor(rewards), torch.tensor(group, dtype=torch.long), lengths, used, dropped, kept
        )

    # ------------------------------------------------------------------------------------------------- update
    def token_stats(self, model, seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, entropies, mask), each (N, T) over the completion tokens, computed `rl.stats_rows` sequences
        at a time (the vocabulary-wide logits of a whole rollout batch never exist at once); every process runs as
        many forwards as the busiest one (idle ones on an idle sequence)."""
        rows = max(1, int(self.rl.stats_rows))
        width = max((len(s.completion) for s in seqs), default=0)
        rounds = max(self.dist.gather([-(-len(seqs) // rows)]))
        parts = []
        for k in range(rounds):
            part = seqs[k * rows : (k + 1) * rows]
            batch = collate_completions(part or [self.idle_seq], self.pad_id, with_end=False)
            with self.strategy.autocast():
                logits = model(batch)
            if not part:
                continue
            logp, entropy = token_logprobs_and_entropy(logits, batch["lm_tokens"].to(logits.device))
            parts.append((_padded(logp, part, width), _padded(entropy, part, width)))
        logp = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, width)
        entropy = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, width)
        mask = torch.zeros_like(logp)
        for i, s in enumerate(seqs):
            mask[i, : len(s.completion)] = 1.0
        return logp, entropy, mask

    def update(self, batch: Batch, optimizer) -> dict[str, float]:
        rl, dist, strategy = self.rl, self.dist, self.strategy
        with torch.no_grad():
            self.policy.eval()
            old_logp, entropy, mask = self.token_stats(self.policy, batch.seqs)
            ref_logp = self.token_stats(self.reference, batch.seqs)[0] if self.reference is not None else None
        gap = engine_gap(batch.seqs, old_logp, mask)
        # advantages of the whole batch (a group is on one process; batch-wide scopes and normalizers are not)
        rows = dist.gather([(int(gid), float(r), m.tolist(), e.tolist())
                            for gid, r, m, e in zip(batch.group, batch.rewards, mask.cpu(), entropy.cpu(), strict=True)])  # fmt: skip
        rows.sort(key=lambda row: row[0])  # stable: a group's samples keep their order
        width = max((len(row[2]) for row in rows), default=0)
        everything = Rollouts(
            torch.tensor([row[1] for row in rows]),
            torch.tensor([row[0] for row in rows], dtype=torch.long),
            torch.tensor([row[2] + [0.0] * (width - len(row[2])) for row in rows]),
            torch.tensor([row[3] + [0.0] * (width - len(row[3])) for row in rows]),
        )
        all_adv = compute_advantages(str(rl.algorithm), everything, rl)
        local_groups = sorted(set(batch.group.tolist()))
        first = {gid: next(i for i, row in enumerate(rows) if row[0] == gid) for gid in local_groups}
        g = int(rl.group_size)
        index = [first[gid] + k for gid in local_groups for k in range(g)]  # this process's rows in the batch
        advantages = all_adv[index, : mask.shape[1]].to(old_logp.device) if index else old_logp.new_zeros(0, 0)
        n_all = len(rows)
        self.policy.train()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        totals: dict[str, float] = {}
        updates = 0
        order = list(range(n_all))
        mini = int(rl.mini_batches)
        for epoch in range(int(rl.ppo_epochs)):
            random.Random(f"rl-epoch-{epoch}-{n_all}").shuffle(order)
            for chunk in (order[i::mini] for i in range(mini)):
                if not chunk:
                    continue
                chosen = set(chunk)
                local = [k for k, i in enumerate(index) if i in chosen]
                if str(rl.loss_agg) == "token_mean":
                    normalizer = float(everything.mask[sorted(chunk)].sum())
                else:
                    normalizer = float(len(chunk))
                part = [batch.seqs[k] for k in local] or [self.idle_seq]  # an empty share still runs (collectives)
                inputs = collate_completions(part, self.pad_id, with_end=False)
                with strategy.micro_step(self.policy, last=True):
                    with strategy.autocast():
                        logits = self.policy(inputs)
                    if local:
                        logp, _ = token_logprobs_and_entropy(logits, inputs["lm_tokens"].to(logits.device))
                        logp = _padded(logp, part, max(len(s.completion) for s in part))
                        width, sel = logp.shape[1], torch.tensor(local)
                        loss, metrics = policy_loss(
                            logp, old_logp[sel, :width], advantages[sel, :width], mask[sel, :width], rl, normalizer,
                            None if ref_logp is None else ref_logp[sel, :width],
                        )  # fmt: skip
                        # the strategy averages gradients over the processes; the loss is their sum
                        loss = loss * dist.world_size
                    else:
                        loss, metrics = logits.sum() * 0.0, {"clip_fraction": 0.0, "approx_kl_old": 0.0, "kl_ref": 0.0}
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                grad_norm = strategy.clip_grad_norm(params, float(rl.max_grad_norm))
                optimizer.step()
                # token means over the processes, each weighing its tokens (a process may have none); the loss is
                # the mean of the processes' (world size x their share of one normalizer)
                tokens = float(mask[torch.tensor(local)].sum()) if local else 0.0
                reduced = dist.mean({**{k: v * tokens for k, v in metrics.items()}, "tokens": tokens,
                                     "loss": loss.item()})  # fmt: skip
                weight, chunk_loss = max(reduced.pop("tokens"), 1e-12), reduced.pop("loss")
                chunk = {k: v / weight for k, v in reduced.items()}
                for k, v in {**chunk, "loss": chunk_loss, "grad_norm": grad_norm}.items():
                    totals[k] = totals.get(k, 0.0) + v
                updates += 1
        return {
            **{k: v / max(updates, 1) for k, v in totals.items()},
            "reward_mean": float(everything.rewards.mean()),
            "entropy": float((everything.entropy * everything.mask).sum() / everything.mask.sum().clamp_min(1.0)),
            "response_length": float(everything.mask.sum(1).mean()) if n_all else 0.0,
            "groups": float(len({row[0] for row in rows})),
            "groups_dropped": float(batch.groups_dropped),
            **gap,
        }

    # ----------------------------------------------------------------------------------------------- evaluate
    def evaluate(self, limit: int) -> dict[str, dict]:
        """Each test source's first `limit` prompts: greedy answers (`exact_match`, the rule's mean, and the configured
        reward where a model gives it) and `group_size` samples each at the rollout temperature
        (`sampled_exact_match`: the mean rule reward of what the policy samples, the quantity RL raises; seeded per
        prompt, so before and after compare). The processes of a job answer their share; every one gets the whole."""
        out = {}
        g = int(self.rl.group_size)
        for src in self.test_sources:
            prompts = [as_prompt(p) for p in load_sources([src])[:limit]]
            if not prompts:
                raise ConfigError(f"test source {src.name} ({src.path}): no prompt to evaluate on")
            mine = self.mine(len(prompts))
            share = -(-len(prompts) // self.dist.world_size)
            answers = []
            for start in range(0, share, 32):  # every process the same number of calls (collectives)
                ids = mine[start : start + 32]
                part = [prompts[i] for i in ids] or prompts[:1]
                texts = self.sample(part, seed=0, greedy=True)[1]
                drawn = self.sample(part, seed=1)[1]
                sampled = [
                    sum(rule_reward(t, p.answer) for t in drawn[k * g : (k + 1) * g]) / g for k, p in enumerate(part)
                ]
                reward = [None] * len(part)
                if self.reward_scorer is not None and str(self.rl.reward) != "pairwise":
                    reward = [r[0] for r in compute_rewards(str(self.rl.reward), part, [[t] for t in texts],
                                                            self.reward_scorer, str(self.rl.reward_transform))]  # fmt: skip
                answers += [(i, texts[k], sampled[k], reward[k]) for k, i in enumerate(ids)]
            answers = sorted(self.dist.gather(answers))
            texts = [a[1] for a in answers]
            metrics = {
                "exact_match": 100.0 * sum(rule_reward(t, p.answer) for t, p in zip(texts, prompts, strict=True)) / len(prompts),
                "sampled_exact_match": 100.0 * sum(a[2] for a in answers) / len(answers),
                "n": len(prompts),
            }  # fmt: skip
            if answers and answers[0][3] is not None:
                metrics["reward"] = sum(a[3] for a in answers) / len(answers)
            out[src.name] = {"metrics": metrics, "answers": [{"id": p.id, "answer": p.answer, "output": t}
                                                             for p, t in zip(prompts, texts, strict=True)]}  # fmt: skip
        return out


def engine_gap(seqs: list[Sequence], old_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far the generation engine's log-probabilities of the rollouts' tokens (generation.engine=vllm) are from
    the trainer's, which the importance ratio uses: the mean and largest absolute difference over the tokens both
    have (empty when the rollouts carry none)."""
    diffs = []
    for i, s in enumerate(seqs):
        lp = s.meta.get("engine_logp")
        if lp is None:
            continue
        engine = torch.tensor([float("nan") if v is None else v for v in lp], dtype=torch.float64)
        n = min(len(engine), int(mask[i].sum()))
        d = (engine[:n] - old_logp[i, :n].double().cpu()).abs()
        diffs.append(d[~d.isnan()])
    if not diffs or not sum(len(d) for d in diffs):
        return {}
    d = torch.cat(diffs)
    return {"engine_logp_gap": float(d.mean()), "engine_logp_gap_max": float(d.max())}


def _padded(flat: torch.Tensor, seqs: list[Sequence], width: int) -> torch.Tensor:
    """Flat per-target values (collate_completions' order) as (N, width), zero-padded."""
    out = flat.new_zeros(len(seqs), width)
    offset = 0
    for i, s in enumerate(seqs):
        n = len(s.completion)
        out[i, :n] = flat[offset : offset + n]
        offset += n
    return out


def load_policy(cfg: DictConfig):
    """(policy, processor): the SFT run `rl.policy` names, or the configured backbone as it is."""
    if cfg.rl.policy:
        path = resolve_run(str(cfg.rl.policy), cfg, "rl.policy")
        model, processor = load_reward_model(path)
        if not isinstance(model, JudgeModel):
            raise ConfigError(
                f"rl.policy {path}: a reward model with a head, not a policy (train it with paradigm=sft)"
            )
        for p in model.parameters():
            p.requires_grad_(True)
        return model, processor
    return SFT().build(cfg)


def train_policy(stage: StageRun) -> None:
    """The stage's body: evaluate the starting policy (once), train it (or resume), save it, evaluate it again.

    With generation.engine=vllm a vLLM server on the starting policy (saved under vllm/policy) generates every
    rollout and answer; the policy's weights reach it every `generation.sync_every` optimizer steps (and before the
    final evaluation) as a reload from a saved directory (rmlab.generation.engine.VLLMEngine.sync_from). The old
    log-probabilities and entropies are the trainer's own, so the importance ratio is the trainer's; the server's
    log-probabilities of the same tokens are logged beside them (`rl/engine_logp_gap`)."""
    cfg, run, dist = stage.cfg, stage.run, stage.dist
    strategy = Strategy.for_config(cfg, dist)
    state = PolicyRun(cfg, strategy)
    engine = None
    if str(cfg.generation.engine) == "vllm":  # a server on the starting policy; its weights reloaded as it learns
        check_one_process(dist.world_size)
        served = state.module.save(run.path / "vllm" / "policy", state.encoder.processor)
        engine = start_engine(state.module, state.encoder.processor, served, run.path / "vllm", cfg, True)
    try:
        _train_policy(stage, state, strategy, engine)
    finally:
        if engine is not None:
            engine.close()


def _train_policy(stage: StageRun, state: PolicyRun, strategy: Strategy, engine) -> None:
    cfg, run, log, dist = stage.cfg, stage.run, stage.log, stage.dist
    rl = cfg.rl
    synced = 0  # the step whose weights the server holds (engine=vllm)
    every = max(1, int(cfg.generation.sync_every))

    def sync(step: int) -> dict[str, float]:
        nonlocal synced
        if engine is None or step == synced:
            return {}
        seconds = engine.sync_from(state.module, run.path / "vllm")
        synced = step
        return {"sync_seconds": seconds}

    params = [p for p in state.policy.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, float(rl.lr), float(rl.weight_decay))
    scheduler = make_scheduler(optimizer, "constant", int(rl.steps), 0.0)
    initial_path = run.path / "initial_eval.json"
    if not initial_path.exists():
        initial = {k: v["metrics"] for k, v in state.evaluate(int(rl.eval_prompts)).items()}
        if dist.is_main:
            atomic_write_json(initial_path, initial)
        dist.barrier()
    trainer = resume(run.checkpoints, state.policy, optimizer, scheduler, dist)
    start = trainer["step"] if trainer else 0
    sync(start)  # a resumed policy: the server gets its weights
    log.rewind(start)  # the steps after the checkpoint are done again: logged once
    initial = json.loads(initial_path.read_text())
    r = cfg.run
    bar = progress(total=int(rl.steps), initial=start, desc=f"rl {run.signature}", enabled=r.progress and dist.is_main)
    guard = PreemptionGuard().install()
    with CheckpointWriter(run.checkpoints, r.keep_checkpoints, dist) as writer:
        for step in range(start, int(rl.steps)):
            started = time.perf_counter()
            synced_now = sync(step) if step - synced >= every else {}
            batch = state.collect(step)
            if not batch.groups_kept:
                log.log({"rl/groups": 0.0, "rl/groups_dropped": float(batch.groups_dropped)}, step=step + 1)
                metrics = {}
            else:
                metrics = state.update(batch, optimizer)
                metrics["seconds"] = time.perf_counter() - started
                if engine is not None:
                    metrics.update(synced_now, weights_lag=float(step - synced))
                log.log({f"rl/{k}": v for k, v in metrics.items()}, step=step + 1)
            done = step + 1
            bar.update(1)
            bar.set_postfix(reward=f"{metrics.get('reward_mean', float('nan')):.3f}", refresh=False)
            preempted = dist.any(guard.requested)
            if (r.save_every and done % r.save_every == 0 or preempted) and done < int(rl.steps):
                writer.save(done, state.policy, optimizer, scheduler)
                if dist.is_main:
                    run.update_status(step=done)
            if preempted and done < int(rl.steps):  # (at the last step the run finishes instead: its model is saved)
                writer.finish()
                print(f"[rmlab] preempted: checkpoint of step {done} written, handing over to the requeue")
                guard.hand_over()
    guard.uninstall()
    bar.close()
    state.policy.eval()
    full = strategy.full_state_dict(state.policy)
    if dist.is_main:
        state.module.save(run.model, state.encoder.processor, full, dtype=strategy.dtype)
    del full
    sync(int(rl.steps))  # the final policy answers the held-out prompts
    results = {}
    for name, out in state.evaluate(int(rl.eval_prompts)).items():
        metrics = {**out["metrics"], **{f"initial_{k}": v for k, v in initial.get(name, {}).items() if k != "n"}}
        if dist.is_main:
            answers = "".join(json.dumps(a) + "\n" for a in out["answers"])
            atomic_write_text(run.eval_dir(name) / "predictions.jsonl", answers)
            atomic_write_json(run.eval_dir(name) / "metrics.json", metrics)
        results[name] = metrics
    log.summary(numeric_leaves(results, "eval/"))
