"""POVID (YiyangAiLab/POVID_preference_data_for_VLLMs): LLaVA-style conversations whose preferred answer is the
ground truth and whose dispreferred answer has hallucinations injected (by GPT-4V editing).

Schema (YiyangZhou/POVID:README.md "Prepare data", which shows one element of the json, and the loader that
trains on it, YiyangZhou/POVID:llava/train/train_dpo.py LazySupervisedDataset): a JSON list of
{id, image (a path relative to the COCO train2014 image folder), conversations (the preferred conversation,
ShareGPT turns {from: human|gpt, value}, the first human turn with an `<image>` placeholder),
rejected_conversations (the same conversation with the dispreferred last answer)}. Hub files: the card has no
schema; main holds POVID_preference_data_for_VLLMs_version_1.json (the earlier POVID_preference_data_for_VLLMs.json
was deleted), split train, ~17k rows; images are not shipped (COCO 2014 train: set image_root to that folder).

Mapping: the two conversations must agree before their last turn (split_final_turn); that shared part, multi-turn
kept, is the prompt with the image where its `<image>` placeholder stands; chosen/rejected are the last gpt turns.
id = the row's id (a COCO image name, which can repeat across rows); no category.

Confirmed on the README's element itself (tests/fixtures/real/povid/, read by tests/test_adapters_real.py): its
keys, the `./data/coco/COCO_train2014_....jpg` path (resolved under image_root as the COCO folder) and the
conversations' form. Not confirmed: whether version_1.json keeps exactly these keys (no public loader or card lists
its fields); in case it stores chosen/rejected replies beside a prompt-only `conversations` (the LLaMA-Factory
ranking layout), that form is read too.
"""

from __future__ import annotations

from rmlab.data.adapters.base import adapter, message_text, sharegpt_messages, split_final_turn
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = "id, image, conversations[{from, value}], rejected_conversations[{from, value}]"
PLACEHOLDER = "<image>"


def place_images(messages: list[dict], n_images: int, placeholder: str = PLACEHOLDER) -> list[dict]:
    """Messages with their `<image>` placeholders turned into image parts, in order; images without a placeholder
    go first in the first user turn (where LLaVA-style data means them)."""
    counts = [message_text(m).count(placeholder) if isinstance(m["content"], str) else 0 for m in messages]
    marked = sum(counts)
    if marked > n_images:
        raise ValueError(f"{marked} {placeholder} placeholder(s) for {n_images} image(s)")
    extra = n_images - marked
    if extra and not any(m["role"] == "user" for m in messages):
        raise ValueError(f"{n_images} image(s) but no user turn to put them in")
    out = []
    for m, k in zip(messages, counts, strict=True):
        if extra and m["role"] == "user":
            k, extra = k + extra, 0
        out.append({**m, "content": content_with_images(m["content"], k, placeholder) if k else m["content"]})
    return out


def reply_text(value) -> str:
    """A reply stored as a string or as one ShareGPT turn {from, value}."""
    if isinstance(value, dict):
        value = value["value"]
    if not isinstance(value, str):
        raise TypeError(f"a reply is a {type(value).__name__}, not a string or a {{from, value}} turn")
    return value


def image_refs(row: dict, ctx) -> list:
    refs = row.get("image")
    if refs is None:
        refs = row.get("images")
    if refs is None:
        return []
    if not isinstance(refs, list):
        refs = [refs]
    return [ctx.image(r) for r in refs]


README_FOLDER = "data/coco/"  # the README's element names ./data/coco/COCO_train2014_....jpg; its scripts pass
# --image_folder ./data/coco: with image_root at the COCO folder, such a path is taken relative to it


def _under_coco(ref):
    if isinstance(ref, str) and ref.removeprefix("./").startswith(README_FOLDER):
        return ref.removeprefix("./")[len(README_FOLDER) :]
    return ref


@adapter("povid", hub_id="YiyangAiLab/POVID_preference_data_for_VLLMs", modality="multimodal", schema=SCHEMA)
def povid(row: dict, ctx):
    if isinstance(row.get("image"), str):
        row = {**row, "image": _under_coco(row["image"])}
    if "rejected_conversations" in row or "chosen" not in row:
        prompt, chosen, rejected = split_final_turn(
            sharegpt_messages(row["conversations"]), sharegpt_messages(row["rejected_conversations"])
        )
    else:
        prompt, chosen, rejected = (
            sharegpt_messages(row["conversations"]),
            reply_text(row["chosen"]),
            reply_text(row["rejected"]),
        )
    yield image_pair(row, ctx, prompt, chosen, rejected, "povid")


def image_pair(row: dict, ctx, prompt: list[dict], chosen: str, rejected: str, source: str) -> PreferencePair:
    """A pair whose prompt is a conversation ending with the human turn the two replies answer, its images from the
    row's `image`/`images` placed in the first user turn (POVID, MMIF)."""
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError("the conversation before the compared answers does not end with a human turn")
    images = image_refs(row, ctx)
    return PreferencePair(
        id=str(row["id"]) if row.get("id") is not None else ctx.row_id,
        prompt=place_images(prompt, len(images)),
        chosen=chosen,
        rejected=rejected,
        images=images,
        source=source,
        category="",
    )
