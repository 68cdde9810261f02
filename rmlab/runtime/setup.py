"""A process's setup before a stage runs: how many threads torch uses, and every random generator seeded."""

from __future__ import annotations

import os
import random


def set_threads(requested: int) -> int:
    """torch threads: the config's number, else what SLURM allots, else every core."""
    import torch

    n = requested or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int, deterministic: bool) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
