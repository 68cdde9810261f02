"""Per-GPU memory of a run before it is submitted (`rmlab plan`, and `rmlab sweep` before it submits).

The parameters are counted exactly: the configured model is built on the meta device (the family's real class from
the checkpoint's sizes, rmlab.models.sizes; no weights, no hub) with the run's options applied (frozen LM head and
vision tower, LoRA, the reward head). From the counts, per GPU:

- weights: fp32 masters, 4 bytes a parameter; fsdp shards them over the processes and holds the units it computes
  with gathered in the compute dtype (the root unit, and two blocks: the one running and the one prefetched); ddp
  and one process hold them whole, plus autocast's cache of their compute-dtype copies;
- gradients: 4 bytes a trainable parameter (sharded by fsdp; ddp adds its all-reduce buckets, as much again);
- optimizer: AdamW's two moments, 8 bytes a trainable parameter, and a step counter per tensor (sharded by fsdp);
- `run.offload`: weights, gradients and optimizer in CPU memory; the GPU holds the gathered units only;
- activations (bf16), an estimate for the micro-batch each process computes (`train.batch_size` pairs over the
  processes): per text layer and token 2 (16 h + 3 I) bytes, or with gradient checkpointing 2 h per layer plus one
  layer's full set; vision blocks the same over 4 patches per image token, counting every prompt token as an image
  token (an upper bound); the LM logits of the paradigms that read the LM head, in fp32;
- a fixed 1.5 GiB (CUDA context, allocator) and 5% fragmentation.

The activation estimate has not been checked against a GPU measurement here (no GPU on this machine kind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rmlab.models.backbone import apply_options, model_config
from rmlab.models.families import FAMILIES
from rmlab.models.heads import RewardHead
from rmlab.paradigms import get_paradigm
from rmlab.runtime.strategy import strategy_name, transformer_blocks

GIB = 1 << 30
OVERHEAD = 1.5 * GIB
FRAGMENTATION = 1.05


@dataclass
class Footprint:
    """What the memory of a model depends on, counted on the meta device."""

    params: int  # every parameter
    trainable: int
    trainable_tensors: int
    root: int  # parameters outside the repeated blocks and the head (embeddings, norms, LM head, projector)
    block: int  # the largest repeated block
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    vision_hidden: int = 0
    vision_intermediate: int = 0
    vision_layers: int = 0


def footprint(cfg) -> Footprint:
    """The counts of the configured model (its paradigm's: a reward head for the scalar paradigms)."""
    family = FAMILIES.get(cfg.backbone.family)
    config = model_config(cfg.backbone, cfg.scale)
    paradigm = get_paradigm(cfg.paradigm.name)
    uses_lm_head = getattr(paradigm, "uses_lm_head", lambda _: True)(cfg)
    with torch.device("meta"):
        model = family.auto_class().from_config(config)
        model = apply_options(model, cfg.backbone, uses_lm_head)
        modules = [model]
        if paradigm.scalar:
            text = config.get_text_config()
            h = cfg.head
            modules.append(RewardHead(text.hidden_size, h.layers, str(h.activation), h.width, h.dropout))
    params = [p for m in modules for p in m.parameters()]
    trainable = [p for p in params if p.requires_grad]
    blocks = transformer_blocks(model)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    text = config.get_text_config()
    vision = getattr(config, "vision_config", None)
    return Footprint(
        params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in trainable),
        trainable_tensors=len(trainable),
        root=sum(p.numel() for p in model.parameters() if id(p) not in in_blocks),
        block=max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0),
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        vocab=text.vocab_size,
        # (Qwen2-VL's vision config says the LLM's width in hidden_size; its tower's own is embed_dim)
        vision_hidden=_first(vision, "embed_dim", "hidden_size") if vision is not None else 0,
        vision_intermediate=_vision_mlp(vision),
        vision_layers=_first(vision, "depth", "num_hidden_layers") if vision is not None else 0,
    )


def _first(config, *names) -> int:
    return next(int(getattr(config, n)) for n in names if getattr(config, n, None) is not None)


def _vision_mlp(vision) -> int:
    if vision is None:
        return 0
    if getattr(vision, "intermediate_size", None):
        return int(vision.intermediate_size)
    return int(_first(vision, "embed_dim", "hidden_size") * getattr(vision, "mlp_ratio", 4))


@dataclass
class MemoryPlan:
    strategy: str
    processes: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    limit: float  # bytes of one GPU

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.activations + self.overhead) * FRAGMENTATION

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def advice(self, cfg) -> str:
        """One line: what to change so that it fits."""
        if self.fits:
            return ""
        states = self.weights + self.gradients + self.optimizer
        if self.strategy != "fsdp":
            return "shard it: run.strategy=fsdp"
        if states > 0.6 * self.limit:
            return "more GPUs (launcher.nodes, launcher.tasks_per_node) or run.offload=true"
        if not cfg.backbone.gradient_checkpointing:
            return "backbone.gradient_checkpointing=true"
        per = max(1, math.ceil(cfg.train.batch_size / self.processes))
        return f"a smaller micro-batch: train.batch_size (now {per} pair(s) per GPU), with train.grad_accum"


def processes(cfg) -> int:
    return int(cfg.launcher.nodes) * int(cfg.launcher.tasks_per_node)


def plan_memory(cfg, fp: Footprint | None = None) -> MemoryPlan:
    """The per-GPU plan of the config's run under its strategy and the launcher's processes."""
    fp = fp or footprint(cfg)
    n = processes(cfg)
    name = strategy_name(cfg)
    compute = 4 if str(cfg.backbone.dtype) == "float32" else 2
    offload = bool(cfg.run.offload) and name == "fsdp"
    if name == "fsdp":
        gathered = compute * (fp.root + 2 * fp.block)
        weights = gathered + (0 if offload else 4 * fp.params / n)
        gradients = 0 if offload else 4 * fp.trainable / n
        optimizer = 0 if offload else (8 * fp.trainable + 4 * fp.trainable_tensors) / n
    else:
        weights = 4 * fp.params + (compute * fp.params if compute < 4 else 0)
        gradients = 4 * fp.trainable * (2 if n > 1 else 1)
        optimizer = 8 * fp.trainable + 4 * fp.trainable_tensors
    limit = float(cfg.launcher.gpu_mem_gb) * GIB
    return MemoryPlan(name, n, weights, gradients, optimizer, activations(cfg, fp, n), OVERHEAD, limit)


def activations(cfg, fp: Footprint, n: int) -> float:
    """Bytes of one process's activations for its share of a micro-batch (see the module's docstring)."""
    pairs = max(1, math.ceil(int(cfg.train.batch_size) / n))
    tokens = 2 * pairs * int(cfg.data_mix.max_length)  # both responses' rows, or one shared-prefix row twice as long
    checkpointing = bool(cfg.backbone.gradient_checkpointing)

    def tower(tokens: int, hidden: int, mlp: int, layers: int) -> float:
        full = 2 * tokens * (16 * hidden + 3 * mlp)
        return (2 * tokens * hidden * layers + full) if checkpointing else full * layers

    total = tower(tokens, fp.hidden, fp.intermediate, fp.layers)
    if fp.vision_layers:
        patches = 4 * pairs * int(cfg.data_mix.max_length)
        total += tower(patches, fp.vision_hidden, fp.vision_intermediate, fp.vision_layers)
    if getattr(get_paradigm(cfg.paradigm.name), "uses_lm_head", lambda _: True)(cfg):
        total += 8 * (tokens // 2) * fp.vocab  # fp32 logits at the targets and their log-softmax
    return total
