"""A scalar reward model: backbone hidden state at the last real token -> reward head -> one number.

Saved as a directory that loads back with one call, `load_reward_model(path)`: the backbone in HF format with
safetensors (or, with LoRA, the adapter beside a reference to its base), the head as `head.safetensors`, the
processor, and `rmlab_model.json` describing how they fit together.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rmlab.data.encode import last_token_index
from rmlab.models.families import FAMILIES
from rmlab.models.heads import RewardHead
from rmlab.util.atomic import atomic_dir

META_FILE = "rmlab_model.json"
FORMAT_VERSION = 1


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


class _Backbone(nn.Module):
    """A backbone with what every paradigm's model shares: hidden states, LM logits at chosen positions,
    trainable state for checkpoints, and saving in the directory layout `load_reward_model` reads."""

    paradigm = "naive"
    vision_stand_in: dict | None = None  # set by the strategy when processes shard the vision tower

    def __init__(self, backbone: nn.Module, family: str, source: str, paradigm: str):
        super().__init__()
        self.backbone = backbone
        self.family = family
        self.source = source
        self.paradigm = paradigm

    def base_model(self) -> nn.Module:
        """The backbone without its LM head (LoRA layers, if any, are inside it)."""
        model = self.generative_model()
        return getattr(model, model.base_model_prefix)

    def generative_model(self) -> nn.Module:
        """The backbone with its LM head (for generation and token losses)."""
        return self.backbone.get_base_model() if _is_peft(self.backbone) else self.backbone

    def device(self) -> torch.device:
        """Where inputs go: the device the strategy computes on (set when parameters are offloaded to CPU), else
        the parameters' own."""
        return getattr(self, "compute_device", None) or next(self.backbone.parameters()).device

    def hidden_states(self, inputs: dict) -> torch.Tensor:
        device = self.device()
        inputs = {k: v.to(device) for k, v in inputs.items()}
        zero = self._run_vision_stand_in(inputs)
        hidden = self.base_model()(**inputs, use_cache=False, return_dict=True).last_hidden_state
        return hidden if zero is None else hidden + zero.to(hidden.dtype)

    def _run_vision_stand_in(self, inputs: dict) -> torch.Tensor | None:
        """On a batch without images, when the vision tower is sharded: the tower run on a stand-in image, first, as
        it runs first on a batch with images; returned times zero, so every vision parameter is in the graph and
        its gradient (zero) is reduced with the other processes' (FSDP reduces each unit's gradients together)."""
        if self.vision_stand_in is None or "pixel_values" in inputs:
            return None
        device = self.device()
        out = self.base_model().get_image_features(**{k: v.to(device) for k, v in self.vision_stand_in.items()})
        return sum(t.float().sum() for t in _tensors(out)) * 0.0

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for the given hidden states only (never the whole sequence: large vocabularies)."""
        return self.generative_model().get_output_embeddings()(hidden).float()

    def target_logits(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        """Logits at a batch's language-modelling positions (`lm_rows`, `lm_cols`: rmlab.paradigms.tokens)."""
        rows, cols = batch["lm_rows"].to(hidden.device), batch["lm_cols"].to(hidden.device)
        return self.lm_logits(hidden[rows, cols])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes (what a checkpoint needs beside the base weights)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        unknown = [n for n in state if n not in params]
        if missing or unknown:
            raise ValueError(f"checkpoint does not match the model: missing {missing[:3]}, unknown {unknown[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def generate_tokens(self, **kwargs):
        """The backbone's `generate` (a method of this model, so a sharded model gathers its weights for it)."""
        with torch.no_grad():  # before generate encodes the images of the processes that have them
            self._run_vision_stand_in(kwargs)
        return self.generative_model().generate(**kwargs)

    def _extra_meta(self) -> dict:
        return {}

    def _save_extra(self, directory: Path, state: dict[str, torch.Tensor]) -> None:
        """Files beside the backbone (a head), from the model's state without the backbone's entries."""

    def save(self, path: str | Path, processor, state: dict | None = None, dtype: torch.dtype | None = None) -> Path:
        """Write the model atomically: a crash leaves either the previous directory or the complete new one.

        `state` is the whole model's state dict (gathered from its shards when it is sharded; default: this module's
        own); the backbone is written in `dtype` (the compute dtype: bf16 at scale; default: as it is), the head in
        fp32."""
        if state is None:
            state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        backbone = {k.removeprefix("backbone."): _cast(v, dtype) for k, v in state.items() if k.startswith("backbone.")}
        extra = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        with atomic_dir(path) as tmp:
            meta = {"format": FORMAT_VERSION, "family": self.family, "paradigm": self.paradigm, **self._extra_meta()}
            if _is_peft(self.backbone):
                self.backbone.save_pretrained(tmp / "adapter", state_dict=backbone)
                base_source = self.source
                if self.source == "tiny":  # not reloadable from anywhere else: keep the base weights too
                    _save_base(self.generative_model().config, backbone, tmp / "base")
                    base_source = "base"
                meta["backbone"] = {"adapter": "adapter", "base": base_source}
            else:
                self.backbone.save_pretrained(tmp / "backbone", state_dict=backbone)
                meta["backbone"] = {"weights": "backbone"}
            processor.save_pretrained(tmp / "processor")
            self._save_extra(tmp, extra)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return Path(path)


def _tensors(value):
    """Every tensor in a model output (nested tuples, lists and output dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _save_base(config, peft_state: dict[str, torch.Tensor], directory: Path) -> None:
    """The frozen base weights under a LoRA adapter, as a plain checkpoint of the base model (its keys without
    PEFT's `base_model.model.` prefix and `.base_layer`, without the adapter's `lora_` weights)."""
    from safetensors.torch import save_file

    base = {
        k.removeprefix("base_model.model.").replace(".base_layer.", "."): v.contiguous()
        for k, v in peft_state.items()
        if "lora_" not in k
    }
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    save_file(base, str(directory / "model.safetensors"), metadata={"format": "pt"})


class RewardModel(_Backbone):
    """Backbone + reward head: a scalar per sequence (Naive-RM; Critic-RM, whose backbone also writes critiques)."""

    def __init__(self, backbone: nn.Module, head: RewardHead, family: str, source: str, paradigm: str = "naive"):
        super().__init__(backbone, family, source, paradigm)
        self.head = head

    def forward(self, batch: dict):
        """One score per pooled position of a collated batch (`collate_pairs` or `collate_shared_prefix`); with
        language-modelling targets in the batch (Critic-RM's critiques), (scores, logits at the targets).

        A batch may give `pool_index` (and `pool_rows`); without them each row is pooled at its last real token.
        """
        hidden = self.batch_hidden(batch)
        scores = self.score_hidden(hidden, batch)
        if "lm_rows" in batch:
            return scores, self.target_logits(hidden, batch)
        return scores

    def batch_hidden(self, batch: dict) -> torch.Tensor:
        inputs = batch["inputs"]
        if "rejected_spans" in batch and hasattr(self.base_model(), "get_rope_index"):
            inputs = {**inputs, "position_ids": self._mrope_positions(batch)}
        return self.hidden_states(inputs)

    def score_hidden(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor:
        index = batch.get("pool_index")
        if index is None:
            index = last_token_index(batch["inputs"]["attention_mask"])
        rows = batch.get("pool_rows")
        if rows is None:
            rows = torch.arange(hidden.shape[0])
        return self.head(hidden[rows.to(hidden.device), index.to(hidden.device)])

    def _mrope_positions(self, batch: dict) -> torch.Tensor:
        """M-RoPE (t, h, w) position ids for shared-prefix rows: the model's own computation over the row read as
        one sequence, then the rejected response moved back to start where the chosen one starts (text after the
        prompt advances all three axes together, so that is the position it would have after the prompt alone)."""
        inputs = batch["inputs"]
        positions, _ = self.base_model().get_rope_index(
            inputs["input_ids"],
            inputs.get("mm_token_type_ids", torch.zeros_like(inputs["input_ids"])),
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=batch["attention_mask_2d"],
        )
        for b, (start, length, chosen_start) in enumerate(batch["rejected_spans"]):
            first = positions[:, b, chosen_start : chosen_start + 1]
            positions[:, b, start : start + length] = first + torch.arange(length, device=positions.device)
        return positions

    def _extra_meta(self) -> dict:
        return {"head": self.head.config}

    def _save_extra(self, directory: Path, state: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        head = {k.removeprefix("head."): v.float().contiguous() for k, v in state.items() if k.startswith("head.")}
        save_file(head, directory / "head.safetensors")


class JudgeModel(_Backbone):
    """A generative judge: the backbone alone, reading its verdict from the LM head (GRM, LongCoT-GRM)."""

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits at the batch's language-modelling positions (rmlab.paradigms.tokens.collate_completions)."""
        return self.target_logits(self.hidden_states(batch["inputs"]), batch)


def build_generative(cfg, paradigm: str):
    """(JudgeModel, processor) for the configured backbone with its LM head trainable: a judge's or a policy's."""
    from rmlab.models.backbone import backbone_source, prepare_backbone

    model, processor = prepare_backbone(cfg, uses_lm_head=True)
    return JudgeModel(model, str(cfg.backbone.family), backbone_source(cfg.backbone, cfg.scale), paradigm), processor


def load_reward_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """(model in eval mode, processor) from a directory written by `save` (or a run directory holding one in
    `model/`): a RewardModel when the directory has a head, else a JudgeModel."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / META_FILE).exists() and (path / "model" / META_FILE).exists():
        path = path / "model"  # a run directory: its trained model
    meta_path = path / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: not an rmlab model directory (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    family = meta["family"]
    processor = FAMILIES.get(family).load_processor(str(path / "processor"))
    auto = FAMILIES.get(family).auto_class()
    spec = meta["backbone"]
    if "adapter" in spec:
        from peft import PeftModel

        base = spec["base"]
        base = str(path / base) if base == "base" else base
        backbone = PeftModel.from_pretrained(auto.from_pretrained(base, dtype=dtype), str(path / spec["adapter"]))
        source = base
    else:
        backbone = auto.from_pretrained(str(path / spec["weights"]), dtype=dtype)
        source = str(path)
    paradigm = meta.get("paradigm", "naive")
    if "head" in meta:
        head_cfg = dict(meta["head"])
        head = RewardHead(head_cfg.pop("in_dim"), **head_cfg)
        head.load_state_dict(load_file(str(path / "head.safetensors")))
        model = RewardModel(backbone, head, family, source, paradigm)
    else:
        model = JudgeModel(backbone, family, source, paradigm)
    model.eval()
    return model, processor
