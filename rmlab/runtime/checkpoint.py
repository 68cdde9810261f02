"""Training checkpoints through torch.distributed.checkpoint (DCP), each written whole or not at all.

A checkpoint is a directory `checkpoints/step_NNNNNNNN/`: every process writes its own shard of the trainable
parameters and of the optimizer state (in the background: CheckpointWriter) (`*.distcp`, DCP's format: a checkpoint written by N processes loads into M),
its random generators (`rng_rank<r>.safetensors`, `rng_rank<r>.json`), and rank 0 the trainer state
(`trainer_state.json`: step, scheduler, how many processes wrote it). It is built under a hidden temporary name and
renamed into place once every process has written, so a crash mid-write leaves the previous checkpoint as the latest
one; only `keep` of them are kept.

Nothing read back can run code: tensors load with `weights_only=True`, DCP's metadata through an unpickler that only
builds DCP's own metadata classes, and the rest is JSON or safetensors.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import random
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from rmlab.runtime.distributed import SINGLE, Dist
from rmlab.util.atomic import fsync_tree

PREFIX = "step_"
# DCP warns at every save and load of a single process (from its writing thread too) that it assumes one: it is one.
warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
# Frozen weights (a vision tower, LoRA's base) are neither saved nor restored. (A checkpoint that lacks a trainable
# weight the model has is still an error: DCP refuses to load a state dict key the checkpoint does not hold.)
OPTIONS = StateDictOptions(ignore_frozen_params=True, strict=False)


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


class CheckpointWriter:
    """Writes a run's checkpoints, in the background where DCP can (its async save: the state is copied to CPU memory,
    then written while training goes on). A checkpoint is put in place (renamed, older ones pruned) once every process
    has finished writing it: when the next one starts, at a preemption, and at the end (`finish`)."""

    def __init__(self, root: Path, keep: int = 2, dist: Dist = SINGLE, asynchronous: bool = True):
        self.root, self.keep, self.dist, self.asynchronous = root, keep, dist, asynchronous
        self.pending: tuple | None = None
        # the background writes coordinate on a group of their own, never on the training's
        # (a single fsdp process has a group too: of one, on NCCL when on a GPU)
        grouped = asynchronous and torch.distributed.is_available() and torch.distributed.is_initialized()
        self.group = torch.distributed.new_group(backend="gloo") if grouped else None

    def save(
        self, step: int, model, optimizer, scheduler, state: dict | None = None, rank_state: dict | None = None
    ) -> Path:
        """Every process calls this; the previous checkpoint is finished first. `state` is the run's (rank 0's),
        `rank_state` this process's own (its data loader's position)."""
        self.finish()
        dist = self.dist
        path = self.root / _name(step)
        tmp = self.root / f".{path.name}.tmp"
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        writing = None
        try:
            model_state, optim_state = get_state_dict(model, optimizer, options=OPTIONS)
            shards = {"model": model_state, "optim": optim_state}
            if self.asynchronous:
                writing = dcp.async_save(shards, checkpoint_id=str(tmp), process_group=self.group, no_dist=_no_group())
            else:
                dcp.save(shards, checkpoint_id=str(tmp), no_dist=_no_group())
            _save_rng(tmp, dist.rank)
            if rank_state is not None:
                (tmp / f"data_rank{dist.rank}.json").write_text(json.dumps(rank_state))
            if dist.is_main:
                trainer = {**(state or {}), "step": step, "world_size": dist.world_size,
                           "scheduler": scheduler.state_dict()}  # fmt: skip
                (tmp / "trainer_state.json").write_text(json.dumps(trainer, indent=2) + "\n")
        except BaseException:
            self._discard(tmp, writing)
            raise
        self.pending = (writing, tmp, path)
        if not self.asynchronous:
            self.finish()
        return path

    def finish(self) -> None:
        """Wait for the checkpoint being written, then put it in place (every process calls this)."""
        if self.pending is None:
            return
        writing, tmp, path = self.pending
        self.pending = None
        try:
            if writing is not None:
                done = writing.result()
                if hasattr(done, "upload_completion"):  # torch's AsyncSaveResponse
                    done.upload_completion.result()
            self.dist.barrier()
            if self.dist.is_main:
                fsync_tree(tmp)
                shutil.rmtree(path, ignore_errors=True)
                tmp.rename(path)
                for old in list_checkpoints(self.root)[: -self.keep] if self.keep > 0 else []:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self._discard(tmp, writing)
            raise
        self.dist.barrier()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Leaving training: the last checkpoint in place. On an error, a single process still puts in place what it
        finished writing (the last good checkpoint); several processes cannot meet to, and keep the one before."""
        if exc_type is None:
            self.finish()
        elif not self.dist.active:
            try:
                self.finish()
            except Exception as e:
                print(f"[rmlab] the checkpoint being written when the run stopped is lost ({type(e).__name__})")

    def _discard(self, tmp: Path, writing=None) -> None:
        """After an error: the background write stopped, then its directory removed (a crash would leave it behind,
        ignored for its dot name)."""
        if writing is not None:
            with contextlib.suppress(BaseException):
                writing.result()
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(
    root: Path, step: int, model, optimizer, scheduler, state: dict, keep: int = 2, dist: Dist = SINGLE
) -> Path:
    """One checkpoint, written before this returns."""
    return CheckpointWriter(root, keep, dist, asynchronous=False).save(step, model, optimizer, scheduler, state)


def load_checkpoint(path: Path, model, optimizer, scheduler, dist: Dist = SINGLE) -> dict:
    """Restore the trainable weights, optimizer, scheduler and this process's random generators (rank 0's when the
    checkpoint was written by fewer processes); return the trainer state (step, ...)."""
    model_state, optim_state = get_state_dict(model, optimizer, options=OPTIONS)
    loaded = {"model": model_state, "optim": optim_state}
    reader, planner = SafeReader(str(path)), SafeLoadPlanner()
    dcp.load(loaded, checkpoint_id=str(path), storage_reader=reader, planner=planner, no_dist=_no_group())
    set_state_dict(
        model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"], options=OPTIONS
    )
    trainer = json.loads((path / "trainer_state.json").read_text())
    scheduler.load_state_dict(trainer["scheduler"])
    _load_rng(path, dist.rank if dist.rank < trainer.get("world_size", 1) else 0)
    own = path / f"data_rank{dist.rank}.json"
    trainer["rank_state"] = json.loads(own.read_text()) if own.exists() else None
    return trainer


def resume(root: Path, model, optimizer, scheduler, dist: Dist = SINGLE) -> dict | None:
    """Restore the newest checkpoint that reads (one that does not, damaged or planted, is said in one line and the
    one before it is tried); None when there is none. A run whose every checkpoint fails to read is an error: its
    weights may be half-restored, so it does not quietly start over."""
    found = list_checkpoints(root)
    for path in reversed(found):
        trainer = None
        try:
            trainer = load_checkpoint(path, model, optimizer, scheduler, dist)
        except (Exception, CheckpointException) as e:  # (DCP's error is a BaseException)
            print(f"[rmlab] checkpoint {path.name} does not read ({type(e).__name__}: {str(e)[:200]}); trying the one"
                  " before it")  # fmt: skip
        if not dist.all(trainer is not None):  # every process resumes from the same one, or they all try the next
            continue
        if dist.is_main:
            print(f"[rmlab] resumed from {path.name}")
        return trainer
    if found:
        raise RuntimeError(f"no checkpoint in {root} reads; move them away to start the run over")
    return None


def _no_group() -> bool:
    return not torch.distributed.is_initialized()


def _save_rng(directory: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(directory / f"rng_rank{rank}.safetensors"))
    version, internal, gauss = random.getstate()
    (directory / f"rng_rank{rank}.json").write_text(json.dumps({"version": version, "state": internal, "gauss": gauss}))


def _load_rng(directory: Path, rank: int) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(directory / f"rng_rank{rank}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    py = json.loads((directory / f"rng_rank{rank}.json").read_text())
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


# ------------------------------------------------------------------------------------------------ reading safely

_TORCH_NAMES = {"Size", "strided", "sparse_coo", "contiguous_format", "preserve_format", "channels_last"} | {
    str(d).removeprefix("torch.")
    for d in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )  # fmt: skip
}


# constructors that build plain values from plain values (a path from its string, a layout from its name)
_PLAIN = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("torch.serialization", "_get_layout"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Builds DCP's metadata and nothing else: any other global in the file is refused, so a planted one cannot run."""

    def find_class(self, module: str, name: str):
        if module.startswith("torch.distributed.checkpoint.") or (module == "torch" and name in _TORCH_NAMES):
            return super().find_class(module, name)
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"checkpoint metadata names {module}.{name}: refused (not DCP metadata)")


class SafeReader(FileSystemReader):
    def read_metadata(self, *args, **kwargs):
        rank = kwargs.get("rank")
        with self.fs.create_stream(self._get_metadata_path(rank), "rb") as f:
            metadata = _MetadataUnpickler(io.BytesIO(f.read())).load()
        if getattr(metadata, "storage_meta", None) is None:
            from torch.distributed.checkpoint.metadata import StorageMeta

            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """Non-tensor entries (the optimizer's hyperparameters) read with weights_only=True: plain values only."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._traverse import set_element

            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded
