"""Token-level pieces the generative paradigms share: prompt + completion sequences, language-modelling targets
and batched generation.

A sequence is an encoded prompt (ids, token types, image tensors: the `EncodedPair` prompt layout) followed by
`before` (what the chat template puts between the generation prompt and the answer), the completion and `end` (what
closes the turn). Each piece is tokenized on its own, so a generated completion followed by `end` is what training
saw, token for token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from rmlab.data.encode import EncodedPrompt, collate_rows, encoded_item


@encoded_item
@dataclass
class Sequence:
    prompt_ids: list[int]
    prompt_token_types: list[int] | None
    vision: dict[str, torch.Tensor]
    before: list[int]
    completion: list[int]
    end: list[int]
    meta: dict = field(default_factory=dict)  # what the paradigm needs to read the sequence back (e.g. the order)

    @classmethod
    def of(cls, prompt: EncodedPrompt, pieces: tuple[list[int], list[int], list[int]], **meta) -> Sequence:
        return cls(prompt.ids, prompt.token_types, prompt.vision, *pieces, meta=meta)

    @property
    def tail(self) -> list[int]:
        return self.before + self.completion + self.end

    @property
    def opened(self) -> list[int]:
        """What generation continues from: the tail up to where the completion starts."""
        return self.before

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.tail)


def lm_targets(rows: list[tuple[int, int, list[int]]]) -> dict[str, torch.Tensor]:
    """Positions and tokens of a language-modelling loss: for (row, column of the first target, target ids), the
    column whose logits predict each target token (one before it) and the token."""
    r, c, t = [], [], []
    for row, start, ids in rows:
        r += [row] * len(ids)
        c += range(start - 1, start - 1 + len(ids))
        t += ids
    return {
        "lm_rows": torch.tensor(r, dtype=torch.long),
        "lm_cols": torch.tensor(c, dtype=torch.long),
        "lm_tokens": torch.tensor(t, dtype=torch.long),
    }


def collate_completions(seqs: list[Sequence], pad_id: int, with_end: bool = True) -> dict:
    """Right-padded rows of whole sequences, with the completion (and the tokens closing its turn, so the model
    learns to stop) as language-modelling targets."""
    inputs = collate_rows([(s, s.tail) for s in seqs], pad_id)
    targets = [
        (i, len(s.prompt_ids) + len(s.before), s.completion + (s.end if with_end else [])) for i, s in enumerate(seqs)
    ]
    return {"inputs": inputs, **lm_targets(targets)}


def token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(mean cross-entropy, token accuracy) of logits at target positions."""
    if tokens.numel() == 0:
        return logits.sum() * 0.0, 1.0
    loss = F.cross_entropy(logits, tokens.to(logits.device))
    return loss, (logits.argmax(-1) == tokens.to(logits.device)).float().mean().item()


def stop_ids(tokenizer) -> list[int]:
    """Tokens that end a generated turn: the tokenizer's eos and the chat template's turn end."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


_MEDIA_TOKENS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "image_token_index",
)


def media_token_ids(model) -> list[int]:
    """The ids that stand for image or video content in a multimodal model's input: never generated (a generated one
    would not match any image features when the text is read back)."""
    config = model.config
    return sorted({int(v) for name in _MEDIA_TOKENS if isinstance(v := getattr(config, name, None), int)})


def row_seed(seed: int, seq: Sequence, sample: int) -> int:
    """A sample's own seed: from the call's seed, the sequence's content (prompt, images, what opens the answer) and
    the sample's number."""
    h = hashlib.blake2b(f"{seed}|{sample}|{seq.prompt_ids}|{seq.before}".encode(), digest_size=8)
    for key in sorted(seq.vision):
        h.update(seq.vision[key].detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


class RowSampler(LogitsProcessor):
    """Draws each row's next token from the full distribution at `temperature` with that row's own generator, and
    leaves that token the only possible one (so greedy decoding takes it)."""

    def __init__(self, seeds: list[int], temperature: float):
        self.seeds, self.temperature, self.generators = seeds, temperature, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            self.generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(picks), device=scores.device), picks] = 0.0
        return out


@torch.no_grad()
def generate(
    model,
    seqs: list[Sequence],
    pad_id: int,
    stops: list[int],
    max_new_tokens: int,
    samples: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    keep_stop: bool = False,
) -> list[list[list[int]]]:
    """Completions for each sequence (continuing from its prompt and `before`): `samples` of them, greedy when 1,
    sampled at `temperature` from the full distribution otherwise. Each sample draws from a generator of its own,
    seeded by `seed`, the sequence's content and the sample's number: what a sequence gets does not depend on the
    other sequences of its batch, or on which process of a job generates it. Each is cut before its stop token (after
    it with `keep_stop`: a policy's rollout, whose stopping is one of its actions).

    A model with a `generation_engine` (generation.engine=vllm: rmlab.generation.engine) generates through it, with
    this contract."""
    engine = getattr(model, "generation_engine", None)
    if engine is not None:
        return engine.generate(seqs, pad_id, stops, max_new_tokens, samples, temperature, seed, keep_stop)
    rows = [s for s in seqs for _ in range(samples)]
    width = max(len(s.prompt_ids) + len(s.opened) for s in rows)
    ids, mask, types = [], [], []
    for s in rows:
        n = len(s.prompt_ids) + len(s.opened)
        ids.append([pad_id] * (width - n) + s.prompt_ids + s.opened)
        mask.append([0] * (width - n) + [1] * n)
        types.append([0] * (width - n) + (s.prompt_token_types or [0] * len(s.prompt_ids)) + [0] * len(s.opened))
    inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if any(s.prompt_token_types is not None for s in rows):
        inputs["mm_token_type_ids"] = torch.tensor(types)
    for key in sorted({k for s in rows for k in s.vision}):
        inputs[key] = torch.cat([s.vision[key] for s in rows if key in s.vision], dim=0)
    generator_model = model.generative_model()
    device = model.device()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    sampling = samples > 1
    sampler = (
        RowSampler([row_seed(seed, s, k) for s in seqs for k in range(samples)], temperature) if sampling else None
    )
    out = model.generate_tokens(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,  # greedy, or (sampling) the token RowSampler drew: the only one it leaves possible
        logits_processor=LogitsProcessorList([sampler]) if sampler else None,
        eos_token_id=stops,
        pad_token_id=pad_id,
        suppress_tokens=media_token_ids(generator_model) or None,
        synced_gpus=getattr(model, "synced_generation", False),  # sharded: every process steps until all stop
    )
    new = out[:, width:].tolist()
    cut = []
    for tokens in new:
        end = next((i + int(keep_stop) for i, t in enumerate(tokens) if t in stops), len(tokens))
        cut.append(tokens[:end])
    return [cut[i * samples : (i + 1) * samples] for i in range(len(seqs))]
