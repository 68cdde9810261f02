"""Turning preference pairs into token ids, and batches of them into model inputs.

Conversion to the model's chat template happens here and only here. The prompt is encoded once per pair (with its
images, through the processor) and each response is tokenized on its own, so the two sequences of a pair share the
prompt token for token. Nothing is ever truncated: a pair longer than `max_length` is reported by `OverlongPair`.

A pair with images is first measured without decoding any: its length follows from the rendered text and each
image's header size (`image_tokens`, under the processor's image budget, rmlab.models.image_budget), so a pair that
cannot fit is refused before its pixels are read; the count of the encoded ids stays the exact rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rmlab.data.records import PreferencePair, image_size, open_image, user_prompt
from rmlab.util.progress import progress as bar
from rmlab.util.registry import Registry

# Processor outputs that run along the token axis (padded like input_ids); every other tensor the processor returns
# describes the images and is concatenated along dim 0 in sequence order.
_PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


# The types an encoder's items may be: the encoding cache rebuilds only these (rmlab.data.cache).
ENCODED: Registry[type] = Registry("encoded item type")


def encoded_item(cls: type) -> type:
    """Class decorator: a dataclass the encoding cache may store and rebuild."""
    return ENCODED.add(cls.__name__, cls)


class OverlongPair(ValueError):
    """A pair that cannot fit max_length without cutting tokens (image tokens included)."""


@encoded_item
@dataclass
class EncodedPair:
    id: str
    source: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_token_types: list[int] | None = None
    vision: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Tokens of the longer of the two sequences."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def tokenizer_of(processor):
    return getattr(processor, "tokenizer", processor)


def image_tokens(processor, sizes: list[tuple[int, int]]) -> list[int]:
    """Tokens each image of (height, width) becomes in a VL processor's output (InternVL's `<img>`/`</img>`
    included), from its size alone: transformers' own count (`_get_num_multimodal_tokens`, what vLLM plans with),
    which reads the processor's resize and tiling settings, so it follows the image budget set on them."""
    return list(processor._get_num_multimodal_tokens(image_sizes=[tuple(s) for s in sizes]).num_image_tokens)


def frames_as_images(pair: PreferencePair) -> tuple[list[dict], list]:
    """(prompt, image references) with every video part replaced by its frames as image parts, in place.

    Every family's processor takes several images (the image-only processors have no video path at all), so a
    video becomes its sampled frames, in order, where the video stood (as LLaVA-OneVision-style models read video).
    """
    if not pair.videos:
        return pair.prompt, list(pair.images)
    images, videos = iter(pair.images), iter(pair.videos)
    refs: list = []
    prompt = []
    for message in pair.prompt:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "video":
                    frames = next(videos)
                    parts += [{"type": "image"}] * len(frames)
                    refs += list(frames)
                else:
                    if part.get("type") == "image":
                        refs.append(next(images))
                    parts.append(part)
            message = {**message, "content": parts}
        prompt.append(message)
    return prompt, refs


@dataclass
class EncodedPrompt:
    """A prompt through the processor: its text, token ids, token types (M-RoPE families) and image tensors."""

    text: str
    ids: list[int]
    token_types: list[int] | None
    vision: dict[str, torch.Tensor]


class PairEncoder:
    """Encodes PreferencePairs for one processor (a VL processor or a plain tokenizer)."""

    key = "pair"  # what the encoding depends on beside processor and pair (paradigm encoders extend it; cache key)

    def __init__(self, processor, max_length: int):
        self.processor = processor
        self.tokenizer = tokenizer_of(processor)
        self.is_vl = self.tokenizer is not processor
        self.max_length = max_length
        self.refused_early = 0  # pairs refused from their predicted length, before any image was decoded
        self._image_overhead: tuple[int, int] | None = None  # measured on first use (predict_prompt_length)

    def render(self, prompt: list[dict], response: str | None = None) -> str:
        """Chat-template text of the prompt (with the generation prompt) or of prompt + response."""
        if response is None:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        messages = [*prompt, {"role": "assistant", "content": response}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def content_key(self, pair: PreferencePair) -> str:
        """What of the pair, beyond its prompt, images and responses, the encoding reads (for the cache key)."""
        return ""

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _response_ids(self, prompt_text: str, pair: PreferencePair, response: str) -> list[int]:
        full = self.render(frames_as_images(pair)[0], response)
        if not full.startswith(prompt_text):
            raise ValueError(
                f"pair {pair.id}: the chat template does not render the prompt as a prefix of prompt + response"
            )
        return self.ids(full[len(prompt_text) :])

    def completion(self, messages: list[dict], completion: str, where: str) -> tuple[list[int], list[int], list[int]]:
        """(ids the template puts between the generation prompt and the completion, the completion's ids, the ids
        that close its turn). Each piece is tokenized on its own, so a generated completion followed by the closing
        ids is exactly what training saw."""
        opened = self.render(messages)
        full = self.render(messages, completion)
        at = full.find(completion, len(opened)) if full.startswith(opened) else -1
        if at < 0:
            raise ValueError(f"{where}: the chat template does not render the completion after the prompt")
        before, after = full[len(opened) : at], full[at + len(completion) :]
        return self.ids(before), self.ids(completion), self.ids(after)

    def predict_prompt_length(self, text: str, image_refs: list) -> int:
        """Tokens `encode_prompt` gives the rendered prompt `text` with these images, from the images' headers only:
        the text's own tokens, each image's placeholder tokens (`image_tokens`), and what the processor adds per
        prompt and per image beyond those (the placeholder it replaces, special tokens), measured once per encoder."""
        if self._image_overhead is None:
            self._image_overhead = self._measure_image_overhead()
        per_prompt, per_image = self._image_overhead
        sizes = [image_size(ref) for ref in image_refs]
        image_total = sum(image_tokens(self.processor, sizes))
        return len(self.ids(text)) + per_prompt + per_image * len(sizes) + image_total

    def _measure_image_overhead(self) -> tuple[int, int]:
        """(per prompt, per image) tokens of the processor's output that are neither the text's tokens nor the
        images' placeholder tokens: a stand-in prompt encoded with one and with two blank images, compared."""
        from PIL import Image

        image = Image.new("RGB", (56, 56))
        extra = []
        for n in (1, 2):
            text = self.render(user_prompt("x", n_images=n))
            out = self.processor(text=[text], images=[[image] * n], return_tensors="pt")
            predicted = len(self.ids(text)) + sum(image_tokens(self.processor, [(56, 56)] * n))
            extra.append(out["input_ids"].shape[1] - predicted)
        return extra[0] - (extra[1] - extra[0]), extra[1] - extra[0]

    def _refuse_from_prediction(self, text: str, image_refs: list, where: str, reserve: int) -> None:
        """OverlongPair when the prompt's predicted length plus `reserve` (the tokens that will follow it) is over
        max_length: the image tokens are known from the headers, so no image is decoded for a pair that cannot fit.
        Skipped for a processor that cannot count image tokens from sizes (the exact check after encoding stays)."""
        if not hasattr(self.processor, "_get_num_multimodal_tokens"):
            return
        predicted = self.predict_prompt_length(text, image_refs)
        if predicted + reserve > self.max_length:
            self.refused_early += 1
            raise OverlongPair(
                f"{where}: {predicted + reserve} tokens (prompt {predicted}, predicted from the image headers) "
                f"> max_length {self.max_length}"
            )

    def encode_prompt(self, prompt: list[dict], image_refs: list, where: str, reserve: int = 0) -> EncodedPrompt:
        """The prompt (with the generation prompt) through the processor, or the tokenizer for text.

        `reserve`: the tokens the caller will put after the prompt (its longest tail). A prompt with images that
        cannot fit max_length with them is refused (`OverlongPair`) before its images are decoded."""
        text = self.render(prompt)
        token_types = None
        vision: dict[str, torch.Tensor] = {}
        if self.is_vl and image_refs:
            self._refuse_from_prediction(text, image_refs, where, reserve)
            images = [open_image(ref) for ref in image_refs]
            out = self.processor(text=[text], images=[images], return_tensors="pt")
            ids = out["input_ids"][0].tolist()
            if "mm_token_type_ids" in out:
                token_types = out["mm_token_type_ids"][0].tolist()
            vision = {k: v for k, v in out.items() if k not in _PER_TOKEN_KEYS}
        else:
            if image_refs:
                raise ValueError(f"{where} has images but the backbone is text-only")
            ids = self.ids(text)
            if self.is_vl and self._wants_token_types():
                token_types = [0] * len(ids)
        return EncodedPrompt(text, ids, token_types, vision)

    def encode(self, pair: PreferencePair) -> EncodedPair:
        messages, refs = frames_as_images(pair)
        text = self.render(messages)  # the responses need only the prompt's text: tokenized before any image
        chosen, rejected = (self._response_ids(text, pair, r) for r in (pair.chosen, pair.rejected))
        prompt = self.encode_prompt(messages, refs, f"pair {pair.id}", reserve=max(len(chosen), len(rejected)))
        encoded = EncodedPair(
            id=pair.id,
            source=pair.source,
            prompt_ids=prompt.ids,
            chosen_ids=chosen,
            rejected_ids=rejected,
            prompt_token_types=prompt.token_types,
            vision=prompt.vision,
        )
        check_length(encoded.length, self.max_length, f"pair {pair.id}", len(prompt.ids))
        return encoded

    def _wants_token_types(self) -> bool:
        return "mm_token_type_ids" in getattr(self.processor, "model_input_names", ())


def check_length(length: int, max_length: int, where: str, prompt_length: int) -> None:
    if length > max_length:
        raise OverlongPair(f"{where}: {length} tokens (prompt {prompt_length}) > max_length {max_length}")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, for left or right padding alike."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).long().argmax(1)


def collate_rows(rows: list[tuple], pad_id: int) -> dict:
    """Model inputs for rows of (owner of an encoded prompt, tokens after it), right-padded.

    An owner has `prompt_ids`, `prompt_token_types` and `vision` (an EncodedPair, or any item laid out the same way);
    image tensors are concatenated in row order.
    """
    lengths = [len(p.prompt_ids) + len(tail) for p, tail in rows]
    width = max(lengths)
    ids, mask = [], []
    for (p, tail), n in zip(rows, lengths, strict=True):
        ids.append(p.prompt_ids + list(tail) + [pad_id] * (width - n))
        mask.append([1] * n + [0] * (width - n))
    inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if any(p.prompt_token_types is not None for p, _ in rows):
        types = [(p.prompt_token_types or []) for p, _ in rows]
        inputs["mm_token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types])
    for key in sorted({k for p, _ in rows for k in p.vision}):
        inputs[key] = torch.cat([p.vision[key] for p, _ in rows if key in p.vision], dim=0)
    return inputs


def collate_pairs(batch: list[EncodedPair], pad_id: int) -> dict:
    """2B sequences: the B chosen ones, then the B rejected ones, right-padded; one forward scores both halves.

    Returns `inputs` (keyword arguments for the backbone), `pool_index` (last real token per row) and
    `response_lengths` (tokens after the prompt, for length normalization).
    """
    rows = [(p, p.chosen_ids) for p in batch] + [(p, p.rejected_ids) for p in batch]
    inputs = collate_rows(rows, pad_id)
    return {
        "inputs": inputs,
        "pool_index": last_token_index(inputs["attention_mask"]),
        "response_lengths": torch.tensor([len(r) for _, r in rows], dtype=torch.long),
    }


def encode_all(encoder: PairEncoder, pairs: list[PreferencePair], desc: str, progress: bool = True, validator=None):
    """(encoded, kept pairs, skipped counts): overlong pairs are left out and reported, never cut.

    With a validator (rmlab.data.validate) an overlong pair is counted there, or stops the run under policy `fail`.
    """
    import sys

    encoded, kept, overlong = [], [], []
    for pair in bar(pairs, desc=desc, enabled=progress):
        try:
            encoded.append(encoder.encode(pair))
            kept.append(pair)
        except OverlongPair as e:
            if validator is not None:
                validator.reject("overlong", pair, str(e))
            overlong.append(str(e))
    if overlong:
        shown = "; ".join(overlong[:3]) + (" ..." if len(overlong) > 3 else "")
        print(f"[rmlab] {desc}: skipped {len(overlong)} pair(s) longer than max_length: {shown}", file=sys.stderr)
    return encoded, kept, {"overlong": len(overlong)}
