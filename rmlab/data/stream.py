"""A streamed training set: pairs read, checked and encoded as training consumes them, for mixes too large to hold.

Sources are drawn by weight (probability weight / sum of weights), each one read in file order and reopened when it
ends (the next epoch of that source), through a seeded shuffle buffer. Nothing is read ahead beyond the buffer, and
hub datasets are opened with `streaming=True`, so MMPR's 2M rows never sit in memory. Checks run as pairs arrive
(counts in the validator); duplicates are not looked for, since every epoch repeats the data by design.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

from rmlab.data.adapters import iter_pairs
from rmlab.data.encode import EncodedPair, OverlongPair, PairEncoder
from rmlab.errors import DataError


class PairStream:
    """An endless, seeded iterator of EncodedPairs; `consumed` counts what it has handed out."""

    def __init__(self, sources, encoder: PairEncoder, validator, seed: int, buffer_size: int = 256):
        if not sources:
            raise DataError("a streamed data mix needs at least one training source")
        self.sources = {src.name: src for src in sources}
        self.encoder, self.validator = encoder, validator
        self.rng = random.Random(f"stream-{seed}")
        self.weights = [max(0.0, src.weight) for src in sources]
        if sum(self.weights) <= 0:
            raise DataError("every source of the streamed mix has weight 0")
        self.buffer_size = max(1, buffer_size)
        self.buffer: list[EncodedPair] = []
        self.readers: dict[str, Iterator] = {}
        self.epochs: Counter = Counter()
        self.served: Counter = Counter()  # pairs handed out per source: the composition so far
        self.consumed = 0

    def _read(self, name: str) -> Iterator:
        src = self.sources[name]
        return iter_pairs(
            src.adapter,
            src.path,
            image_root=src.image_root,
            options=src.options,
            policy=self.validator.policy,
            report=self.validator.report,
            streaming=True,
        )

    def _next_from(self, name: str) -> EncodedPair:
        """The next valid encoded pair of one source, reopening it at its end."""
        empty_epochs = 0
        while True:
            if name not in self.readers:
                self.readers[name] = self._read(name)
            for pair in self.readers[name]:
                pair.source = name
                if not self.validator.keep(pair):
                    continue
                try:
                    return self.encoder.encode(pair)
                except OverlongPair as e:
                    self.validator.reject("overlong", pair, str(e))
            del self.readers[name]
            self.epochs[name] += 1
            empty_epochs += 1
            if empty_epochs > 1:
                raise DataError(f"data source {name} has no valid pair left to stream")

    def _draw(self) -> EncodedPair:
        name = self.rng.choices(list(self.sources), weights=self.weights)[0]
        return self._next_from(name)

    def __iter__(self):
        return self

    def __next__(self) -> EncodedPair:
        while len(self.buffer) < self.buffer_size:
            self.buffer.append(self._draw())
        i = self.rng.randrange(len(self.buffer))
        pair = self.buffer[i]
        self.buffer[i] = self.buffer[-1]
        self.buffer.pop()
        self.consumed += 1
        self.served[pair.source] += 1
        return pair

    def take(self, n: int) -> list[EncodedPair]:
        return [next(self) for _ in range(n)]
