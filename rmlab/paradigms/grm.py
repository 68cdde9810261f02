"""Generative judges: GRM (Seed-1.5-VL style: read "1" or "2") and LongCoT-GRM (R1-Reward style: reason in
`<think>`, answer in `<answer>`).

The judge sees one user turn: the prompt's images, then the question (a multi-turn prompt as a transcript) and both
responses in a numbered template, then an instruction. Training shows every pair in both orders (the chosen one
first, then second) so the judge cannot learn a position. Scoring reads both orders and combines them
(`paradigm.both_orders`), or one order per pair, chosen by the pair's id so that half the pairs put the chosen
response first: a judge that always says "1" scores 50%, not 100%.

GRM's score for a response is the probability of its label, P("1") or P("2") renormalized over the two labels and
averaged over the orders read, so it is also a scalar where one is needed (ensembles). LongCoT-GRM's verdict is a
vote: each generated answer (`samples` per order, sampled at `temperature` when more than one; R1-Reward's
Voting@15 is samples=15) votes for the response its number names after undoing the order; the majority wins, and a
tie or no readable answer is no verdict (counted wrong).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

import torch

from rmlab.data.encode import PairEncoder, check_length, encoded_item, frames_as_images
from rmlab.data.records import PreferencePair, critiques_of
from rmlab.errors import ConfigError
from rmlab.paradigms.base import PARADIGMS
from rmlab.paradigms.tokens import Sequence, collate_completions, generate, stop_ids, token_loss

JUDGE_TEMPLATE = "[Question]\n{question}\n\n[Response 1]\n{first}\n\n[Response 2]\n{second}\n\n{instruction}"
GRM_INSTRUCTION = "Which response is better? Answer with its number, 1 or 2."
LONGCOT_INSTRUCTION = (
    "Which response is better? Think it through inside <think> </think>, then give the better response's number, "
    "1 or 2, inside <answer> </answer>."
)
LABELS = ("1", "2")


def transcript(prompt: list[dict]) -> str:
    """The prompt's text: a single user turn as it is, a conversation as `Role: text` lines."""

    def text(message: dict) -> str:
        content = message["content"]
        if isinstance(content, str):
            return content
        return "".join(p.get("text") or "" for p in content if p.get("type") == "text")

    if len(prompt) == 1:
        return text(prompt[0]).strip()
    return "\n".join(f"{m['role'].capitalize()}: {text(m).strip()}" for m in prompt)


def judge_pair(pair: PreferencePair, first: str, second: str, instruction: str) -> PreferencePair:
    """The judge's input as a pair-shaped record: one user turn with every image and video of the prompt first."""
    media = [p for m in pair.prompt if isinstance(m["content"], list) for p in m["content"] if p.get("type") != "text"]
    text = JUDGE_TEMPLATE.format(question=transcript(pair.prompt), first=first, second=second, instruction=instruction)
    content = [*media, {"type": "text", "text": text}] if media else text
    return PreferencePair(
        id=pair.id, prompt=[{"role": "user", "content": content}], chosen="", rejected="", images=pair.images,
        videos=pair.videos, source=pair.source,
    )  # fmt: skip


def chosen_first(pair_id: str) -> bool:
    """The order a single-order evaluation reads a pair in: fixed by its id, chosen first for about half."""
    return zlib.crc32(pair_id.encode()) % 2 == 0


@encoded_item
@dataclass
class JudgeItem:
    """Both orders of one pair, encoded: `orders[k]` has the chosen response at position k (0: first)."""

    id: str
    source: str
    orders: list[Sequence]

    @property
    def length(self) -> int:
        return max(s.length for s in self.orders)


class JudgeEncoder(PairEncoder):
    """Encodes a pair as the judge's input in both orders, with the target the paradigm trains on."""

    def __init__(self, processor, max_length: int, instruction: str, target):
        super().__init__(processor, max_length)
        self.instruction = instruction
        self.target = target  # (pair, chosen position 0 | 1) -> the completion's pieces, the label one of them
        self.key = f"judge|{target.__name__}|{instruction}"
        self.label_ids = []
        for label in LABELS:
            ids = self.ids(label)
            if len(ids) != 1:
                raise ConfigError(f"the judge's label {label!r} is {len(ids)} tokens in this tokenizer; it must be one")
            self.label_ids.append(ids[0])

    def content_key(self, pair: PreferencePair) -> str:
        return json.dumps(critiques_of(pair))

    def encode(self, pair: PreferencePair) -> JudgeItem:
        where = f"pair {pair.id}"
        orders = []
        for at in (0, 1):
            first, second = (pair.chosen, pair.rejected) if at == 0 else (pair.rejected, pair.chosen)
            messages, refs = frames_as_images(judge_pair(pair, first, second, self.instruction))
            pieces = self.target(pair, at)
            before, _, end = self.completion(messages, "".join(pieces), where)
            # pieces tokenized apart: the label is its own token, so the loss and the accuracy can find it
            ids = [self.ids(piece) for piece in pieces]
            answer_at = sum(len(i) for i in ids[: pieces.index(LABELS[at])])
            completion = [t for i in ids for t in i]
            prompt = self.encode_prompt(messages, refs, where, reserve=len(before) + len(completion) + len(end))
            seq = Sequence.of(
                prompt, (before, completion, end), chosen_at=at, answer_at=answer_at, label_ids=self.label_ids
            )
            check_length(seq.length, self.max_length, where, len(prompt.ids))
            orders.append(seq)
        return JudgeItem(pair.id, pair.source, orders)


def label_target(pair: PreferencePair, chosen_at: int) -> list[str]:
    """The chosen response's number."""
    return [LABELS[chosen_at]]


def reasoning_target(pair: PreferencePair, chosen_at: int) -> list[str]:
    """`<think>` the two responses' critiques in the order shown `</think><answer>` the chosen one's number
    `</answer>`; pairs without critiques get an empty think block."""
    reasons = critiques_of(pair)
    think = ""
    if reasons is not None:
        first, second = reasons if chosen_at == 0 else reasons[::-1]
        think = f"Response 1: {first} Response 2: {second}"
    return [f"<think>{think}</think><answer>", LABELS[chosen_at], "</answer>"]


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"(?<![\d.])([12])(?![\d.])")


def parse_answer(text: str) -> int | None:
    """The response position (0 or 1) a judge's output names, or None.

    The last `<answer>...</answer>` decides; inside it, exactly one of the numbers 1 and 2 must appear (alone, not
    as part of another number: "Response 2", "2", "**2**" all read as 2). Without an answer tag, the text after the
    last `</think>` (the whole output when there is none) is read the same way.
    """
    answers = _ANSWER.findall(text)
    region = answers[-1] if answers else text.rsplit("</think>", 1)[-1]
    found = set(_NUMBER.findall(region))
    if len(found) != 1:
        return None
    return int(found.pop()) - 1


def orders_to_read(items: list[JudgeItem], both: bool) -> list[list[Sequence]]:
    return [item.orders if both else [item.orders[0 if chosen_first(item.id) else 1]] for item in items]


class _Judge:
    metric = "pair_accuracy"
    scalar = False  # a judge compares the two responses it is shown; its numbers do not rank more than two

    def build(self, cfg):
        from rmlab.models.reward_model import build_generative

        return build_generative(cfg, self.name)

    def encoder(self, processor, cfg):
        instruction = cfg.paradigm.get("instruction") or self.instruction
        return JudgeEncoder(processor, cfg.data_mix.max_length, instruction, self.target)

    def collate(self, items: list[JudgeItem], pad_id, cfg):
        return judge_batch([s for item in items for s in item.orders], pad_id, self.with_end)


def judge_batch(seqs: list[Sequence], pad_id: int, with_end: bool) -> dict:
    """`collate_completions`, plus where each row's label token is among the targets (`answer_index`), the label
    it should be (`answer_label`: 0 for "1", 1 for "2") and the labels' token ids."""
    batch = collate_completions(seqs, pad_id, with_end)
    index, offset = [], 0
    for s in seqs:
        index.append(offset + s.meta["answer_at"])
        offset += len(s.completion) + (len(s.end) if with_end else 0)
    batch["answer_index"] = torch.tensor(index, dtype=torch.long)
    batch["answer_label"] = torch.tensor([s.meta["chosen_at"] for s in seqs], dtype=torch.long)
    batch["label_ids"] = torch.tensor(seqs[0].meta["label_ids"], dtype=torch.long)
    return batch


def label_probabilities(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """P("1"), P("2") at each row's label position, renormalized over the two labels."""
    at = logits[batch["answer_index"].to(logits.device)]
    return at[:, batch["label_ids"].to(logits.device)].float().softmax(-1)


def answer_accuracy(logits: torch.Tensor, batch: dict) -> float:
    """Share of rows whose right label outscores the other at the label position (teacher-forced)."""
    right = batch["answer_label"].to(logits.device)
    return (label_probabilities(logits, batch).argmax(-1) == right).float().mean().item()


@PARADIGMS.register("grm")
class GRM(_Judge):
    name = "grm"
    instruction = GRM_INSTRUCTION
    target = staticmethod(label_target)
    with_end = False  # the loss is on the label token alone

    def loss(self, model, batch, cfg):
        logits = model(batch)
        loss, _ = token_loss(logits, batch["lm_tokens"])
        return loss, {"pair_accuracy": answer_accuracy(logits, batch)}

    @torch.no_grad()
    def score(self, model, items: list[JudgeItem], encoder, cfg) -> list[dict]:
        reads = orders_to_read(items, cfg.paradigm.both_orders)
        seqs = [s for read in reads for s in read]
        engine = getattr(model, "generation_engine", None)  # generation.engine=vllm: the server's log-probabilities
        if engine is not None:
            probs = engine.label_probabilities(seqs, list(seqs[0].meta["label_ids"]))
        else:
            batch = judge_batch(seqs, encoder.tokenizer.pad_token_id, with_end=False)
            probs = label_probabilities(model(batch), batch).cpu()
        verdicts, k = [], 0
        for read in reads:
            by_position = {}
            for s in read:
                by_position[s.meta["chosen_at"]] = probs[k, s.meta["chosen_at"]].item()
                k += 1
            p = sum(by_position.values()) / len(by_position)
            verdicts.append({"scores": [p, 1.0 - p], "by_position": by_position})
        return verdicts


@PARADIGMS.register("longcot")
class LongCoT(_Judge):
    name = "longcot"
    instruction = LONGCOT_INSTRUCTION
    target = staticmethod(reasoning_target)
    with_end = True

    def loss(self, model, batch, cfg):
        logits = model(batch)
        loss, token_accuracy = token_loss(logits, batch["lm_tokens"])
        return loss, {"token_accuracy": token_accuracy, "pair_accuracy": answer_accuracy(logits, batch)}

    @torch.no_grad()
    def score(self, model, items: list[JudgeItem], encoder, cfg) -> list[dict]:
        c = cfg.paradigm
        reads = orders_to_read(items, c.both_orders)
        seqs = [s for read in reads for s in read]
        tok = encoder.tokenizer
        outputs = generate(
            model, seqs, tok.pad_token_id, stop_ids(tok), c.max_new_tokens, c.samples, c.temperature, cfg.run.seed
        )
        verdicts, k = [], 0
        for read in reads:
            texts, named = [], []
            for s in read:
                for sample in outputs[k]:
                    texts.append(tok.decode(sample))
                    named.append((parse_answer(texts[-1]), s.meta["chosen_at"]))
                k += 1
            choice, votes = tally(named)
            verdicts.append({"choice": choice, "votes": votes, "output": texts[0]})
        return verdicts


def tally(named: list[tuple[int | None, int]]) -> tuple[int | None, list[int]]:
    """Majority vote over (position an answer named or None, position the chosen response was shown at): the choice
    (0: the chosen response, 1: the rejected one, None: a tie or nothing readable) and the votes
    [for the chosen, for the rejected, unreadable]."""
    votes = [0, 0, 0]
    for at, chosen_at in named:
        votes[2 if at is None else 0 if at == chosen_at else 1] += 1
    choice = 0 if votes[0] > votes[1] else 1 if votes[1] > votes[0] else None
    return choice, votes
