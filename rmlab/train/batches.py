"""Where a training step's micro-batches come from: a held set (indexed by step) or a stream (read in order).

Both give `batches(step)` -> `t.grad_accum` lists of `t.batch_size` encoded pairs, so the training step does not
know which one it has; both resume at any step, the held set by recomputing its order, the stream by replaying.
"""

from __future__ import annotations

from collections import Counter

import torch


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
    """Encoded pairs in memory; step s reads the permutation slice micro_batches gives it."""

    def __init__(self, encoded: list, batch_size: int, grad_accum: int, seed: int):
        self.encoded, self.batch_size, self.grad_accum, self.seed = encoded, batch_size, grad_accum, seed

    def batches(self, step: int) -> list[list]:
        idx = micro_batches(len(self.encoded), self.batch_size, self.grad_accum, step, self.seed)
        return [[self.encoded[i] for i in mb] for mb in idx]

    def fast_forward(self, step: int) -> None:
        """Nothing to do: any step's batches are computed from its number."""

    def composition(self) -> Counter:
        return Counter(e.source for e in self.encoded)


class StreamedPairs:
    """Pairs from a PairStream, read in order; resuming replays the stream up to the step it stopped at."""

    def __init__(self, stream, batch_size: int, grad_accum: int, skip: int = 0):
        self.stream, self.batch_size, self.grad_accum = stream, batch_size, grad_accum
        self.skip = skip  # pairs the stream hands out before training's first one (the validation pairs)
        self.next_step = 0
        self.trained: Counter = Counter()  # pairs handed to training per source, replayed ones included

    def batches(self, step: int) -> list[list]:
        if step != self.next_step:
            raise RuntimeError(f"a streamed set is read in order: asked for step {step}, next is {self.next_step}")
        self.next_step += 1
        batches = [self.stream.take(self.batch_size) for _ in range(self.grad_accum)]
        self.trained.update(p.source for batch in batches for p in batch)
        return batches

    def fast_forward(self, step: int) -> None:
        """Replay the stream to where `step` begins (re-reads and re-encodes what it skips; trains on none of it)."""
        target = self.skip + step * self.batch_size * self.grad_accum
        if self.stream.consumed > target:
            raise RuntimeError("cannot rewind a stream")
        while self.stream.consumed < target:
            pair = next(self.stream)
            if self.stream.consumed > self.skip:
                self.trained[pair.source] += 1
        self.next_step = step

    def composition(self) -> Counter:
        """Pairs trained on per source so far (the stream's weights in practice)."""
        return Counter(self.trained)
