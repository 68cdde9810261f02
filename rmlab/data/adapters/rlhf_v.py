"""RLHF-V (openbmb/RLHF-V-Dataset): fine-grained correctional human feedback, one image, a question, the corrected
(chosen) answer and the original (rejected) one.

Schema (dataset card https://huggingface.co/datasets/openbmb/RLHF-V-Dataset, `dataset_info` and "Data fields";
config `default` with data_files RLHF-V-Dataset.parquet, split train, ~5.7k rows): ds_name, image ({bytes, path}),
text (a JSON string: {"question", "chosen", "rejected"}), origin_dataset, origin_split (meta information: the model
that wrote the original answer and the question type), idx (int64), image_path. Public loading code does the same
`json.loads(sample["text"])` and reads question/chosen/rejected from it.

Mapping: prompt = the question with the image (in place if it has an `<image>` placeholder, else before the text);
id = idx; category = ds_name (as the rlaif_v adapter does); origin_dataset, origin_split (parsed when it is JSON)
and image_path go to meta.

Not confirmed: the keys inside origin_split (kept as found, parsed if JSON); whether any question carries an
`<image>` placeholder.
"""

from __future__ import annotations

import json

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = "text (JSON {question, chosen, rejected}), image {bytes, path}, idx, ds_name, origin_split"


def _maybe_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@adapter("rlhf_v", hub_id="openbmb/RLHF-V-Dataset", modality="multimodal", schema=SCHEMA)
def rlhf_v(row: dict, ctx):
    text = row["text"]
    if isinstance(text, str):
        text = json.loads(text)  # a JSONDecodeError is a ValueError: reported as a schema error
    if not isinstance(text, dict):
        raise TypeError(f"text holds a {type(text).__name__}, not a {{question, chosen, rejected}} object")
    question, chosen, rejected = text["question"], text["chosen"], text["rejected"]
    for name, value in (("question", question), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise TypeError(f"text.{name} is a {type(value).__name__}, not a string")
    if row.get("image") is None:
        raise KeyError("image")
    idx = row.get("idx")
    yield PreferencePair(
        id=str(idx) if idx is not None else ctx.row_id,
        prompt=[{"role": "user", "content": content_with_images(question, 1)}],
        chosen=chosen,
        rejected=rejected,
        images=[ctx.image(row["image"])],
        source="rlhf_v",
        category=row.get("ds_name") or "",
        meta={
            "origin_dataset": row.get("origin_dataset"),
            "origin_split": _maybe_json(row.get("origin_split")),
            "image_path": row.get("image_path"),
        },
    )
