"""Tiny backbones: the real transformers model classes built from small configs with random weights.

This is the embedded default (`scale=tiny`): no hub download, no torchvision. Each family gets the same model class
it has on the hub, an in-code byte-level BPE tokenizer with the family's special tokens and chat template, and an
image-only processor (the stock processors need torchvision for their video half).
"""

from __future__ import annotations

from functools import lru_cache

from rmlab.config.schema import TinyConfig
from rmlab.models.processors import (
    ImageOnlyInternVLProcessor,
    ImageOnlyQwen2VLProcessor,
    ImageOnlyQwen25VLProcessor,
)

# Rendered the way the families' own templates render: `<|im_start|>role\n...<|im_end|>\n`, images in place.
_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ IMAGE }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
QWEN_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("IMAGE", "'<|vision_start|><|image_pad|><|vision_end|>'")
INTERNVL_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("IMAGE", "'<IMG_CONTEXT>\\n'")

QWEN_SPECIALS = ["<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
INTERNVL_EXTRA = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# The tiny image side: 56 px = 4x4 patches of 14 px, merged 2x2 -> 4 image tokens per image.
IMAGE_SIZE = 56


# A small general English word list: the tiny tokenizer learns its merges from it, so common words are one token
# (as in a real tokenizer) while any other text still falls back to bytes.
_CORPUS = """
a an the this that these those it its is are was were be been am do does did done have has had can could will would
shall should may might must not no yes or and but if then else so because of in on at to from by with without for
about above below over under between into out up down left right top bottom middle center centre side near far
what which who whom whose when where why how many much more most less least few several some any all each every both
one two three four five six seven eight nine ten zero first second third last next number numbers count counted
colour color colours red green blue yellow orange purple pink brown black white grey gray dark light bright
shape shapes circle circles square squares triangle triangles star rectangle line lines dot dots image picture photo
show shows shown see seen look looks there here large larger largest small smaller smallest big bigger long short
repeat word words say said answer answers question questions true false right wrong correct incorrect better worse
banana lemon grass leaf sky sea tomato strawberry apple orange cat dog sun tree book fish moon house car water fire
what is the colour of the shape? what shape is in the image? how many shapes are there? is the shape on the left or on
the right? which is larger? which is smaller? what is? repeat the word: you are a helpful assistant. user assistant
system plus add compute tell name say echo write back of these words
lemon sun corn canary daffodil sunflower egg yolk frog lime cucumber broccoli pea emerald sapphire blueberry bluebird
cornflower ocean denim cherry ruby ladybird raspberry fire engine poppy
"""
_BPE_VOCAB = 1000


@lru_cache(maxsize=1)
def _bpe_json() -> str:
    """Byte-level BPE trained on _CORPUS (deterministic: same corpus, same merges), serialized once per process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=_BPE_VOCAB, initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    lines = _CORPUS.strip().splitlines()
    words = " ".join(lines).split()
    # Each word alone, with a leading space and capitalised, so all three spellings get merged.
    samples = lines + words + [" " + w for w in words] + [w.capitalize() for w in words] + ["0123456789"]
    backend.train_from_iterator(samples, trainer)
    return backend.to_str()


def tiny_tokenizer(family: str):
    """The in-code tokenizer for a family: byte-level BPE plus the family's special tokens and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_bpe_json())
    if family.startswith("internvl"):
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_special_tokens=INTERNVL_EXTRA,
        )
        # Added after construction: passing both lists to the constructor silently drops one.
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
        tok.chat_template = INTERNVL_CHAT_TEMPLATE
    else:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            additional_special_tokens=QWEN_SPECIALS,
        )
        tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.padding_side = "right"
    return tok


def _text_config(tok, dims: TinyConfig) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=dims.hidden_size,
        intermediate_size=dims.intermediate_size,
        num_hidden_layers=dims.num_layers,
        num_attention_heads=dims.num_heads,
        num_key_value_heads=dims.num_kv_heads,
        max_position_embeddings=dims.max_position_embeddings,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        tie_word_embeddings=False,
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (t, h, w) as the Qwen-VL configs do (about 1:1.5:1.5)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _qwen_vl_ids(tok) -> dict:
    ids = {
        name: tok.convert_tokens_to_ids(token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    return ids


def _qwen_vl_processor(proc_cls, tok):
    import transformers as tf

    image_processor = tf.Qwen2VLImageProcessorPil(
        min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE, patch_size=14, merge_size=2,
        temporal_patch_size=2,
    )  # fmt: skip
    return proc_cls(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)


def _qwen_rope(dims: TinyConfig) -> dict:
    head_dim = dims.hidden_size // dims.num_heads
    return {"rope_type": "default", "rope_theta": 1e4, "mrope_section": _mrope_section(head_dim)}


def qwen2_5_vl(tok, dims: TinyConfig):
    """(config, model class, processor) of a tiny Qwen2.5-VL; the others below have the same shape."""
    import transformers as tf

    vision = dict(
        depth=dims.vision_layers,
        hidden_size=dims.vision_hidden_size,
        intermediate_size=2 * dims.vision_hidden_size,
        num_heads=2,
        out_hidden_size=dims.hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=IMAGE_SIZE,
        fullatt_block_indexes=[dims.vision_layers - 1],
    )
    text = {**_text_config(tok, dims), "rope_parameters": _qwen_rope(dims)}
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_vl_ids(tok))
    return config, tf.Qwen2_5_VLForConditionalGeneration, _qwen_vl_processor(ImageOnlyQwen25VLProcessor, tok)


def qwen2_vl(tok, dims: TinyConfig):
    import transformers as tf

    vision = dict(
        depth=dims.vision_layers,
        embed_dim=dims.vision_hidden_size,
        hidden_size=dims.hidden_size,
        mlp_ratio=2,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    text = {**_text_config(tok, dims), "rope_parameters": _qwen_rope(dims)}
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_vl_ids(tok))
    return config, tf.Qwen2VLForConditionalGeneration, _qwen_vl_processor(ImageOnlyQwen2VLProcessor, tok)


def _internvl(tok, dims: TinyConfig, text_type: str):
    import transformers as tf

    image_seq_length = (IMAGE_SIZE // 14) ** 2 // 4
    config = tf.InternVLConfig(
        text_config=dict(model_type=text_type, **_text_config(tok, dims)),
        vision_config=dict(
            hidden_size=dims.vision_hidden_size,
            intermediate_size=2 * dims.vision_hidden_size,
            num_hidden_layers=dims.vision_layers,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=14,
        ),
        image_token_id=tok.context_image_token_id,
        image_seq_length=image_seq_length,
        downsample_ratio=0.5,
    )
    image_processor = tf.GotOcr2ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=False
    )
    processor = ImageOnlyInternVLProcessor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=image_seq_length,
        chat_template=tok.chat_template,
    )  # fmt: skip
    return config, tf.InternVLForConditionalGeneration, processor


def internvl3(tok, dims: TinyConfig):
    """InternVL3 pairs the ViT with a Qwen2.5 LLM."""
    return _internvl(tok, dims, "qwen2")


def internvl2(tok, dims: TinyConfig):
    """InternVL2-8B pairs it with InternLM2, whose architecture is Llama's."""
    return _internvl(tok, dims, "llama")


def qwen2_5(tok, dims: TinyConfig):
    import transformers as tf

    return tf.Qwen2Config(**_text_config(tok, dims)), tf.Qwen2ForCausalLM, tok


def qwen3(tok, dims: TinyConfig):
    import transformers as tf

    head_dim = dims.hidden_size // dims.num_heads
    return tf.Qwen3Config(**_text_config(tok, dims), head_dim=head_dim), tf.Qwen3ForCausalLM, tok
