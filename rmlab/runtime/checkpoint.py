"""Training checkpoints: what changed (trainable weights, optimizer, scheduler, RNG), written atomically.

A checkpoint is a directory `checkpoints/step_NNNNNNNN/`, complete or absent: it is built under a hidden temporary
name and renamed into place, so a crash mid-write leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

from rmlab.util.atomic import atomic_dir

PREFIX = "step_"


def _name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories start with a dot and are ignored)."""
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    from safetensors.torch import save_file

    path = root / _name(step)
    with atomic_dir(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.trainable_state().items()}, tmp / "trainable.safetensors")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            tmp / "optimizer.pt",
        )
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and RNG state; return the trainer state (step, ...)."""
    from safetensors.torch import load_file

    model.load_trainable_state(load_file(str(path / "trainable.safetensors")))
    extra = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    random.setstate(extra["python_rng"])
    return json.loads((path / "trainer_state.json").read_text())
