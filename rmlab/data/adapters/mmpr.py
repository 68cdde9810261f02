"""MMPR v1.2 (OpenGVLab/MMPR-v1.2): InternVL's mixed-preference-optimization data, one question with a chosen and
a rejected answer per line of an annotation jsonl.

Release layout (dataset card https://huggingface.co/datasets/OpenGVLab/MMPR-v1.2 and its file list): `meta.json`,
`annotations.zip` (one `.jsonl` per sub-dataset) and the images split into `images.zip_aa`, `_ab`, `_ac` (join them
with `cat images.zip_* > images.zip`). Each `meta.json` entry is InternVL's data-mix record
`{name: {root, annotation, data_augment, max_dynamic_patch?, repeat_time, length}}`: `annotation` is the jsonl and
`root` the folder its image paths are relative to (InternVL docs, internvl3.0/preference_optimization.md,
"Prepare Customized Data"). The card's `dataset_info` lists the row fields `image` (string), `question`, `chosen`,
`rejected`.

How InternVL reads a row (OpenGVLab/InternVL internvl_chat/internvl/train/internvl_chat_mpo.py,
LazySupervisedDataset.__getitem__ and the *_get_item methods):
- `image` a string: one image, `os.path.join(root, image)`; `<image>\\n` is prepended to the question when it has no
  `<image>` placeholder. `image` a list: several images, the question carries one `<image>` per image in order.
- `video`: a video file decoded by InternVL's own loader (not frames); such rows are refused here (ValueError).
- no image (or an empty one): a text-only pair (InternVL feeds a blank white image; here the prompt is text only).
- the conversation is `[{human: question}, {gpt: chosen}]` vs `[{human: question}, {gpt: rejected}]`.

Mapping: prompt = one user turn, the question with the images where its `<image>` placeholders are (images without a
placeholder go first, as InternVL puts them); chosen/rejected = the strings. Rows carry no id: id = `<file stem>-<row>`.
category = the annotation file's stem (the meta.json key of that sub-dataset, e.g.
`scienceqa_multi_choice_en_20240402_extracted_pairs_vqa_format_rules`), or `options.category` if given.
`answer_gt` (seen in rows of some sub-datasets by a community PR to the card, discussion #1) goes to meta when present.

Images: the source's `image_root` is the entry's `root` folder, or the joined `images.zip`; in the archive the
members carry the root's folder, so give it with `options: {root: <meta.json root>}` (joined before each path).

Confirmed outside the rows: InternVL's own v1.2 debug meta file (OpenGVLab/InternVL,
internvl_chat_gpt_oss/shell/data/debug_mpo.json; a copy in tests/fixtures/real/mmpr/) has entries named as their
annotation file's stem with `root` `MMPR-v1.2/images/<source>` and `annotation` `MMPR-v1.2/annotations/<key>.jsonl`;
the pair builder (internvl_chat/tools/reasoning_data_pipeline/mmpr_data_pipeline_correctness_postprocess.py) writes
rows {image (`''` when the question has none), question, chosen, rejected, answer_gt}. No released annotation row was
readable (the hub is not reachable here).
Not confirmed: the `root` values of every v1.2 sub-dataset (only the M3CoT ones are seen; InternVL's v1 example is
`MMPR/images/ScienceQA`);
whether any v1.2 row has `video`; loading from the hub (`path: hub`) reads annotations.zip but cannot resolve
images, which live in the separate archives.
"""

import posixpath
from pathlib import Path

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = "image (str | list[str] | absent), question, chosen, rejected"


def _image_paths(row: dict) -> list[str]:
    image = row.get("image")
    if image is None or image == "" or image == []:
        return []
    if isinstance(image, str):
        return [image]
    if isinstance(image, list) and all(isinstance(p, str) and p for p in image):
        return list(image)
    raise TypeError(f"image must be a path or a list of paths, not {image!r:.80}")


@adapter("mmpr", hub_id="OpenGVLab/MMPR-v1.2", modality="multimodal", schema=SCHEMA)
def mmpr(row: dict, ctx):
    if row.get("video"):
        raise ValueError("video rows (a video file InternVL decodes itself) are not supported")
    question, chosen, rejected = row["question"], row["chosen"], row["rejected"]
    for name, value in (("question", question), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    paths = _image_paths(row)
    root = ctx.options.get("root")
    refs = [ctx.image(posixpath.join(root, p) if root else p) for p in paths]
    if ctx.file.endswith(".jsonl"):
        category = ctx.options.get("category", Path(ctx.file).stem)
    else:
        category = ctx.options.get("category", "")
    meta = {"answer_gt": row["answer_gt"]} if row.get("answer_gt") is not None else {}
    yield PreferencePair(
        id=ctx.row_id,
        prompt=[{"role": "user", "content": content_with_images(question, len(refs))}],
        chosen=chosen,
        rejected=rejected,
        images=refs,
        source="mmpr",
        category=category,
        meta=meta,
    )
