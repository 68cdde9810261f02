"""OmniAlign-V DPO (PhoenixZ/OmniAlign-V-DPO): open-ended image questions, the OmniAlign-V SFT answer as chosen and
a rejection-sampled LLaVANext-InternLM-7B answer as rejected.

Files (https://huggingface.co/datasets/PhoenixZ/OmniAlign-V-DPO, "Files and versions"): one jsonl per subset,
knowledge, ins_follow, creation, chart, diagram, poster (.jsonl), and images.tar; the card describes the data but
lists no fields. Schema (the official DPO trainer, PhoenixZ810/OmniAlign-V:llava/train/train_dpo.py, DPODataset and
DPODataCollator): each line is {prompt (a string; the trainer strips every `<image>` and puts one before the text),
chosen (string), rejected (string), image (a path, or a list of paths, relative to the subset's image root)}.
PhoenixZ810/OmniAlign-V:playground/meta_json/ominialign_v_dpo.json names the subsets by `data_type` (knowledge,
ins_follow, creation, chart, diagram, poster), one annotation file each.

Mapping: prompt = one user turn with the images (in place when the prompt has exactly one `<image>` per image,
otherwise the placeholders are dropped and the images go first, as the trainer does); category = the subset, from
the file's name (`subset_of`: the rows carry no such field), else "";
id = the row's id if any, else ctx.row_id.

Not confirmed: the image paths' prefix inside images.tar (resolve them with image_root: the extracted folder or the
tar itself); whether rows carry an id.
"""

from __future__ import annotations

import re
from pathlib import Path

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = "prompt, chosen, rejected, image (path or list of paths)"
SUBSETS = ("knowledge", "ins_follow", "creation", "chart", "diagram", "poster")
PLACEHOLDER = "<image>"


def subset_of(file: str) -> str:
    """The subset a file holds: its name when that is a subset (the hub's files), else the subset named as an
    underscore-separated part of it (the repository's meta file names its files so, e.g.
    `DPO_knowledge_gqa9k_art1500_cc3m30k_fixed.jsonl`), else ""."""
    stem = Path(file).stem.lower()
    return next((s for s in SUBSETS if re.search(rf"(?:^|_){s}(?:_|$)", stem)), "")


@adapter("omnialign_v", hub_id="PhoenixZ/OmniAlign-V-DPO", modality="multimodal", schema=SCHEMA)
def omnialign_v(row: dict, ctx):
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise TypeError(f"{name} is a {type(value).__name__}, not a string")
    refs = row.get("image")
    if refs is None:
        refs = []
    elif not isinstance(refs, list):
        refs = [refs]
    images = [ctx.image(r) for r in refs]
    if prompt.count(PLACEHOLDER) != len(images):
        prompt = prompt.replace(PLACEHOLDER, "").strip()
    yield PreferencePair(
        id=str(row["id"]) if row.get("id") is not None else ctx.row_id,
        prompt=[{"role": "user", "content": content_with_images(prompt, len(images))}],
        chosen=chosen,
        rejected=rejected,
        images=images,
        source="omnialign_v",
        category=subset_of(ctx.file),
    )
