"""RLAIF-V (openbmb/RLAIF-V-Dataset): one image, a question, a chosen and a rejected answer as plain strings.

Schema (dataset card): ds_name, image ({bytes, path}), question, chosen, rejected, origin_dataset, origin_split
(JSON text), idx, image_path. Read as TRL's examples/datasets/rlaif-v.py and LLaMA-Factory's dataset_info read it:
prompt = question with the image before it.
"""

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, user_prompt


@adapter(
    "rlaif_v",
    hub_id="openbmb/RLAIF-V-Dataset",
    modality="multimodal",
    schema="question, chosen, rejected, image {bytes, path}, idx, ds_name",
)
def rlaif_v(row: dict, ctx):
    yield PreferencePair(
        id=str(row.get("idx") or ctx.row_id),
        prompt=user_prompt(row["question"], n_images=1),
        chosen=row["chosen"],
        rejected=row["rejected"],
        images=[ctx.image(row["image"])],
        source="rlaif_v",
        category=row.get("ds_name") or "",
    )
