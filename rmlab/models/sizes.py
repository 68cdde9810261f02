"""The sizes of every hub checkpoint the backbone configs name, so that memory is planned without the hub.

Each entry is the part of the checkpoint's `config.json` that sets its parameter count (text model: hidden size,
MLP width, layers, attention heads, key-value heads, vocabulary, tied embeddings; vision tower: its own). Read
from the published configs (copies of Qwen2.5-VL-7B's, Qwen3-8B's and the InternVL3-1B/2B language models' were
checked on 2026-12-01; the rest are the model cards' published values). With the hub, or a local copy, the
checkpoint's own config is read instead (rmlab.models.backbone.model_config).
"""

from __future__ import annotations

from rmlab.errors import ConfigError

QWEN2_5_VL_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16}
QWEN2_VL_VISION = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16}
INTERN_VIT_300M = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 448, "patch_size": 14,
}  # fmt: skip


def _text(hidden, intermediate, layers, heads, kv_heads, vocab, tie=False, **extra) -> dict:
    return {
        "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
        "tie_word_embeddings": tie, **extra,
    }  # fmt: skip


QWEN2_5_7B = _text(3584, 18944, 28, 28, 4, 152064)

HUB_SIZES: dict[str, dict] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "text": _text(2048, 11008, 36, 16, 2, 151936, tie=True),
        "vision": {**QWEN2_5_VL_VISION, "out_hidden_size": 2048},
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {"text": QWEN2_5_7B, "vision": {**QWEN2_5_VL_VISION, "out_hidden_size": 3584}},
    "Qwen/Qwen2.5-VL-32B-Instruct": {
        "text": _text(5120, 27648, 64, 40, 8, 152064),
        "vision": {**QWEN2_5_VL_VISION, "out_hidden_size": 5120},
    },
    "Qwen/Qwen2-VL-7B-Instruct": {"text": QWEN2_5_7B, "vision": {**QWEN2_VL_VISION, "hidden_size": 3584}},
    "OpenGVLab/InternVL3-1B-hf": {
        "text": {**_text(896, 4864, 24, 14, 2, 151674), "model_type": "qwen2"},
        "vision": INTERN_VIT_300M,
    },
    "OpenGVLab/InternVL3-2B-hf": {
        "text": {**_text(1536, 8960, 28, 12, 2, 151674), "model_type": "qwen2"},
        "vision": INTERN_VIT_300M,
    },
    "OpenGVLab/InternVL3-8B-hf": {
        "text": {**_text(3584, 18944, 28, 28, 4, 151674), "model_type": "qwen2"},
        "vision": INTERN_VIT_300M,
    },
    "OpenGVLab/InternVL2-8B": {  # InternLM2.5-7B's architecture is Llama's
        "text": {**_text(4096, 14336, 32, 32, 8, 92553), "model_type": "llama"},
        "vision": INTERN_VIT_300M,
    },
    "Qwen/Qwen2.5-7B-Instruct": {"text": QWEN2_5_7B},
    "Qwen/Qwen3-8B": {"text": _text(4096, 12288, 36, 32, 8, 151936, head_dim=128)},
}


def config_from_sizes(family: str, hub_id: str):
    """The transformers config of a hub checkpoint, from its kept sizes."""
    import transformers as tf

    if hub_id not in HUB_SIZES:
        raise ConfigError(f"no sizes kept for {hub_id}: give backbone.path (a local copy) to plan its memory")
    text, vision = HUB_SIZES[hub_id]["text"], HUB_SIZES[hub_id].get("vision")
    tie = {"tie_word_embeddings": text["tie_word_embeddings"]}  # a multimodal model ties as its top level says
    if family == "qwen2_5_vl":
        return tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tie)
    if family == "qwen2_vl":
        return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **tie)
    if family in ("internvl3", "internvl2"):
        return tf.InternVLConfig(text_config=text, vision_config=vision, downsample_ratio=0.5, **tie)
    if family == "qwen2_5":
        return tf.Qwen2Config(**text)
    if family == "qwen3":
        return tf.Qwen3Config(**text)
    raise ConfigError(f"no config builder for backbone family {family!r}")
