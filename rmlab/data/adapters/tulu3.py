"""Tulu 3 8B preference mixture (allenai/llama-3.1-tulu-3-8b-preference-mixture): the DPO mix of Llama 3.1 Tulu 3
8B, on- and off-policy pairs over the SFT, WildChat, IF and UltraFeedback prompts.

Schema (dataset card, https://huggingface.co/datasets/allenai/llama-3.1-tulu-3-8b-preference-mixture, dataset_info):
id (string), prompt (string), chosen and rejected (lists of {content, role}), source (string); one config
(`default`), one split (`train`, data/train-0000x-of-00004.parquet, about 271k rows). chosen and rejected are whole
conversations, prompt included, that differ only in their last assistant turn: open-instruct's
`preference_tulu_tokenize_and_truncate_v1` (allenai/open-instruct: open_instruct/dataset_transformation.py) says
"we assume only the last message is different, and the prompt is contained in the list of messages".

- prompt: the shared turns of chosen/rejected (multi-turn kept); the `prompt` string is used only where the lists
  hold the reply alone. chosen / rejected: the final assistant turns.
- id: `id`; category: `source` (the sub-dataset, e.g. a tulu-3-sft-reused-on-policy tag).
- no scores: the card publishes none for this mix.

Not confirmed: the exact set of `source` values (the card lists the seven sub-datasets by hub id, not by tag).
"""

from __future__ import annotations

from rmlab.data.adapters.base import adapter, split_final_turn
from rmlab.data.adapters.preference import chat_messages
from rmlab.data.records import PreferencePair, user_prompt


def allenai_pair(row: dict, ctx, source: str, **scores) -> PreferencePair:
    """A pair from an AllenAI preference mix row (id, prompt, chosen/rejected whole conversations, source)."""
    prompt, chosen, rejected = split_final_turn(
        chat_messages(row["chosen"], "chosen"), chat_messages(row["rejected"], "rejected")
    )
    if not prompt:  # the lists hold the reply alone: the prompt is the `prompt` column
        if not isinstance(row.get("prompt"), str):
            raise KeyError("prompt (chosen/rejected hold only the reply and there is no prompt string)")
        prompt = user_prompt(row["prompt"])
    return PreferencePair(
        id=str(row["id"]) if row.get("id") is not None else ctx.row_id,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=source,
        category=row.get("source") or "",
        **scores,
    )


@adapter(
    "tulu3",
    hub_id="allenai/llama-3.1-tulu-3-8b-preference-mixture",
    modality="text",
    schema="chosen, rejected ([{role, content}] whole conversations), prompt, id, source",
)
def tulu3(row: dict, ctx):
    yield allenai_pair(row, ctx, "tulu3")
