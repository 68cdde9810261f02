"""Supervised fine-tuning of a policy on the chosen responses (`paradigm=sft`): the warm start of the policy stage.

A preference pair reads as a question with its right answer (the chosen response) and a wrong one (the rejected);
SFT trains the LM head on the chosen response and the tokens closing its turn (so the policy learns to stop).
Evaluation generates greedily and compares with the rule reward's normalization (rmlab.paradigms.answers): the verdict is
`choice` 0 when the answer matches the chosen response, 1 when it matches the rejected one, None otherwise, so the
reported accuracy is the exact-match rate. Everything else (data mixes, caching, checkpoints, resumption, sweeps)
is the reward-model trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rmlab.data.encode import PairEncoder, check_length, encoded_item, frames_as_images
from rmlab.data.records import PreferencePair
from rmlab.paradigms.answers import normalize_answer
from rmlab.paradigms.base import PARADIGMS
from rmlab.paradigms.tokens import Sequence, collate_completions, generate, stop_ids, token_loss


@encoded_item
@dataclass
class Answer(Sequence):
    """A prompt and its right answer, with what the trainer and the cache read of an item."""

    id: str = ""
    source: str = ""


class AnswerEncoder(PairEncoder):
    """A pair as its prompt followed by the chosen response (the rejected one kept in `meta` for scoring)."""

    key = "sft"

    def encode(self, pair: PreferencePair) -> Answer:
        where = f"pair {pair.id}"
        messages, refs = frames_as_images(pair)
        pieces = self.completion(messages, pair.chosen, where)
        prompt = self.encode_prompt(messages, refs, where, reserve=sum(len(p) for p in pieces))
        seq = Answer(prompt.ids, prompt.token_types, prompt.vision, *pieces, meta={"chosen": pair.chosen,
                     "rejected": pair.rejected}, id=pair.id, source=pair.source)  # fmt: skip
        check_length(seq.length, self.max_length, where, len(prompt.ids))
        return seq


@PARADIGMS.register("sft")
class SFT:
    name = "sft"
    scalar = False
    metric = "exact_match"

    def build(self, cfg):
        from rmlab.models.reward_model import build_generative

        return build_generative(cfg, self.name)

    def encoder(self, processor, cfg):
        return AnswerEncoder(processor, cfg.data_mix.max_length)

    def collate(self, items: list[Sequence], pad_id, cfg):
        return collate_completions(items, pad_id, with_end=True)

    def loss(self, model, batch, cfg):
        loss, token_accuracy = token_loss(model(batch), batch["lm_tokens"])
        return loss, {"token_accuracy": token_accuracy}

    @torch.no_grad()
    def score(self, model, items: list[Sequence], encoder, cfg) -> list[dict]:
        answers = greedy_answers(model, items, encoder.tokenizer, int(cfg.paradigm.max_new_tokens))
        verdicts = []
        for seq, text in zip(items, answers, strict=True):
            said = normalize_answer(text)
            choice = 0 if said == normalize_answer(seq.meta["chosen"]) else None
            if choice is None and said == normalize_answer(seq.meta["rejected"]):
                choice = 1
            verdicts.append({"choice": choice, "output": text})
        return verdicts


@torch.no_grad()
def greedy_answers(model, items: list[Sequence], tokenizer, max_new_tokens: int) -> list[str]:
    """The policy's greedy answer to each item's prompt (its completion, if any, is not read), without the stop."""
    outputs = generate(model, items, tokenizer.pad_token_id, stop_ids(tokenizer), max_new_tokens)
    return [tokenizer.decode(samples[0]) for samples in outputs]
