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
from rmlab.models.reward_model import JudgeModel, load_reward_model
from rmlab.paradigms.sft import SFT, AnswerEncoder
from rmlab.paradigms.tokens import Sequence, collate_completions, generate, stop_ids
from rmlab.rl.advantages import Rollouts, compute_advantages
from rmlab.rl.loss import policy_loss, token_logprobs_and_entropy
from rmlab.rl.rewards import Prompt, compute_rewards, rule_reward
from rmlab.runtime.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rmlab.runtime.lifecycle import StageRun
from rmlab.runtime.optim import make_optimizer, make_scheduler
from rmlab.runtime.preemption import PreemptionGuard
from rmlab.runtime.run_dir import resolve_run
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


def as_prompt(pair) -> Prompt:
    return Prompt(id=pair.id, messages=pair.prompt, answer=pair.chosen, images=pair.images, category=pair.category)


def overlong_penalty(length: int, max_new_tokens: int, buffer: int, factor: float) -> float:
    """DAPO's soft overlong punishment: 0 up to max - buffer, then linearly down to -factor at max."""
    if buffer <= 0:
        return 0.0
    exceed = length - (max_new_tokens - buffer)
    return min(-exceed / buffer * factor, 0.0)


class PolicyRun:
    """What one policy run holds while it trains: the policy, its encoder, prompts, the reward scorer."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.rl = cfg, cfg.rl
        self.policy, processor = load_policy(cfg)
        self.encoder = AnswerEncoder(processor, cfg.data_mix.max_length)
        self.tokenizer = self.encoder.tokenizer
        self.pad_id, self.stops = self.tokenizer.pad_token_id, stop_ids(self.tokenizer)
        self.train_pairs = load_sources(resolve_sources(cfg.data_mix.train, cfg.datasets))
        self.test_sources = resolve_sources(cfg.data_mix.test, cfg.datasets)
        if not self.train_pairs:
            raise ConfigError(f"data_mix {cfg.data_mix.name}: no training prompt")
        self.reward_scorer = None
        if str(self.rl.reward) != "rule":
            if not self.rl.reward_model:
                raise ConfigError(f"rl.reward={self.rl.reward} needs rl.reward_model (a run dir or signature)")
            self.reward_scorer = load_reward_scorer(resolve_run(str(self.rl.reward_model), cfg, "rl.reward_model"), cfg)
        self.reference = None
        if float(self.rl.kl_coef) > 0:
            self.reference = copy.deepcopy(self.policy).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

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
        bases = [self.encode(p) for p in prompts]
        samples = 1 if greedy else int(rl.group_size)
        self.policy.eval()
        outputs = generate(
            self.policy, bases, self.pad_id, self.stops, int(rl.max_new_tokens), samples, float(rl.temperature),
            seed, keep_stop=True,
        )  # fmt: skip
        seqs, texts, lengths = [], [], []
        for base, group in zip(bases, outputs, strict=True):
            for tokens in group:
                answer = [t for t in tokens if t not in self.stops]
                texts.append(self.tokenizer.decode(answer))
                lengths.append(len(tokens))
                seqs.append(Sequence(base.prompt_ids, base.prompt_token_types, base.vision, base.before, tokens, []))
        return seqs, texts, lengths

    def rewards(self, prompts: list[Prompt], texts: list[str], lengths: list[int]) -> list[float]:
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
        """The step's rollouts, with DAPO's dynamic sampling when asked."""
        rl = self.rl
        rng = random.Random(f"rl-{self.cfg.run.seed}-{step}")
        wanted, g = int(rl.prompts_per_step), int(rl.group_size)
        seqs, texts, rewards, group, lengths = [], [], [], [], []
        used = dropped = 0
        tries = int(rl.max_gen_batches) if rl.dynamic_sampling else 1
        for attempt in range(tries):
            prompts = [as_prompt(p) for p in rng.sample(self.train_pairs, min(wanted, len(self.train_pairs)))]
            s, t, n = self.sample(prompts, seed=int(self.cfg.run.seed) * 1_000_003 + step * 101 + attempt)
            r = self.rewards(prompts, t, n)
            used += len(prompts)
            for k in range(len(prompts)):
                rows = range(k * g, (k + 1) * g)
                if rl.dynamic_sampling and len({r[i] for i in rows}) == 1:
                    dropped += 1
                    continue
                if len(set(group)) >= wanted:
                    break
                gid = len(set(group))
                for i in rows:
                    seqs.append(s[i])
                    texts.append(t[i])
                    rewards.append(r[i])
                    lengths.append(n[i])
                    group.append(gid)
            if len(set(group)) >= wanted:
                break
        return Batch(seqs, texts, torch.tensor(rewards), torch.tensor(group, dtype=torch.long), lengths, used, dropped)

    # ------------------------------------------------------------------------------------------------- update
    def token_stats(self, model, seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, entropies, mask), each (N, T) over the completion tokens."""
        batch = collate_completions(seqs, self.pad_id, with_end=False)
        logp, entropy = token_logprobs_and_entropy(model(batch), batch["lm_tokens"].to(model.device()))
        return _padded(logp, seqs), _padded(entropy, seqs), _padded(torch.ones_like(logp), seqs)

    def update(self, batch: Batch, optimizer) -> dict[str, float]:
        rl = self.rl
        with torch.no_grad():
            self.policy.eval()
            old_logp, entropy, mask = self.token_stats(self.policy, batch.seqs)
            ref_logp = self.token_stats(self.reference, batch.seqs)[0] if self.reference is not None else None
        advantages = compute_advantages(
            str(rl.algorithm), Rollouts(batch.rewards, batch.group, mask.cpu(), entropy.cpu()), rl
        ).to(old_logp.device)
        n = len(batch.seqs)
        self.policy.train()
        params = [p for p in self.policy.parameters() if p.requires_grad]
        totals: dict[str, float] = {}
        order = list(range(n))
        for epoch in range(int(rl.ppo_epochs)):
            random.Random(f"rl-epoch-{epoch}-{n}").shuffle(order)
            chunks = [order[i :: int(rl.mini_batches)] for i in range(int(rl.mini_batches))]
            for idx in chunks:
                if not idx:
                    continue
                part = [batch.seqs[i] for i in idx]
                logp, _, _ = self.token_stats(self.policy, part)
                width = logp.shape[1]
                sel = torch.tensor(idx)
                part_mask = mask[sel, :width]
                normalizer = part_mask.sum().item() if str(rl.loss_agg) == "token_mean" else float(len(idx))
                loss, metrics = policy_loss(
                    logp, old_logp[sel, :width], advantages[sel, :width], part_mask, rl, normalizer,
                    None if ref_logp is None else ref_logp[sel, :width],
                )  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, rl.max_grad_norm or float("inf")))
                optimizer.step()
                for k, v in {**metrics, "loss": loss.item(), "grad_norm": grad_norm}.items():
                    totals[k] = totals.get(k, 0.0) + v / (len(chunks) * int(rl.ppo_epochs))
        return {
            **totals,
            "reward_mean": batch.rewards.mean().item(),
            "entropy": ((entropy * mask).sum() / mask.sum()).item(),
            "response_length": sum(batch.lengths) / len(batch.lengths),
            "groups": float(len(set(batch.group.tolist()))),
            "groups_dropped": float(batch.groups_dropped),
        }

    # ----------------------------------------------------------------------------------------------- evaluate
    def evaluate(self, limit: int) -> dict[str, dict]:
        """Each test source's first `limit` prompts: greedy answers (`exact_match`, the rule's mean, and the configured
        reward where a model gives it) and `group_size` samples each at the rollout temperature
        (`sampled_exact_match`: the mean rule reward of what the policy samples, the quantity RL raises; seeded, so
        before and after compare)."""
        out = {}
        for src in self.test_sources:
            prompts = [as_prompt(p) for p in load_sources([src])[:limit]]
            texts, sampled = [], []
            for start in range(0, len(prompts), 32):
                part = prompts[start : start + 32]
                texts += self.sample(part, seed=0, greedy=True)[1]
                g = int(self.rl.group_size)
                drawn = self.sample(part, seed=1 + start)[1]
                sampled += [rule_reward(t, p.answer) for k, p in enumerate(part) for t in drawn[k * g : (k + 1) * g]]
            matched = sum(rule_reward(t, p.answer) for t, p in zip(texts, prompts, strict=True)) / len(prompts)
            metrics = {
                "exact_match": 100.0 * matched,
                "sampled_exact_match": 100.0 * sum(sampled) / len(sampled),
                "n": len(prompts),
            }
            if self.reward_scorer is not None and str(self.rl.reward) != "pairwise":
                rewards = compute_rewards(str(self.rl.reward), prompts, [[t] for t in texts], self.reward_scorer,
                                          str(self.rl.reward_transform))  # fmt: skip
                metrics["reward"] = sum(r[0] for r in rewards) / len(rewards)
            out[src.name] = {"metrics": metrics, "answers": [{"id": p.id, "answer": p.answer, "output": t}
                                                             for p, t in zip(prompts, texts, strict=True)]}  # fmt: skip
        return out


def _padded(flat: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """Flat per-target values (collate_completions' order) as (N, T), zero-padded."""
    width = max(len(s.completion) for s in seqs)
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
    """The stage's body: evaluate the starting policy (once), train it (or resume), save it, evaluate it again."""
    cfg, run, log = stage.cfg, stage.run, stage.log
    rl = cfg.rl
    state = PolicyRun(cfg)
    params = [p for p in state.policy.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, float(rl.lr), float(rl.weight_decay))
    scheduler = make_scheduler(optimizer, "constant", int(rl.steps), 0.0)
    start = 0
    initial_path = run.path / "initial_eval.json"
    if not initial_path.exists():
        atomic_write_json(initial_path, {k: v["metrics"] for k, v in state.evaluate(int(rl.eval_prompts)).items()})
    ckpt = latest_checkpoint(run.checkpoints)
    if ckpt is not None:
        start = load_checkpoint(ckpt, state.policy, optimizer, scheduler)["step"]
        print(f"[rmlab] resumed from {ckpt.name}")
    initial = json.loads(initial_path.read_text())
    r = cfg.run
    bar = progress(total=int(rl.steps), initial=start, desc=f"rl {run.signature}", enabled=r.progress)
    guard = PreemptionGuard().install()
    for step in range(start, int(rl.steps)):
        started = time.perf_counter()
        batch = state.collect(step)
        if not batch.seqs:
            log.log({"rl/groups": 0.0, "rl/groups_dropped": float(batch.groups_dropped)}, step=step + 1)
            metrics = {}
        else:
            metrics = state.update(batch, optimizer)
            metrics["seconds"] = time.perf_counter() - started
            log.log({f"rl/{k}": v for k, v in metrics.items()}, step=step + 1)
        done = step + 1
        bar.update(1)
        bar.set_postfix(reward=f"{metrics.get('reward_mean', float('nan')):.3f}", refresh=False)
        if (r.save_every and done % r.save_every == 0 or guard.requested) and done < int(rl.steps):
            save_checkpoint(run.checkpoints, done, state.policy, optimizer, scheduler, {}, keep=r.keep_checkpoints)
            run.update_status(step=done)
        if guard.requested:
            print(f"[rmlab] preempted: checkpoint of step {done} written, handing over to the requeue")
            guard.hand_over()
    guard.uninstall()
    bar.close()
    state.policy.eval()
    state.policy.save(run.model, state.encoder.processor)
    results = {}
    for name, out in state.evaluate(int(rl.eval_prompts)).items():
        metrics = {**out["metrics"], **{f"initial_{k}": v for k, v in initial.get(name, {}).items() if k != "n"}}
        atomic_write_text(
            run.eval_dir(name) / "predictions.jsonl", "".join(json.dumps(a) + "\n" for a in out["answers"])
        )
        atomic_write_json(run.eval_dir(name) / "metrics.json", metrics)
        results[name] = metrics
    log.summary(numeric_leaves(results, "eval/"))
