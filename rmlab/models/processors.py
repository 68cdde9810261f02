"""Image-only processors for the VL families, and the one place that loads a processor from a path or hub id.

transformers' stock VL processors build a video processor, which needs torchvision; torchvision does not work beside
the CPU torch build (see DESIGN.md). These subclasses skip the video half and keep the image path identical, so a
real checkpoint's saved image processor and tokenizer load into them unchanged.
"""

from __future__ import annotations

import importlib.util
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


IMAGE_ONLY_PROCESSORS = {
    "qwen2_5_vl": ImageOnlyQwen25VLProcessor,
    "qwen2_vl": ImageOnlyQwen2VLProcessor,
    "internvl3": ImageOnlyInternVLProcessor,
    "internvl2": ImageOnlyInternVLProcessor,
}


def load_processor(source: str, family: str, trust_remote_code: bool = False):
    """Processor (VL) or tokenizer (text) from a local directory or hub id.

    With torchvision present the stock AutoProcessor is used; without it, the image-only subclass for the family.
    """
    from transformers import AutoProcessor, AutoTokenizer

    if family not in IMAGE_ONLY_PROCESSORS:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if importlib.util.find_spec("torchvision") is not None:
        return AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    return IMAGE_ONLY_PROCESSORS[family].from_pretrained(source, trust_remote_code=trust_remote_code)
