"""The image budget: how large an image may become in the model, per backbone family (`data_mix.max_pixels`,
`min_pixels`, `max_tiles`).

A checkpoint's own processor settings allow far more than a reward model needs: Qwen2.5-VL's let a 4000x3000 photo
become ~12M pixels (~15k tokens), InternVL's 12 tiles + a thumbnail. The budget is written into the processor's image
processor (Qwen-VL: the resize bounds smart_resize reads; InternVL: the tile count), so `save_pretrained` stores it
with the model and a loaded model scores benchmarks under the budget it was trained with.

Token counts follow from an image's size alone: `image_size` reads only the header, `image_tokens` asks the processor
(under its budget). Both live in the data layer, which encodes with them below this one (rmlab.data.encode refuses an
overlong pair before decoding its images); they are re-exported here with the budget they depend on.
"""

from __future__ import annotations

from transformers.image_utils import SizeDict

from rmlab.data.encode import image_tokens
from rmlab.data.records import image_size
from rmlab.errors import ConfigError
from rmlab.models.families import FAMILIES

__all__ = ["apply_image_budget", "image_size", "image_tokens"]

# How each multimodal family bounds an image: a pixel range (resized to fit) or a number of tiles.
PIXELS = ("qwen2_5_vl", "qwen2_vl")
TILES = ("internvl3", "internvl2")


def apply_image_budget(processor, family: str, data_mix):
    """Set `data_mix`'s budget (max_pixels, min_pixels, max_tiles) on the family's processor, in place; returns it.

    Qwen-VL: transformers 5.x keeps the resize bounds only in `size` (`shortest_edge` = min pixels, `longest_edge` =
    max pixels; the min_pixels/max_pixels arguments are folded into it at construction), so `size` is what is set;
    a min_pixels/max_pixels attribute, where one is set, would override it at call time and is set alike.
    InternVL: `max_patches` = max_tiles (a thumbnail is added when an image takes more than one tile);
    `crop_to_patches` stays as the processor has it. Text-only families: nothing to do.
    """
    if not FAMILIES.get(family).multimodal:
        return processor
    image_processor = processor.image_processor
    if family in PIXELS:
        low, high = data_mix.min_pixels, data_mix.max_pixels
        if not 0 < low <= high:
            raise ConfigError(f"data_mix.min_pixels={low} and max_pixels={high}: need 0 < min_pixels <= max_pixels")
        image_processor.size = SizeDict(shortest_edge=low, longest_edge=high)
        for name, value in (("min_pixels", low), ("max_pixels", high)):
            if getattr(image_processor, name, None) is not None:
                setattr(image_processor, name, value)
    elif family in TILES:
        if data_mix.max_tiles < 1:
            raise ConfigError(f"data_mix.max_tiles={data_mix.max_tiles}: need at least 1")
        image_processor.max_patches = data_mix.max_tiles
    else:
        raise ConfigError(f"no image budget for backbone family {family!r}: add it to rmlab.models.image_budget")
    return processor
