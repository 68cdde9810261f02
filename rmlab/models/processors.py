"""Image-only processors for the VL families (loaded by rmlab.models.families.Family.load_processor).

transformers' stock VL processors build a video processor, which needs torchvision; torchvision does not work beside
the CPU torch build (see DESIGN.md). These subclasses skip the video half and keep the image path identical, so a
real checkpoint's saved image processor and tokenizer load into them unchanged.
"""

from __future__ import annotations

import re

from transformers import InternVLProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class _QwenImageOnly:
    def _init_image_only(self, image_processor, tokenizer, chat_template):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen25VLProcessor(_QwenImageOnly, Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self._init_image_only(image_processor, tokenizer, chat_template)


class ImageOnlyQwen2VLProcessor(_QwenImageOnly, Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self._init_image_only(image_processor, tokenizer, chat_template)


class ImageOnlyInternVLProcessor(InternVLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, image_seq_length=256, chat_template=None, **kwargs):
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        t = tokenizer
        self.image_seq_length = image_seq_length
        self.start_image_token, self.end_image_token = t.start_image_token, t.end_image_token
        self.start_image_token_id, self.end_image_token_id = t.start_image_token_id, t.end_image_token_id
        self.image_token, self.image_token_id = t.context_image_token, t.context_image_token_id
        self.video_token = t.video_token
        self.multimodal_pattern = re.compile(
            f"(?P<image>{re.escape(self.image_token)})|(?P<video>{re.escape(self.video_token)})"
        )


def stand_in_image_inputs(processor) -> dict:
    """The vision tower's inputs for one small blank image: what a process whose batch has no image runs the tower
    on, so that a sharded tower's collectives meet those of the processes whose batches have images."""
    from PIL import Image

    out = processor.image_processor(images=[Image.new("RGB", (56, 56))], return_tensors="pt")
    return {k: v for k, v in out.items() if k in ("pixel_values", "image_grid_thw")}
