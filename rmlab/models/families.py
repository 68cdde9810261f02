"""The backbone families (the `backbone` axis): what each one loads with, its processor, and its tiny build.

FAMILIES is the one list of families; the schema's Family enum names the same ones (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rmlab.config.schema import TinyConfig
from rmlab.models import tiny
from rmlab.models.processors import ImageOnlyInternVLProcessor, ImageOnlyQwen2VLProcessor, ImageOnlyQwen25VLProcessor
from rmlab.util.registry import Registry


@dataclass(frozen=True)
class Family:
    name: str
    processor: type | None  # a VL family's image-only processor class; None: a text LLM, read by its tokenizer
    tiny: Callable  # (tokenizer, TinyConfig) -> (transformers config, model class, processor)

    @property
    def multimodal(self) -> bool:
        return self.processor is not None

    def load_processor(self, source: str, trust_remote_code: bool = False):
        """Processor (VL) or tokenizer (text) from a local directory or hub id: with torchvision present the stock
        AutoProcessor; without it (the CPU build), the family's image-only subclass."""
        import importlib.util

        from transformers import AutoProcessor, AutoTokenizer

        if self.processor is None:
            return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if importlib.util.find_spec("torchvision") is not None:
            return AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        return self.processor.from_pretrained(source, trust_remote_code=trust_remote_code)

    def auto_class(self):
        """The transformers Auto class a checkpoint of this family loads with."""
        import transformers as tf

        return tf.AutoModelForImageTextToText if self.multimodal else tf.AutoModelForCausalLM


FAMILIES: Registry[Family] = Registry("backbone family")
for _family in (
    Family("qwen2_5_vl", ImageOnlyQwen25VLProcessor, tiny.qwen2_5_vl),
    Family("qwen2_vl", ImageOnlyQwen2VLProcessor, tiny.qwen2_vl),
    Family("internvl3", ImageOnlyInternVLProcessor, tiny.internvl3),
    Family("internvl2", ImageOnlyInternVLProcessor, tiny.internvl2),
    Family("qwen2_5", None, tiny.qwen2_5),
    Family("qwen3", None, tiny.qwen3),
):
    FAMILIES.add(_family.name, _family)


def build_tiny(family: str, dims: TinyConfig | None = None, seed: int = 0):
    """(model, processor) for a family: the hub's model class with random weights, built offline.

    The model is the generative class (`...ForConditionalGeneration` / `...ForCausalLM`) so paradigms that generate
    can use its LM head; scalar paradigms use its inner base model.
    """
    import torch

    spec = FAMILIES.get(family)
    config, model_cls, processor = spec.tiny(tiny.tiny_tokenizer(spec.name), dims or TinyConfig())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.eval()
    return model, processor
