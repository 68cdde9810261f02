"""Generic chosen/rejected preference data (what BaseReward calls "Others": WildChat, arena-style and other
collections published in TRL's preference format), with an optional image column.

Schema (TRL "Dataset formats and types", https://huggingface.co/docs/trl/dataset_formats, and
`trl.data_utils.extract_prompt` / `prepare_multimodal_messages` in trl 1.16): a preference row has `chosen` and
`rejected`, and an explicit `prompt` or none. The variant is detected per row, so one file may mix them:

- standard, explicit prompt:        {"prompt": str, "chosen": str, "rejected": str}
- standard, implicit prompt:        {"chosen": str, "rejected": str}; the prompt is the longest common prefix of the
  two texts (as `trl.extract_prompt` takes it: a space ending the prefix stays with the replies)
- conversational, explicit prompt:  {"prompt": [messages], "chosen": [messages], "rejected": [messages]}; if the
  completions hold more than one message, their shared leading messages are appended to the prompt
- conversational, implicit prompt:  {"chosen": [messages], "rejected": [messages]}, two whole conversations that
  differ only in the last (assistant) turn

Messages are `{"role", "content"}` with content a string or a list of parts `{"type": "text", "text"}` /
`{"type": "image"}` (parquet stores the parts as one struct, so an image part reads `{"type": "image", "text": None}`;
the `None` is dropped). Images (trl-lib/rlaif-v, the TRL conversion of openbmb/RLAIF-V-Dataset; see TRL's
examples/datasets/rlaif-v.py) come in an `images` column, a list with the i-th entry for the i-th `{"type": "image"}`
part; TRL's DPO collator also takes a single `image` column, and so does this adapter. Where the prompt has no image
parts, the images go before the first user message's text (TRL's `prepare_multimodal_messages` rule), at its
`<image>` placeholders if it has any. A part count that differs from the number of images is left for
`rmlab.data.validate` to count (`image_count`).

Optional columns read when present: `id` (else the file's stem and row), `score_chosen` / `score_rejected` (as in
HuggingFaceH4/ultrafeedback_binarized; margin = their difference). `category` is "" unless the data_mix source sets
`options: {category_field: <column>}`. Not handled: TRL's unpaired-preference and stepwise types, video, and tool
calls (assistant turns without content).
"""

from __future__ import annotations

import os
from typing import Any

from rmlab.data.adapters.base import adapter, split_final_turn
from rmlab.data.records import PreferencePair, content_with_images, count_parts

SCHEMA = "chosen, rejected (str or [{role, content}]), optional prompt (str or messages), images/image, id"


def _part(part: Any) -> dict:
    if not isinstance(part, dict) or "type" not in part:
        raise TypeError(f"a content part is not a {{type, ...}} dict: {part!r:.80}")
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise TypeError("a text part without a text string")
        return {"type": "text", "text": part["text"]}
    if kind in ("image", "video"):
        return {"type": kind}
    raise ValueError(f"unknown content part type {kind!r}")


def chat_messages(value: Any, field: str) -> list[dict]:
    """`{"role", "content"}` messages from a column that holds them (content a string or a list of parts), with
    the None fields parquet adds to parts removed and other keys dropped."""
    if not isinstance(value, list):
        raise TypeError(f"{field} is {type(value).__name__}, not a list of messages")
    messages = []
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TypeError(f"{field} has an entry that is not a {{role, content}} message: {m!r:.80}")
        content = m["content"]
        if isinstance(content, list):
            content = [_part(p) for p in content]
        elif not isinstance(content, str):
            raise TypeError(f"{field}: the content of a {m['role']} message is {type(content).__name__}")
        messages.append({"role": m["role"], "content": content})
    return messages


def _with_images(prompt: list[dict], n_images: int) -> list[dict]:
    """The prompt with its images placed: where its parts say, else before the first user message's text. A count
    that disagrees is left for validation to report (reason `image_count`)."""
    if count_parts(prompt, "image") or not n_images:
        return prompt
    for i, m in enumerate(prompt):
        if m["role"] == "user":
            content = m["content"]
            if isinstance(content, str):
                content = content_with_images(content, n_images)
            else:
                content = [{"type": "image"}] * n_images + content
            return [*prompt[:i], {**m, "content": content}, *prompt[i + 1 :]]
    raise ValueError(f"{n_images} image(s) but no user message to put them in")


def _common_prefix(chosen: str, rejected: str) -> tuple[str, str, str]:
    prefix = os.path.commonprefix([chosen, rejected])
    if prefix.endswith(" "):  # trl.extract_prompt: the space before the reply goes with the reply
        prefix = prefix[:-1]
    if not prefix.strip():
        raise ValueError("implicit-prompt row whose chosen and rejected texts share no prompt")
    if chosen == rejected:
        raise ValueError("chosen and rejected are the same text, so no prompt can be split off")
    return prefix, chosen[len(prefix) :], rejected[len(prefix) :]


def _images(row: dict) -> list:
    images = row.get("images")
    if images is None:
        images = [row["image"]] if row.get("image") is not None else []
    if not isinstance(images, list):
        raise TypeError(f"images is {type(images).__name__}, not a list")
    return images


@adapter("preference", hub_id=None, modality="text", schema=SCHEMA)
def preference(row: dict, ctx):
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    images = _images(row)
    if isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            variant = "standard_implicit"
            prompt, chosen, rejected = _common_prefix(chosen, rejected)
        elif isinstance(prompt, str):
            variant = "standard_explicit"
        else:
            raise TypeError(f"prompt is {type(prompt).__name__} while chosen/rejected are strings")
        messages = [{"role": "user", "content": content_with_images(prompt, len(images)) if images else prompt}]
    elif isinstance(chosen, list) and isinstance(rejected, list):
        shared, chosen, rejected = split_final_turn(
            chat_messages(chosen, "chosen"), chat_messages(rejected, "rejected")
        )
        if prompt is None:
            variant, messages = "conversational_implicit", shared
        elif isinstance(prompt, list):
            variant, messages = "conversational_explicit", chat_messages(prompt, "prompt") + shared
        else:
            raise TypeError(f"prompt is {type(prompt).__name__} while chosen/rejected are message lists")
        if not messages:
            raise ValueError("conversation without a prompt before the final assistant turn")
        messages = _with_images(messages, len(images))
    else:
        raise TypeError(
            f"chosen is {type(chosen).__name__} and rejected {type(rejected).__name__}: both must be strings "
            "or both lists of messages"
        )
    score_c, score_r = row.get("score_chosen"), row.get("score_rejected")
    scored = score_c is not None and score_r is not None
    field = ctx.options.get("category_field")
    yield PreferencePair(
        id=str(row["id"]) if row.get("id") is not None else ctx.row_id,
        prompt=messages,
        chosen=chosen,
        rejected=rejected,
        images=[ctx.image(ref) for ref in images],
        source="preference",
        category=str(row.get(field) or "") if field else "",
        margin=float(score_c) - float(score_r) if scored else None,
        chosen_score=float(score_c) if scored else None,
        rejected_score=float(score_r) if scored else None,
        meta={"variant": variant},
    )
