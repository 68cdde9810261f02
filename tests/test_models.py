"""Every backbone family at scale=tiny: builds offline, trains a step, scores a pair, saves and loads back."""

import pytest
import torch

from rmlab.config.compose import compose
from rmlab.data.adapters import load_pairs
from rmlab.data.encode import PairEncoder, collate_pairs, tokenizer_of
from rmlab.errors import ConfigError
from rmlab.models.reward_model import load_reward_model
from rmlab.paradigms.naive import bradley_terry_loss, rewards
from rmlab.train.recipe import build_model

FAMILIES = ["qwen2_5_vl", "qwen2_vl", "internvl3", "internvl2", "qwen2_5", "qwen3"]
TEXT = {"qwen2_5", "qwen3"}


def _batch(family, processor, synth_dir, n=4):
    name, path = (
        ("ultrafeedback", "ultrafeedback/train.jsonl") if family in TEXT else ("rlaif_v", "rlaif_v/train.parquet")
    )
    enc = PairEncoder(processor, 256)
    return collate_pairs(
        [enc.encode(p) for p in load_pairs(name, str(synth_dir / path), limit=n)], tokenizer_of(processor).pad_token_id
    )


def _step(model, batch):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    chosen, rejected = rewards(model, batch)
    loss = bradley_terry_loss(chosen, rejected)
    loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    return loss, changed


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_trains_a_step_and_scores(family, synth_dir, tmp_path):
    cfg = compose([f"backbone={family}", "scale=tiny"])
    model, processor = build_model(cfg)
    batch = _batch(family, processor, synth_dir)
    loss, changed = _step(model, batch)
    assert torch.isfinite(loss)
    assert any(n.startswith("head.") for n in changed) and any(n.startswith("backbone.") for n in changed)
    if family not in TEXT:  # gradients reach the vision tower
        assert any("visual" in n or "vision_tower" in n for n in changed)
    model.eval()
    with torch.no_grad():
        chosen, rejected = rewards(model, batch)
    assert chosen.shape == rejected.shape == (4,)

    model.save(tmp_path / "model", processor)
    loaded, loaded_processor = load_reward_model(tmp_path / "model")
    with torch.no_grad():
        again = rewards(loaded, _batch(family, loaded_processor, synth_dir))
    torch.testing.assert_close(again, (chosen, rejected))


def test_lora_trains_adapters_and_head_and_saves_them_together(synth_dir, tmp_path):
    cfg = compose(["backbone.lora.enabled=true", "backbone.lora.r=4"])
    model, processor = build_model(cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert not any("visual" in n for n in trainable)  # LoRA stays out of the vision tower
    batch = _batch("qwen2_5_vl", processor, synth_dir)
    _step(model, batch)
    model.eval()
    with torch.no_grad():
        before = rewards(model, batch)
    model.save(tmp_path / "lora", processor)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "lora" / "head.safetensors").exists()
    loaded, _ = load_reward_model(tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(rewards(loaded, batch), before)


def test_freeze_vision_freezes_the_tower_not_the_projector():
    model, _ = build_model(compose(["backbone.freeze_vision=true"]))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "backbone.lm_head.weight" in frozen  # a scalar reward model never uses the LM head
    frozen.discard("backbone.lm_head.weight")
    assert frozen and all(".visual.patch_embed." in n or ".visual.blocks." in n for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if ".visual.merger." in n)


def _counted(forward, runs: list):
    def counting(*args, **kwargs):
        runs.append(forward)
        return forward(*args, **kwargs)

    return counting


def test_gradient_checkpointing_recomputes_the_layers_and_gives_the_same_gradients(synth_dir):
    grads, calls = [], []
    for gc in ("false", "true"):
        model, processor = build_model(compose([f"backbone.gradient_checkpointing={gc}"]))
        model.train()
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
        runs = []  # each decoder layer's MLP run (a recomputation reruns it; module hooks stay silent then)
        for layer in layers:
            layer.mlp.forward = _counted(layer.mlp.forward, runs)
        chosen, rejected = rewards(model, _batch("qwen2_5_vl", processor, synth_dir))
        bradley_terry_loss(chosen, rejected).backward()
        calls.append((len(runs), len(layers)))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert calls[0] == (calls[0][1], calls[0][1]) and calls[1] == (2 * calls[1][1], calls[1][1])  # recomputed once
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("backbone.") for n in grads[0])
    for name in grads[0]:  # the backbone's gradients too, not only the head's
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4, msg=name)


def test_a_local_checkpoint_directory_loads_through_the_real_loader(synth_dir, tmp_path):
    """backbone.path takes a local HF directory, as a hub id would be on a cluster."""
    from rmlab.models.families import build_tiny

    model, processor = build_tiny("qwen2_5_vl")
    model.save_pretrained(tmp_path / "hf")
    processor.save_pretrained(tmp_path / "hf")
    built, _ = build_model(compose([f"backbone.path={tmp_path / 'hf'}", "scale=7b"]))
    assert built.source == str(tmp_path / "hf")
    for (n, a), (_, b) in zip(model.named_parameters(), built.backbone.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_freeze_vision_with_wrong_prefixes_is_a_clear_error():
    with pytest.raises(ConfigError, match="no parameter under"):
        build_model(compose(["backbone.freeze_vision=true", "backbone.vision_tower=[model.nope]"]))
