"""Multi-process training: torch.distributed set up from the environment the job was started in.

Under submitit (SLURM or local, `launcher.tasks_per_node` > 1) the ranks, world size and master address come from
the job (submitit's TorchDistributedEnvironment); under torchrun from RANK / WORLD_SIZE / MASTER_ADDR. NCCL on GPUs, gloo on
CPU. Every rank takes its slice of each micro-batch; DDP averages the gradients, so N ranks on B/N pairs each step as
one process on B pairs. Rank 0 alone logs, writes checkpoints, status and the model, and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        """This process's GPU when there is one (the local rank's), else the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def shard(self, pairs: list) -> list:
        """This rank's slice of a micro-batch (the batch must divide evenly, so every rank's loss weighs the same)."""
        if not self.active:
            return pairs
        if len(pairs) % self.world_size:
            raise ValueError(
                f"a micro-batch of {len(pairs)} pairs does not split over {self.world_size} processes: "
                "make train.batch_size a multiple of the number of processes"
            )
        return pairs[self.rank :: self.world_size]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each metric averaged over the ranks (every rank saw an equal share of the step)."""
        if not self.active:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on one (so all ranks stop at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def all(self, flag: bool) -> bool:
        """True on every rank only if it is true on all of them."""
        return not self.any(not flag)

    def broadcast(self, value):
        """Rank 0's value (a small Python object: a decision), on every rank."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def ensure_group(self) -> None:
        """A process group exists (one of a single process when the job has one: FSDP shards over a group)."""
        import torch.distributed as td

        if not td.is_initialized():
            backend = "cpu:gloo,cuda:nccl" if self.device.type == "cuda" else "gloo"  # gloo too: CPU-offloaded shards
            td.init_process_group(backend, store=td.HashStore(), rank=0, world_size=1)

    def gather(self, items: list) -> list:
        """Every process's list, concatenated in rank order, on every process (small Python objects: verdicts)."""
        if not self.active:
            return list(items)
        out: list = [None] * self.world_size
        torch.distributed.all_gather_object(out, items)
        return [x for part in out for x in part]


SINGLE = Dist()  # one process, no group


def init_distributed() -> Dist:
    """Join the process group if this job has several processes; a single process gets Dist() and no group."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if os.environ.get("SUBMITIT_EXECUTOR") and "RANK" not in os.environ:  # a submitit job (slurm or local)
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        td.init_process_group("nccl")
    else:
        td.init_process_group("gloo")
    return Dist(rank, world, local)


def unwrap(model):
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)
