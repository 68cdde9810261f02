"""OmniAlign-V DPO (PhoenixZ/OmniAlign-V-DPO): open-ended image questions, the OmniAlign-V SFT answer as chosen and
a rejection-sampled LLaVANext-InternLM-7B answer as rejected.

Files (https://huggingface.co/datasets/PhoenixZ/OmniAlign-V-DPO, "Files and versions"): one jsonl per subset,
knowledge, ins_follow, creation, chart, diagram, poster (.jsonl), and images.tar; the card describes the data but
lists no fields. Schema (the official DPO trainer, PhoenixZ810/OmniAlign-V:llava/train/train_dpo.py, DPODataset and
DPODataCollator): each line is {prompt (a string; the trainer strips every `<image>` and puts one before the text),
chosen (string), rejected (string), image (a path, or a list of paths, relative to the subset's image root)}.
The trainer reads its files through a meta file (train_dpo.py: `json.loads(open(data_args.meta_path).read())`, each
entry's `annotation` the jsonl and `root` its image folder; `data_type` is only logged). The repository's DPO meta file,
PhoenixZ810/OmniAlign-V:playground/meta_json/ominialign_v_dpo.json (read at commit 8d96a8b; a copy is in
tests/fixtures/real/omnialign_v/), names one annotation file per subset with names that do not all contain the
subset's name (`DPO_Knowledge_instruct40k_fixed.jsonl` holds ins_follow, `DPO_Tqa_qwen_8k_gpt_fixed.jsonl` diagram):
their data_type is taken from that file (META_FILES), not guessed from the name.

Mapping: prompt = one user turn with the images (in place when the prompt has exactly one `<image>` per image,
otherwise the placeholders are dropped and the images go first, as the trainer does); category = `options:
{category: ...}` when given, else the subset: the file's name when it is a hub subset's, else the data_type the meta
file gives that file name, else ""; id = the row's id if any, else ctx.row_id. Image paths resolve against
image_root: the meta entry's `root` (`playground/data/`, `playground/data/textbookqa_merge` for diagram) or the
extracted images.tar.

Not confirmed on rows: no released row was readable (the hub is not reachable here and no repository holds one), so
the row fields come from the trainer's code; the image paths' prefix inside images.tar; whether rows carry an id.
"""

from __future__ import annotations

from pathlib import Path

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = "prompt, chosen, rejected, image (path or list of paths)"
SUBSETS = ("knowledge", "ins_follow", "creation", "chart", "diagram", "poster")
META_FILES = {  # playground/meta_json/ominialign_v_dpo.json: each DPO annotation file's data_type
    "DPO_knowledge_gqa9k_art1500_cc3m30k_fixed": "knowledge",
    "DPO_Knowledge_instruct40k_fixed": "ins_follow",
    "DPO_Creation10k_fixed": "creation",
    "DPO_Chartqa_gen_consist_refine11k_fixed": "chart",
    "DPO_Tqa_qwen_8k_gpt_fixed": "diagram",
    "DPO_Infovqa_single_gpt_fixed": "poster",
}
PLACEHOLDER = "<image>"


def subset_of(file: str) -> str:
    """The subset a file holds: its name when that is a subset (the hub's files), else the data_type the official
    meta file gives that annotation file (META_FILES), else ""."""
    stem = Path(file).stem
    return stem if stem in SUBSETS else META_FILES.get(stem, "")


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
        category=str(ctx.options.get("category") or subset_of(ctx.file)),
    )
