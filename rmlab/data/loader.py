"""The streamed mix through a torch DataLoader: `data_mix.workers` processes per rank read, decode and encode pairs
ahead of training (pinned memory on GPUs, prefetch), each one a share of its own (rank x worker), so every pair is
handled by exactly one process and adding GPUs adds data throughput.

The loader's state is each worker's stream state as of the last micro-batch training took (it travels with the
micro-batch, so what was prefetched and not trained on is not counted) plus how many micro-batches were taken. The
DataLoader asks its workers in turn; on resume worker w plays the share that was due `w` turns after the next one
(a rotation), so the resumed run gets the same micro-batches in the same order as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rmlab.data.adapters.base import LoadReport
from rmlab.data.readers import Share


@dataclass
class MicroBatch:
    """A rank's micro-batch of encoded pairs, the share it came from, and that share's stream state after it."""

    pairs: list
    share: int
    state: dict

    def __getstate__(self) -> dict:
        """Sent from a loader process: every image tensor of the micro-batch copied once into one shared-memory block
        per dtype (torch passes a block, not each tensor: a descriptor and a mapping per block instead of per tensor;
        that per-tensor cost was what kept two workers from doubling throughput)."""
        holders = [h for item in self.pairs for h in _holders(item)]
        layout, sizes = [], Counter()
        for holder in holders:
            entries = []
            for key, t in holder.vision.items():
                entries.append((key, t.dtype, tuple(t.shape), sizes[t.dtype]))
                sizes[t.dtype] += t.numel()
            layout.append(entries)
        blocks = {dtype: torch.empty(n, dtype=dtype).share_memory_() for dtype, n in sizes.items()}
        for holder, entries in zip(holders, layout, strict=True):
            for key, dtype, _, at in entries:
                blocks[dtype][at : at + holder.vision[key].numel()].copy_(holder.vision[key].reshape(-1))
        visions = [holder.vision for holder in holders]
        try:  # the items copied without their tensors (the blocks carry those)
            for holder in holders:
                holder.vision = {}
            stripped = copy.deepcopy(self.pairs)
        finally:
            for holder, vision in zip(holders, visions, strict=True):
                holder.vision = vision
        return {"pairs": stripped, "share": self.share, "state": self.state, "layout": layout, "blocks": blocks}

    def __setstate__(self, packed: dict) -> None:
        self.pairs, self.share, self.state = packed["pairs"], packed["share"], packed["state"]
        blocks = packed["blocks"]
        holders = [h for item in self.pairs for h in _holders(item)]
        for holder, entries in zip(holders, packed["layout"], strict=True):
            holder.vision = {
                key: blocks[dtype][at : at + math.prod(shape)].view(shape) for key, dtype, shape, at in entries
            }

    def pin_memory(self) -> MicroBatch:
        """Page-locked image tensors (the DataLoader calls this on GPUs: copies to the device go asynchronously)."""
        for holder in (h for item in self.pairs for h in _holders(item)):
            holder.vision = {k: v.pin_memory() for k, v in holder.vision.items()}
        return self


def _holders(item) -> list:
    """The parts of an encoded item that hold image tensors (a `vision` dict), in a fixed order: the item itself (a
    pair, an answer) or its parts (a judge item's two orders)."""
    if isinstance(getattr(item, "vision", None), dict):
        return [item]
    parts = [part for value in vars(item).values() if isinstance(value, list) for part in value]
    return [h for part in parts if hasattr(part, "__dict__") for h in _holders(part)]


class _Shares(IterableDataset):
    """What each loader process runs: its share's stream, cut into micro-batches."""

    def __init__(self, make_stream: Callable, rank: int, world: int, workers: int, size: int, states: dict, turn: int):
        super().__init__()
        self.make_stream, self.rank, self.world, self.workers = make_stream, rank, world, workers
        self.size, self.states, self.turn = size, states, turn

    def __iter__(self):
        info = get_worker_info()
        logical = ((info.id if info is not None else 0) + self.turn) % self.workers
        stream = self.make_stream(Share(self.rank * self.workers + logical, self.world * self.workers))
        if str(logical) in self.states:
            stream.load_state_dict(self.states[str(logical)])
        while pairs := list(islice(stream, self.size)):
            yield MicroBatch(pairs, logical, stream.state_dict())


class StreamLoader:
    """A rank's micro-batches of a streamed mix, from `workers` loader processes (0: read in this process)."""

    def __init__(self, make_stream: Callable[[Share], object], rank: int, world: int, workers: int, size: int):
        self.make_stream, self.rank, self.world, self.size = make_stream, rank, world, size
        self.processes = max(0, workers)
        self.workers = max(1, workers)  # shares per rank
        self.taken = 0  # micro-batches handed to training
        self.states: dict[str, dict] = {}  # share (str) -> its stream state after its last micro-batch taken
        self._it = None

    def state_dict(self) -> dict:
        return {"world": self.world, "workers": self.workers, "taken": self.taken, "streams": dict(self.states)}

    def load_state_dict(self, state: dict) -> bool:
        """Continue from a saved state; False (nothing changed) when it was saved with other ranks or workers."""
        if (state.get("world"), state.get("workers")) != (self.world, self.workers):
            return False
        self.taken, self.states = state["taken"], dict(state["streams"])
        self._it = None
        return True

    def _iterator(self):
        dataset = _Shares(
            self.make_stream, self.rank, self.world, self.workers, self.size, self.states, self.taken % self.workers
        )
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.processes,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=2 if self.processes else None,
            generator=torch.Generator(),  # its own: starting the workers draws a seed, never from training's generator
        )
        return iter(loader)

    def __iter__(self):
        return self

    def __next__(self) -> list:
        if self._it is None:
            self._it = self._iterator()
        batch: MicroBatch = next(self._it)
        self.states[str(batch.share)] = batch.state
        self.taken += 1
        return batch.pairs

    def counts(self) -> tuple[Counter, LoadReport]:
        """(pairs served per source, the checks' counts) over this rank's shares so far."""
        served, report = Counter(), LoadReport()
        for state in self.states.values():
            served.update(state["served"])
            report.add(LoadReport.from_state(state["report"]))
        return served, report

    def close(self) -> None:
        """Stop the loader processes (they are also stopped when the loader is garbage-collected)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
