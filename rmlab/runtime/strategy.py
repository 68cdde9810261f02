"""How a model spreads over a job's processes, and the precision it keeps and computes in (`run.strategy`).

One precision contract for every strategy: parameters (and so the optimizer's state) stay in float32, the master
weights AdamW steps; the forward and backward compute in `backbone.dtype` (bfloat16 on GPUs). At lr 3e-6 most bf16
updates would round away; fp32 masters keep them.

- `fsdp` (FSDP2, `torch.distributed.fsdp.fully_shard`): each decoder layer and vision block is a unit, the reward
  head a unit kept in fp32, the model's remaining parameters (embeddings, norms, LM head, projector) the root unit;
  parameters, gradients and optimizer state sharded over the processes; `MixedPrecisionPolicy(param_dtype=compute,
  reduce_dtype=fp32)`; `run.offload` keeps shards in CPU memory. Gradients are not reduced on accumulation
  micro-steps, only on the last. A single process still shards (over a group of one), so offload works there too.
- `ddp`: every process holds the fp32 model; forward under autocast to the compute dtype; gradients all-reduced on
  the last micro-step only.
- one process without fsdp: the fp32 model under autocast.

`auto` is fsdp for every scale but `tiny` (where ddp's single copy is the cheapest).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from rmlab.errors import ConfigError
from rmlab.models.backbone import DTYPES
from rmlab.models.processors import stand_in_image_inputs
from rmlab.runtime.distributed import Dist


def strategy_name(cfg) -> str:
    name = str(cfg.run.strategy)
    if name == "auto":
        return "ddp" if str(cfg.scale.name) == "tiny" else "fsdp"
    return name


def compute_dtype(cfg) -> torch.dtype:
    dtype = DTYPES[str(cfg.backbone.dtype)]
    if dtype is torch.float16:
        raise ConfigError("backbone.dtype=float16 needs loss scaling, which rmlab does not do: use bfloat16")
    return dtype


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks FSDP shards one at a time: the classes the model says must not be split (its decoder
    layers and vision blocks, `_no_split_modules`), outermost first."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


@dataclass
class Strategy:
    name: str  # "fsdp", "ddp" or "single"
    dist: Dist
    dtype: torch.dtype  # compute dtype
    offload: bool = False

    @classmethod
    def for_config(cls, cfg, dist: Dist) -> Strategy:
        name = strategy_name(cfg)
        if name == "ddp" and not dist.active:
            name = "single"
        offload = bool(cfg.run.offload)
        if offload and name != "fsdp":
            raise ConfigError("run.offload needs run.strategy=fsdp")
        if offload and dist.device.type == "cpu":
            print("[rmlab] run.offload: computing on the CPU, every shard is in CPU memory already (offload off)")
            offload = False
        return cls(name, dist, compute_dtype(cfg), offload)

    @property
    def sharded(self) -> bool:
        return self.name == "fsdp"

    def wrap(self, model: torch.nn.Module, processor=None) -> torch.nn.Module:
        """The model placed on this process's device and spread by the strategy (fp32 parameters throughout).
        `processor`: a VL model's, for the stand-in image its sharded vision tower runs on when a batch has none."""
        model = model.float()
        model.compute_device = self.dist.device
        if self.name == "fsdp":
            if self.dist.active and getattr(processor, "image_processor", None) is not None:
                model.vision_stand_in = stand_in_image_inputs(processor)
            return self._fully_shard(model)
        model.to(self.dist.device)
        trains = any(p.requires_grad for p in model.parameters())
        if self.name == "ddp" and trains:  # a frozen model (RL's reference) has no gradient to reduce
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
        return model

    def _fully_shard(self, model):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            OffloadPolicy,
            fully_shard,
            register_fsdp_forward_method,
        )

        self.dist.ensure_group()
        mesh = init_device_mesh(self.dist.device.type, (self.dist.world_size,))
        offload = CPUOffloadPolicy() if self.offload else OffloadPolicy()
        compute = None if self.dtype is torch.float32 else self.dtype
        mp = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
        if not self.offload:
            model.to(self.dist.device)
        for block in reversed(transformer_blocks(model)):  # innermost first
            fully_shard(block, mesh=mesh, mp_policy=mp, offload_policy=offload)
        head = getattr(model, "head", None)
        if head is not None:
            fully_shard(head, mesh=mesh, mp_policy=MixedPrecisionPolicy(), offload_policy=offload)  # fp32
        fully_shard(model, mesh=mesh, mp_policy=mp, offload_policy=offload)
        register_fsdp_forward_method(model, "generate_tokens")  # generation gathers the root's weights too
        model.synced_generation = self.dist.active  # and every process generates until all have stopped
        return model

    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        """The rmlab model inside the strategy's wrapper (DDP wraps it; FSDP2 shards it in place)."""
        return getattr(model, "module", model) if self.name == "ddp" else model

    def autocast(self):
        """Compute in the compute dtype; FSDP casts its units itself."""
        if self.sharded or self.dtype is torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def micro_step(self, model, last: bool):
        """One accumulation micro-step: gradients reduced over the processes only on the last one."""
        if self.name == "fsdp":
            model.set_requires_gradient_sync(last)
            yield
        elif self.name == "ddp" and not last:
            with model.no_sync():
                yield
        else:
            yield

    def clip_grad_norm(self, params, max_norm: float) -> float:
        """Clip to max_norm (0: no clipping) and return the total norm, over every shard."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm or float("inf"))
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)

    def full_state_dict(self, model) -> dict[str, torch.Tensor]:
        """The whole model's state on CPU: on rank 0 (every rank takes part in gathering it; the others get {})."""
        if not self.sharded:
            module = self.module(model)
            return {k: v.detach().cpu() for k, v in module.state_dict().items()} if self.dist.is_main else {}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
