"""MM-IFEngine's DPO data, MM-IFDPO-23k (in ChrisDing1105/MMIF-23k): constraint-rich image instructions with a
compliant (chosen) and a constraint-violating (rejected) answer.

Schema: MM-IFEngine trains with LLaMA-Factory (SYuan03/MM-IFEngine:examples/qwen2_5_vl/*.yaml are LLaMA-Factory
configs), and its DPO json is LLaMA-Factory's ShareGPT ranking layout: a JSON list of {conversations (ShareGPT turns
{from: human|gpt|system, value}, ending with the human turn that is answered; `<image>` placeholders where the
images go), chosen ({from: gpt, value}), rejected ({from: gpt, value}), images (paths relative to the dataset's
image folder)}. A public reward-model loader for MMIF-23k reads exactly item["images"][0],
item["conversations"][0]["value"], item["chosen"]["value"], item["rejected"]["value"] (found through the code
index; its repository is not named there). Dataset card: https://huggingface.co/datasets/ChrisDing1105/MMIF-23k
(SFT and DPO data since v1.0, 2025-04-26; a v2 annotated mainly by GPT-4o since 2025-09-16).

Mapping: prompt = the conversations, multi-turn kept, images in place of their placeholders (extra images first
in the first user turn); chosen/rejected = the reply texts (a plain string is accepted too). The rows carry no id
(ctx.row_id) and no category field.

Not confirmed: the DPO file's name and folder inside ChrisDing1105/MMIF-23k and whether v2 changed the layout (the
card's file list was not reachable), so `hub` reads the repository's default files: point a source at the DPO json
itself. Image paths are resolved against image_root (else the json's folder).
"""

from __future__ import annotations

from rmlab.data.adapters.base import adapter, sharegpt_messages
from rmlab.data.adapters.povid import image_pair, reply_text

SCHEMA = "conversations[{from, value}], chosen {from, value}, rejected {from, value}, images[]"


@adapter("mmif", hub_id="ChrisDing1105/MMIF-23k", modality="multimodal", schema=SCHEMA)
def mmif(row: dict, ctx):
    prompt = sharegpt_messages(row["conversations"])
    yield image_pair(row, ctx, prompt, reply_text(row["chosen"]), reply_text(row["rejected"]), "mmif")
