"""Loading a backbone (the `backbone` x `scale` axes) and applying the training options to it.

A backbone is the family's generative model class, from a local directory, a hub id, or built tiny in code; the
options are the ones the ablations vary: frozen vision tower, LoRA, gradient checkpointing, dtype.
"""

from __future__ import annotations

import re
from dataclasses import fields

import torch

# rmlab shows its own progress; transformers' per-load and per-save bars would flood a sweep's logs.
from transformers.utils import logging as _transformers_logging

from rmlab.config.schema import TinyConfig
from rmlab.errors import ConfigError
from rmlab.models.families import FAMILIES, build_tiny
from rmlab.models.image_budget import apply_image_budget
from rmlab.models.sizes import config_from_sizes
from rmlab.models.tiny import tiny_tokenizer

_transformers_logging.disable_progress_bar()

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def backbone_source(backbone, scale) -> str:
    """Where the weights come from: `backbone.path`, `tiny`, or the hub id the family lists for this scale."""
    if backbone.path:
        return str(backbone.path)
    if scale.name == "tiny":
        return "tiny"
    hub_ids = dict(backbone.hub_ids)
    if scale.name not in hub_ids:
        sizes = ", ".join([*hub_ids, "tiny"])
        raise ConfigError(f"backbone {backbone.family} has no scale {scale.name!r}; available: {sizes}")
    return hub_ids[scale.name]


def _tiny_config(scale) -> TinyConfig:
    return TinyConfig(**{f.name: scale.tiny[f.name] for f in fields(TinyConfig)})


def load_backbone(backbone, scale, data_mix, seed: int = 0, dtype: torch.dtype = torch.float32):
    """(generative model, processor) for the configured backbone, its weights in `dtype`: float32 for training (the
    master weights the optimizer steps; `backbone.dtype` is the dtype it computes in, rmlab.runtime.strategy).
    The processor carries `data_mix`'s image budget (rmlab.models.image_budget)."""
    family = FAMILIES.get(backbone.family)
    source = backbone_source(backbone, scale)
    if source == "tiny":
        model, processor = build_tiny(family.name, _tiny_config(scale), seed=seed)
        model = model.to(dtype)
    else:
        processor = family.load_processor(source, trust_remote_code=backbone.trust_remote_code)
        model = family.auto_class().from_pretrained(
            source,
            dtype=dtype,
            attn_implementation=backbone.attn_implementation,
            trust_remote_code=backbone.trust_remote_code,
        )
    return model, apply_image_budget(processor, family.name, data_mix)


def load_processor_only(backbone, scale, data_mix):
    """The backbone's processor (or tokenizer) without its weights, under `data_mix`'s image budget: for checking
    data against it."""
    source = backbone_source(backbone, scale)
    if source == "tiny":
        processor = build_tiny(str(backbone.family), _tiny_config(scale))[1]
    else:
        processor = FAMILIES.get(backbone.family).load_processor(source, trust_remote_code=backbone.trust_remote_code)
    return apply_image_budget(processor, str(backbone.family), data_mix)


def freeze_vision_tower(model, prefixes) -> int:
    """Freeze parameters under the vision tower's module prefixes (the projector stays trainable). Returns count."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    if prefixes and not frozen:
        raise ConfigError(f"freeze_vision: no parameter under {list(prefixes)}; check backbone.vision_tower")
    return frozen


def apply_lora(model, lora, vision_prefixes):
    """Wrap the model with LoRA adapters on the language model's linear layers (never on the vision tower)."""
    from peft import LoraConfig, get_peft_model

    exclude = None
    if vision_prefixes:
        exclude = "|".join(f"{re.escape(p)}\\..*" for p in vision_prefixes)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        exclude_modules=exclude,
        bias="none",
    )
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model, with_lora: bool) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers' name from 5.x on
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if with_lora:
        model.enable_input_require_grads()


def prepare_backbone(cfg, uses_lm_head: bool):
    """(generative model, processor) with the configured options applied: frozen vision tower, gradient
    checkpointing, LoRA. A paradigm that never reads the LM head (a scalar head on hidden states) freezes it, which
    keeps it out of the optimizer and the checkpoints."""
    model, processor = load_backbone(cfg.backbone, cfg.scale, cfg.data_mix, seed=cfg.run.seed)
    return apply_options(model, cfg.backbone, uses_lm_head), processor


def apply_options(model, backbone, uses_lm_head: bool):
    """The model with the configured options applied (what prepare_backbone does after loading; also applied to a
    model on the meta device when planning memory)."""
    lm_head = model.get_output_embeddings()
    if not uses_lm_head and lm_head is not None and lm_head.weight is not model.get_input_embeddings().weight:
        lm_head.requires_grad_(False)
    if backbone.freeze_vision:
        freeze_vision_tower(model, list(backbone.vision_tower))
    if backbone.gradient_checkpointing:
        enable_gradient_checkpointing(model, with_lora=backbone.lora.enabled)
    if backbone.lora.enabled:
        model = apply_lora(model, backbone.lora, list(backbone.vision_tower))
    return model


def model_config(backbone, scale):
    """The transformers config of the configured backbone, without its weights: a tiny one as built here; a local
    checkpoint's own; a hub checkpoint's from the local cache when there, else from its sizes kept in
    rmlab.models.sizes (so planning needs no hub)."""
    family = FAMILIES.get(backbone.family)
    source = backbone_source(backbone, scale)
    if source == "tiny":
        return family.tiny(tiny_tokenizer(family.name), _tiny_config(scale))[0]
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=backbone.trust_remote_code)
    except (OSError, ValueError):
        return config_from_sizes(family.name, source)
