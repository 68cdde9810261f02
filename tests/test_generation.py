"""generation.engine=vllm without a server: what rmlab refuses in one line, the directory it serves, and the images
it sends (tests/test_vllm.py has the tests on the real server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rmlab.config.compose import compose
from rmlab.errors import ConfigError
from rmlab.generation.engine import qwen_images
from rmlab.generation.server import check_servable, serving_dir, vllm_python

HEADS = "scale.tiny.num_heads=2"  # heads of 32: what vLLM's CPU attention runs


def _saved(out: Path, *overrides) -> Path:
    """An untrained tiny model of the config, saved as a run saves its model."""
    from rmlab.paradigms import get_paradigm

    cfg = compose(["tracking=disabled", *overrides])
    model, processor = get_paradigm(str(cfg.paradigm.name)).build(cfg)
    return model.save(out, processor)


def test_a_missing_environment_says_make_vllm(tmp_path):
    gen = compose(["generation.python=" + str(tmp_path / "nowhere" / "python")]).generation
    with pytest.raises(ConfigError, match=r"run `make vllm`"):
        vllm_python(gen)


def test_a_head_size_the_cpu_build_cannot_run_is_one_line_naming_the_fix(tmp_path):
    model = _saved(tmp_path / "model", "backbone=qwen2_5", "paradigm=sft")  # the default: 4 heads of 16
    with pytest.raises(ConfigError, match=r"heads of size 16.*scale.tiny.num_heads") as e:
        check_servable(model, on_cpu=True)
    assert "\n" not in str(e.value)
    check_servable(model, on_cpu=False)  # the CUDA build has kernels for it
    check_servable(_saved(tmp_path / "two", "backbone=qwen2_5", "paradigm=sft", HEADS), on_cpu=True)


def test_the_served_directory_is_the_saved_model_with_standard_pieces(tmp_path):
    model = _saved(tmp_path / "model", "backbone=qwen2_5_vl", "paradigm=longcot", HEADS)
    out = serving_dir(model, tmp_path / "served")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    saved = json.loads((model / "processor" / "processor_config.json").read_text())
    assert saved["processor_class"] == "ImageOnlyQwen25VLProcessor"  # the saved model itself is left as it was


def test_images_are_recovered_exactly_from_the_patches(synth_dir):
    """What the server gets is the very pixels rmlab's processor made: processing them again gives the same
    patches."""
    from PIL import Image

    from rmlab.models.backbone import prepare_backbone

    cfg = compose(["backbone=qwen2_5_vl", "data_mix=synth_critic", "tracking=disabled"])
    _, processor = prepare_backbone(cfg, uses_lm_head=True)
    ip = processor.image_processor
    images = [Image.open(p).convert("RGB") for p in sorted((synth_dir / "mm_rlhf" / "test").rglob("*.png"))[:3]]
    images.append(Image.new("RGB", (90, 61), (200, 30, 60)))  # a size the processor resizes
    for image in images:
        vision = {k: v for k, v in ip(images=[image], return_tensors="pt").items()}
        (again,) = qwen_images(vision, ip)
        redone = ip(images=[again], return_tensors="pt")
        assert torch.equal(redone["image_grid_thw"], vision["image_grid_thw"])
        assert torch.allclose(redone["pixel_values"], vision["pixel_values"], atol=1e-6, rtol=0)
