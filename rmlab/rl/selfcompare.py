"""Self-compare fine-tuning (`stage=selfcompare`), SkyMath (arXiv 2310.16713) as we read it: an unverified recipe.

The paper's body was not available to us; the reference notes' reading is what this builds, with its switches in
`selfcompare.*`:

1. The starting policy (`rl.policy`, an SFT run) answers the mix's training questions, greedily.
2. Each answer becomes a conversation: the question, the policy's answer, a reflection turn
   (`selfcompare.reflection_prompt` naming the reference answer, or `reflection_prompt_blind` without it), and as the
   target the comparison ("My answer, X, differs from the reference, Y: it is wrong." or "... matches ...") followed
   by "Corrected answer: Y". Answers that were already right are kept only with `include_correct`.
3. Those conversations are written to `selfcompare.jsonl` in the run directory (Tulu 3's preference schema: whole
   conversations, read back by its adapter), and the policy is fine-tuned from its own weights on them (plus the
   original pairs with `keep_original`), by the reward-model trainer with `paradigm=sft`: the run ends with the
   model, its exact-match accuracy on the mix's test sources, and the counts of what was built.
"""

from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

from rmlab.launch.run_dir import RunDir, run_once
from rmlab.rl.rewards import Prompt, normalize_answer


def comparison(own: str, reference: str) -> str:
    """The target's comparison sentence and the corrected answer."""
    if normalize_answer(own) == normalize_answer(reference):
        verdict = f"My answer, {own.strip()}, matches the reference, {reference}: it is right."
    else:
        verdict = f"My answer, {own.strip()}, differs from the reference, {reference}: it is wrong."
    return f"{verdict}\nCorrected answer: {reference}"


def self_compare_row(prompt: Prompt, own: str, cfg) -> dict | None:
    """One training conversation in Tulu 3's schema, or None when the answer was right and is not kept."""
    right = normalize_answer(own) == normalize_answer(prompt.answer)
    if right and not cfg.include_correct:
        return None
    ask = cfg.reflection_prompt.format(reference=prompt.answer) if cfg.use_reference else cfg.reflection_prompt_blind
    turns = [*prompt.messages, {"role": "assistant", "content": own}, {"role": "user", "content": ask}]
    return {
        "id": f"{prompt.id}:selfcompare",
        "prompt": "",
        "chosen": [*turns, {"role": "assistant", "content": comparison(own, prompt.answer)}],
        "rejected": [*turns, {"role": "assistant", "content": own}],
        "source": "selfcompare-right" if right else "selfcompare-wrong",
    }


def run_selfcompare(cfg: DictConfig) -> RunDir:
    return run_once(cfg, lambda run: _selfcompare(cfg, run))


def _selfcompare(cfg: DictConfig, run: RunDir) -> None:
    from rmlab.errors import ConfigError
    from rmlab.launch.distributed import SINGLE
    from rmlab.rl.recipe import PolicyRun, as_prompt
    from rmlab.train.recipe import _train
    from rmlab.util.atomic import atomic_write_json, atomic_write_text

    if not cfg.rl.policy:
        raise ConfigError("stage=selfcompare needs rl.policy: the SFT run whose answers are compared")
    data = run.path / "selfcompare.jsonl"
    if not data.exists():  # built once: a resumed run trains on the same conversations
        state = PolicyRun(cfg)
        c = cfg.selfcompare
        pairs = state.train_pairs[: c.max_questions or None]
        if any(p.images or p.videos for p in pairs):
            raise ConfigError(
                "stage=selfcompare reads text questions (SkyMath is a text math model): this mix has images"
            )
        prompts = [as_prompt(p) for p in pairs]
        answers = []
        for start in range(0, len(prompts), 32):
            answers += state.sample(prompts[start : start + 32], seed=0, greedy=True)[1]
        rows = [self_compare_row(p, a, c) for p, a in zip(prompts, answers, strict=True)]
        kept = [r for r in rows if r is not None]
        if not kept:
            raise ConfigError("selfcompare: every answer was right and include_correct is off: nothing to train on")
        right = sum(normalize_answer(a) == normalize_answer(p.answer) for p, a in zip(prompts, answers, strict=True))
        atomic_write_json(run.path / "selfcompare_counts.json",
                          {"questions": len(prompts), "right": right, "wrong": len(prompts) - right,
                           "examples": len(kept)})  # fmt: skip
        atomic_write_text(data, "".join(json.dumps(r) + "\n" for r in kept))
        del state
    sft = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    sft["stage"] = "reward_model"
    sft["paradigm"]["name"] = "sft"
    sft["train"]["init_from"] = str(cfg.rl.policy)
    source = {"name": "selfcompare", "adapter": "tulu3", "path": str(data)}
    sft["data_mix"]["train"] = [*(sft["data_mix"]["train"] if cfg.selfcompare.keep_original else []), source]
    sft["data_mix"]["streaming"] = False
    derived = OmegaConf.merge(cfg, sft)
    _train(derived, run, SINGLE)
