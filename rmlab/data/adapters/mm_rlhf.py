"""MM-RLHF (yifanzhang114/MM-RLHF): human-ranked image, video and safety instructions, as the preference pairs the
official training code consumes (`dpo_pairs.jsonl`).

Release layout (dataset card https://huggingface.co/datasets/yifanzhang114/MM-RLHF and the official README,
github.com/Kwai-YuanQi/MM-RLHF, "Data Preparation"): `data.jsonl` holds the annotations (3-5 responses per instruction
with human scores, rankings and textual reasons; 16,342 rows, also the hub's default parquet config), and
`dpo_pairs.jsonl` "contains pairs of different ranks used for subsequent DPO and reward model training"; the media
come as `long.zip`, `mcq.zip`, `safety.zip`, `short.zip` and `video.zip`, unzipped into folders of those names beside
the jsonl files (video as folders of frames).

This adapter reads `dpo_pairs.jsonl`, the ranks already turned into pairs by the authors: the official code only ever
reads that file (llava/train/train_dpo.py DPODataset, the critic reward model's training, scripts/convert_to_swift.py)
and the code that built it from data.jsonl is not public. Fields read, as those scripts read them: `prompt`, `chosen`,
`rejected`, `image` (path, or list of paths) or `video` (a folder of frames), `id`, and `chosen_reason` /
`rejected_reason` (the human critiques, kept in meta). A pair row carries no scores (Kwai-YuanQi/MM-RLHF issue #6).

Mapping, as DPODataset builds its inputs: prompt = one user turn, `<image>` markers removed from the prompt text and
the media put first (`"<image>\\n" + prompt`); video = the folder's frame files, sorted by name, sampled at
`np.linspace(0, n - 1, num_frames).astype(int)` with `num_frames` 10 as in DPODataset (`options: {num_frames: N}`,
0 keeps every frame). id = the row's `id` (ids repeat: one instruction gives several pairs). category = the media
path's top folder (`long`, `mcq`, `safety`, `short`, `video`: the release's subsets), "" for text-only rows.
Relative paths resolve against the source's `image_root` (the unzipped MM-RLHF folder), else the jsonl's folder.

Not the benchmark: MM-RLHF-RewardBench's `mm_reward_bench.jsonl` has the same pair layout but is a separate hub
dataset (yifanzhang114/MM-RLHF-RewardBench) handled elsewhere; this adapter's hub config reads only dpo_pairs.jsonl.
Its 170 released rows (tests/fixtures/benchmarks/mmrlhf/, from the same authors) are read through this adapter by
tests/test_adapters_real.py: the field names, `mcq/`, `long/`, `short/`, `safety/` image paths and `video/<id>` frame
folders are confirmed on them; their media are not included, which validation counts as `image_missing`.
Not confirmed: data.jsonl's own field names (not documented anywhere public), so the rank-to-pair rule itself.
"""

import os
import zipfile
from functools import lru_cache, partial
from pathlib import Path

from rmlab.data.adapters.base import adapter
from rmlab.data.records import ARCHIVE_SEP, LazyFrames, PreferencePair

SCHEMA = "id, prompt, chosen, rejected, image (str | list) | video (frame folder), chosen_reason, rejected_reason"
DEFAULT_NUM_FRAMES = 10  # DPODataset's num_frames_to_sample
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@lru_cache(maxsize=8)
def _zip_names(archive: str) -> tuple[str, ...]:
    with zipfile.ZipFile(archive) as zf:
        return tuple(zf.namelist())


def _frame_files(folder_ref: str) -> list[str]:
    """The image files directly inside a frame folder (a directory, or `archive::folder`), sorted by name."""
    if ARCHIVE_SEP in folder_ref:
        archive, folder = folder_ref.split(ARCHIVE_SEP, 1)
        if not archive.endswith(".zip"):
            raise ValueError(f"video frames can be listed in a folder or a .zip, not in {archive}")
        prefix = folder.strip("/") + "/"
        names = [n for n in _zip_names(archive) if n.startswith(prefix) and "/" not in n[len(prefix) :]]
        frames = sorted(n for n in names if n.lower().endswith(FRAME_SUFFIXES))
        return [f"{archive}{ARCHIVE_SEP}{n}" for n in frames]
    if not os.path.isdir(folder_ref):
        raise ValueError(f"video frame folder not found: {folder_ref}")
    names = sorted(n for n in os.listdir(folder_ref) if n.lower().endswith(FRAME_SUFFIXES))
    return [os.path.join(folder_ref, n) for n in names]


def _frames(folder_ref: str, video: str, num_frames: int) -> list:
    """A video row's sampled frames (listed when the pair is first checked or encoded: rmlab.data.records.LazyFrames)."""
    frames = _frame_files(folder_ref)
    if not frames:
        raise ValueError(f"video frame folder {video} has no image files")
    return _sample(frames, num_frames)


def _sample(frames: list, num_frames: int) -> list:
    """DPODataset's uniform sampling (indices repeat when the video has fewer frames than asked for)."""
    if num_frames <= 0 or not frames:
        return frames
    import numpy as np

    return [frames[i] for i in np.linspace(0, len(frames) - 1, num_frames, dtype=int)]


def _top_folder(path: str) -> str:
    parts = Path(path).parts
    return parts[0] if len(parts) > 1 else ""


@adapter(
    "mm_rlhf",
    hub_id="yifanzhang114/MM-RLHF",
    modality="multimodal",
    schema=SCHEMA,
    data_files="dpo_pairs.jsonl",
)
def mm_rlhf(row: dict, ctx):
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    text = prompt.replace("<image>", "").strip()
    images, videos, parts, category = [], [], [], ""
    if row.get("image"):
        paths = row["image"] if isinstance(row["image"], list) else [row["image"]]
        if not all(isinstance(p, str) and p for p in paths):
            raise TypeError(f"image must be a path or a list of paths, not {row['image']!r:.80}")
        images = [ctx.image(p) for p in paths]
        parts = [{"type": "image"}] * len(images)
        category = _top_folder(paths[0])
    elif row.get("video"):
        video = row["video"]
        if not isinstance(video, str):
            raise TypeError(f"video must be a frame folder path, not {type(video).__name__}")
        videos = [
            LazyFrames(
                partial(_frames, ctx.image(video), video, int(ctx.options.get("num_frames", DEFAULT_NUM_FRAMES))), video
            )
        ]
        parts = [{"type": "video"}]
        category = _top_folder(video) or "video"
    content = parts + [{"type": "text", "text": text}] if parts else text
    meta = {k: row[k] for k in ("chosen_reason", "rejected_reason", "is_tie") if row.get(k) is not None}
    yield PreferencePair(
        id=str(row.get("id") or ctx.row_id),
        prompt=[{"role": "user", "content": content}],
        chosen=chosen,
        rejected=rejected,
        images=images,
        videos=videos,
        source="mm_rlhf",
        category=category,
        meta=meta,
    )
