"""Self-compare fine-tuning (`stage=selfcompare`), SkyMath (arXiv 2310.16713) as we read it: an unverified recipe.

The paper's body was not available to us; the reference notes' reading is what this builds, with its switches in
`selfcompare.*`:

1. The starting policy (`selfcompare.policy`, an SFT run) answers the mix's training questions, greedily.
2. Each answer becomes a conversation: the question, the policy's answer, a reflection turn
   (`selfcompare.reflection_prompt` naming the reference answer, or `reflection_prompt_blind` without it), and as the
   target the comparison ("My answer, X, differs from the reference, Y: it is wrong." or "... matches ...") followed
   by "Corrected answer: Y". Answers that were already right are kept only with `include_correct`.
3. Those conversations are written to `selfcompare.jsonl` in the run directory (Tulu 3's preference schema: whole
   conversations, read back by its adapter), and the policy is fine-tuned from its own weights on them (plus the
   original pairs with `keep_original`) by the reward-model stage's body as `paradigm=sft` (with `train`): the run
   ends with the model, its exact match on the mix's test sources, and the counts of what was built.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rmlab.data.encode import encode_all
from rmlab.data.mix import load_sources, resolve_sources
from rmlab.data.records import PreferencePair
from rmlab.errors import ConfigError
from rmlab.models.reward_model import JudgeModel, load_reward_model
from rmlab.paradigms.answers import exact_match
from rmlab.paradigms.sft import AnswerEncoder, greedy_answers
from rmlab.runtime.lifecycle import StageRun
from rmlab.runtime.run_dir import resolve_run
from rmlab.train.recipe import train_reward_model
from rmlab.util.atomic import atomic_write_json, atomic_write_text

DATA_FILE = "selfcompare.jsonl"


def comparison(own: str, reference: str) -> str:
    """The target's comparison sentence and the corrected answer."""
    if exact_match(own, reference):
        verdict = f"My answer, {own.strip()}, matches the reference, {reference}: it is right."
    else:
        verdict = f"My answer, {own.strip()}, differs from the reference, {reference}: it is wrong."
    return f"{verdict}\nCorrected answer: {reference}"


def self_compare_row(pair: PreferencePair, own: str, settings) -> dict | None:
    """One training conversation in Tulu 3's schema (from a question, its reference answer `pair.chosen` and the
    policy's answer), or None when the answer was right and is not kept."""
    right = exact_match(own, pair.chosen)
    if right and not settings.include_correct:
        return None
    ask = (
        settings.reflection_prompt.format(reference=pair.chosen)
        if settings.use_reference
        else settings.reflection_prompt_blind
    )
    turns = [*pair.prompt, {"role": "assistant", "content": own}, {"role": "user", "content": ask}]
    return {
        "id": f"{pair.id}:selfcompare",
        "prompt": "",
        "chosen": [*turns, {"role": "assistant", "content": comparison(own, pair.chosen)}],
        "rejected": [*turns, {"role": "assistant", "content": own}],
        "source": "selfcompare-right" if right else "selfcompare-wrong",
    }


def build_conversations(cfg: DictConfig, out: Path) -> None:
    """The policy's greedy answers to the mix's training questions, as self-compare conversations in `out` (and
    their counts beside it)."""
    c = cfg.selfcompare
    path = resolve_run(str(c.policy), cfg, "selfcompare.policy")
    policy, processor = load_reward_model(path)
    if not isinstance(policy, JudgeModel):
        raise ConfigError(f"selfcompare.policy {path}: a reward model with a head, not a policy (paradigm=sft)")
    pairs = load_sources(resolve_sources(cfg.data_mix.train, cfg.datasets))[: c.max_questions or None]
    if any(p.images or p.videos for p in pairs):
        raise ConfigError("stage=selfcompare reads text questions (SkyMath is a text math model): this mix has images")
    encoder = AnswerEncoder(processor, cfg.data_mix.max_length)
    items, pairs, _ = encode_all(encoder, pairs, "encode questions", progress=False)
    answers = []
    for start in range(0, len(items), 32):
        answers += greedy_answers(policy, items[start : start + 32], encoder.tokenizer, int(c.max_new_tokens))
    rows = [self_compare_row(p, a, c) for p, a in zip(pairs, answers, strict=True)]
    kept = [r for r in rows if r is not None]
    if not kept:
        raise ConfigError("selfcompare: every answer was right and include_correct is off: nothing to train on")
    right = sum(exact_match(a, p.chosen) for p, a in zip(pairs, answers, strict=True))
    counts = {"questions": len(pairs), "right": right, "wrong": len(pairs) - right, "examples": len(kept)}
    atomic_write_json(out.with_name("selfcompare_counts.json"), counts)
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in kept))


def fine_tuning_config(cfg: DictConfig, data: Path) -> DictConfig:
    """The config the fine-tuning reads: paradigm=sft from the policy's weights, on the conversations (and the
    original pairs with `keep_original`), held in memory."""
    source = {"name": "selfcompare", "adapter": "tulu3", "path": str(data)}
    original = OmegaConf.to_container(cfg.data_mix.train, resolve=False) if cfg.selfcompare.keep_original else []
    changes = {
        "paradigm": {"name": "sft"},
        "train": {"init_from": str(cfg.selfcompare.policy)},
        "data_mix": {"train": [*original, source], "streaming": False},
    }
    return OmegaConf.merge(cfg, changes)


def selfcompare(stage: StageRun) -> None:
    """The stage's body: the conversations (built once, so a resumed run trains on the same ones), then SFT."""
    cfg = stage.cfg
    if not cfg.selfcompare.policy:
        raise ConfigError("stage=selfcompare needs selfcompare.policy: the SFT run whose answers are compared")
    data = stage.run.path / DATA_FILE
    if not data.exists() and stage.dist.is_main:  # rank 0 builds them; the job's other processes wait
        build_conversations(cfg, data)
    stage.dist.barrier()
    train_reward_model(dataclasses.replace(stage, cfg=fine_tuning_config(cfg, data)))
