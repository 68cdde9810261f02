"""Critic-RM (MM-RLHF): the model writes a critique of the response, then a reward head scores
(prompt, response, critique).

A response's sequence is the conversation with the response as the assistant's turn, a user turn asking for a
critique, and the critique as the next assistant turn; the head reads the last token. Training runs one forward per
batch: the Bradley-Terry loss on the head and the language-modelling loss on the critique tokens
(`bt_weight * L_BT + lm_weight * L_LM`), the critiques taken from the data (`chosen_reason` / `rejected_reason`,
rmlab.data.records.critiques_of). `paradigm.critique` says what the head scores at evaluation: `generate` (the
model's own critique, greedy and capped at `max_new_tokens`; with `samples` > 1, that many sampled critiques and
the head's scores averaged), `ground_truth` (the data's critique: MM-RLHF's upper-bound ablation) or `none` (no
critique anywhere: the head on the response alone, MM-RLHF's other ablation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from rmlab.data.encode import EncodedPair, PairEncoder, check_length, encoded_item, frames_as_images
from rmlab.data.records import PreferencePair, critiques_of
from rmlab.errors import DataError
from rmlab.paradigms.base import PARADIGMS
from rmlab.paradigms.naive import Naive, bradley_terry_loss, pair_metrics, pair_rewards
from rmlab.paradigms.tokens import Sequence, generate, lm_targets, stop_ids, token_loss

CRITIQUE_REQUEST = "Is the answer above right? Say what is right or wrong about it."


@encoded_item
@dataclass
class CriticPair(EncodedPair):
    """An EncodedPair whose responses run on into the critique request and the critique.

    `chosen_ids` / `rejected_ids`: response, request, critique and the tokens closing its turn; `*_opened`: how many
    of those come before the critique (what generation continues from); `end_ids`: the closing tokens.
    """

    chosen_opened: int = 0
    rejected_opened: int = 0
    end_ids: list[int] = field(default_factory=list)
    has_critiques: bool = False


class CriticEncoder(PairEncoder):
    def __init__(self, processor, max_length: int, mode: str):
        super().__init__(processor, max_length)
        self.mode = mode
        self.key = f"critic|{mode}|{CRITIQUE_REQUEST}"

    def content_key(self, pair: PreferencePair) -> str:
        return json.dumps(critiques_of(pair))

    def encode(self, pair: PreferencePair) -> CriticPair:
        if self.mode == "none":
            base = super().encode(pair)
            return CriticPair(**vars(base), chosen_opened=len(base.chosen_ids), rejected_opened=len(base.rejected_ids))
        where = f"pair {pair.id}"
        messages, refs = frames_as_images(pair)
        text = self.render(messages)  # the prompt's text, as encode_prompt renders it: the tails need no image
        reasons = critiques_of(pair)
        tails, opened, ends = [], [], []
        for response, critique in zip((pair.chosen, pair.rejected), reasons or ("", ""), strict=True):
            turns = [
                *messages,
                {"role": "assistant", "content": response},
                {"role": "user", "content": CRITIQUE_REQUEST},
            ]
            asked = self.render(turns)
            if not asked.startswith(text):
                raise ValueError(f"{where}: the chat template does not render the prompt as a prefix of the request")
            before, body, end = self.completion(turns, critique, where)
            head = self.ids(asked[len(text) :]) + before
            tails.append(head + body + end)
            opened.append(len(head))
            ends.append(end)
        prompt = self.encode_prompt(messages, refs, where, reserve=max(len(t) for t in tails))
        encoded = CriticPair(
            id=pair.id,
            source=pair.source,
            prompt_ids=prompt.ids,
            chosen_ids=tails[0],
            rejected_ids=tails[1],
            prompt_token_types=prompt.token_types,
            vision=prompt.vision,
            chosen_opened=opened[0],
            rejected_opened=opened[1],
            end_ids=ends[0],
            has_critiques=reasons is not None,
        )
        check_length(encoded.length, self.max_length, where, len(prompt.ids))
        return encoded


def with_critiques(p: CriticPair, chosen: list[int], rejected: list[int]) -> CriticPair:
    """The pair with its critiques replaced by the given (generated) ones."""
    return CriticPair(
        id=p.id,
        source=p.source,
        prompt_ids=p.prompt_ids,
        chosen_ids=p.chosen_ids[: p.chosen_opened] + chosen + p.end_ids,
        rejected_ids=p.rejected_ids[: p.rejected_opened] + rejected + p.end_ids,
        prompt_token_types=p.prompt_token_types,
        vision=p.vision,
        chosen_opened=p.chosen_opened,
        rejected_opened=p.rejected_opened,
        end_ids=p.end_ids,
        has_critiques=True,
    )


@PARADIGMS.register("critic")
class Critic(Naive):
    name = "critic"

    def uses_lm_head(self, cfg) -> bool:
        return str(cfg.paradigm.critique) != "none"

    def encoder(self, processor, cfg):
        return CriticEncoder(processor, cfg.data_mix.max_length, str(cfg.paradigm.critique))

    def collate(self, items: list[CriticPair], pad_id, cfg):
        """The pair layout's batch, plus the critique tokens (and their turn's end) as language-modelling targets."""
        if str(cfg.paradigm.critique) != "none":
            missing = [p for p in items if not p.has_critiques]
            if missing:
                raise DataError(
                    f"paradigm=critic needs a critique of each response (chosen_reason / rejected_reason, as MM-RLHF"
                    f" and UltraFeedback rows have): pair {missing[0].id} from {missing[0].source or 'its source'} has"
                    " none; train on critique data or set paradigm.critique=none"
                )
        batch = super().collate(items, pad_id, cfg)
        shared = str(cfg.train.pair_layout) == "shared_prefix"
        n, targets = len(items), []
        for b, p in enumerate(items):
            start = len(p.prompt_ids)
            targets.append((b, start + p.chosen_opened, p.chosen_ids[p.chosen_opened :]))
            rejected_row, rejected_start = (b, start + len(p.chosen_ids)) if shared else (n + b, start)
            targets.append((rejected_row, rejected_start + p.rejected_opened, p.rejected_ids[p.rejected_opened :]))
        return {**batch, **lm_targets(targets)}

    def loss(self, model, batch, cfg):
        c = cfg.paradigm
        scores, logits = model(batch)
        chosen, rejected = pair_rewards(scores, batch, c.length_norm)
        lm_loss, token_accuracy = token_loss(logits, batch["lm_tokens"])
        loss = c.bt_weight * bradley_terry_loss(chosen, rejected, c.center_coef) + c.lm_weight * lm_loss
        return loss, {**pair_metrics(chosen, rejected), "lm_loss": lm_loss.item(), "token_accuracy": token_accuracy}

    @torch.no_grad()
    def score(self, model, items: list[CriticPair], encoder, cfg) -> list[dict]:
        c = cfg.paradigm
        pad_id = encoder.tokenizer.pad_token_id
        if str(c.critique) != "generate":
            batch = self.collate(items, pad_id, cfg)
            chosen, rejected = pair_rewards(model(batch)[0], batch, c.length_norm)
            return [{"scores": [a, b]} for a, b in zip(chosen.tolist(), rejected.tolist(), strict=True)]
        seqs = []
        for p in items:
            for tail, opened in ((p.chosen_ids, p.chosen_opened), (p.rejected_ids, p.rejected_opened)):
                seqs.append(Sequence(p.prompt_ids, p.prompt_token_types, p.vision, tail[:opened], [], p.end_ids))
        critiques = generate(
            model,
            seqs,
            pad_id,
            stop_ids(encoder.tokenizer),
            c.max_new_tokens,
            c.samples,
            c.temperature,
            seed=cfg.run.seed,
        )
        totals = torch.zeros(len(items), 2)
        for k in range(c.samples):
            written = [with_critiques(p, critiques[2 * i][k], critiques[2 * i + 1][k]) for i, p in enumerate(items)]
            batch = super().collate(written, pad_id, cfg)
            chosen, rejected = pair_rewards(model(batch), batch, c.length_norm)
            totals += torch.stack([chosen, rejected], dim=1).float().cpu()
        totals /= c.samples
        decode = encoder.tokenizer.decode
        return [
            {"scores": totals[i].tolist(), "critiques": [decode(critiques[2 * i][0]), decode(critiques[2 * i + 1][0])]}
            for i in range(len(items))
        ]
