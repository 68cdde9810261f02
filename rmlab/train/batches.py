"""Where a training step's micro-batches come from: a held set (indexed by step) or a stream (read in order).

Both give `batches(step)` -> `t.grad_accum` lists of this rank's encoded pairs (its part of `t.batch_size`), so the
training step does not know which one it has; both resume at any step, the held set by recomputing its order, the
stream from the loader state saved in the checkpoint (rmlab.data.loader).
"""

from __future__ import annotations

from collections import Counter

import torch

from rmlab.data.loader import StreamLoader
from rmlab.runtime.distributed import SINGLE, Dist


def micro_batches(n_items: int, batch_size: int, grad_accum: int, step: int, seed: int) -> list[list[int]]:
    """The micro-batches of optimizer step `step`: a pure function of (seed, step), so resuming needs no state.

    Items are visited in a fresh permutation each epoch (seeded by seed and epoch); the last partial batch of an
    epoch is completed from the next epoch's permutation.
    """
    per_step = batch_size * grad_accum
    start = step * per_step
    order: list[int] = []
    epoch = start // n_items
    offset = start % n_items
    while len(order) < per_step:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n_items, generator=g).tolist()
        order.extend(perm[offset:])
        epoch, offset = epoch + 1, 0
    order = order[:per_step]
    return [order[i : i + batch_size] for i in range(0, per_step, batch_size)]


class HeldPairs:
    """Encoded pairs in memory; step s reads the permutation slice micro_batches gives it (this rank's part of each
    micro-batch: every rank computes the same order)."""

    def __init__(self, encoded: list, batch_size: int, grad_accum: int, seed: int, dist: Dist = SINGLE):
        self.encoded, self.batch_size, self.grad_accum, self.seed, self.dist = (
            encoded,
            batch_size,
            grad_accum,
            seed,
            dist,
        )

    def batches(self, step: int) -> list[list]:
        idx = micro_batches(len(self.encoded), self.batch_size, self.grad_accum, step, self.seed)
        return [self.dist.shard([self.encoded[i] for i in mb]) for mb in idx]

    def start(self, step: int, state: dict | None) -> None:
        """Nothing to restore: any step's batches are computed from its number."""

    def state_dict(self) -> dict | None:
        return None

    def counts(self) -> tuple[Counter, None]:
        return Counter(e.source for e in self.encoded), None

    def close(self) -> None:
        pass


class StreamedPairs:
    """A rank's micro-batches from a StreamLoader, read in order; resumed from the loader's saved state."""

    def __init__(self, loader: StreamLoader, grad_accum: int):
        self.loader, self.grad_accum = loader, grad_accum
        self.next_step = 0

    def batches(self, step: int) -> list[list]:
        if step != self.next_step:
            raise RuntimeError(f"a streamed set is read in order: asked for step {step}, next is {self.next_step}")
        self.next_step += 1
        return [next(self.loader) for _ in range(self.grad_accum)]

    def start(self, step: int, state: dict | None) -> None:
        """Continue at `step` from the loader state saved with it; without a usable one (a checkpoint from other
        ranks or loader workers), replay the stream to there, which re-reads and re-encodes what it skips."""
        if step and not (state and self.loader.load_state_dict(state)):
            print(f"[rmlab] no loader state for this layout of processes: replaying the stream to step {step}")
            for _ in range(step * self.grad_accum):
                next(self.loader)
        self.next_step = step

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def counts(self):
        return self.loader.counts()

    def close(self) -> None:
        self.loader.close()
