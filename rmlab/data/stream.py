"""A streamed training set: pairs read, checked and encoded as training consumes them, for mixes too large to hold.

A stream serves one share of the mix (rmlab.data.readers.Share: a rank x loader worker), so every pair is read,
decoded and encoded by exactly one process. Each served pair first draws its source (probability proportional to
weight x size under `weighting=size`, the paper's concatenation; to weight alone under `uniform`); each source is
read a window of `window` rows at a time, the window's rows served in a seeded order (the shuffle), and reopened at
its end (its next epoch). Nothing is read ahead beyond the window, and hub datasets are streamed.

Resuming needs no replay: `state_dict()` holds, per source, the reader's position at the start of the current
window and how much of the window was served, the source-draw generator and the counts; `load_state_dict` re-reads
only that window's rows (at most `window` rows, unparsed by the adapter except the row it stopped in) and serves the
rest, so resuming at step 50k costs what resuming at step 1 costs.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from itertools import islice

from rmlab.data.adapters.base import LoadReport, RowContext, get_adapter, make_pairs
from rmlab.data.encode import EncodedPair, OverlongPair
from rmlab.data.mix import Source
from rmlab.data.readers import WHOLE, Share, open_reader
from rmlab.data.validate import Validator, pair_key
from rmlab.errors import ConfigError, DataError


class SourceCursor:
    """One source's pairs in one share: its rows a window at a time, each window in a seeded order."""

    def __init__(self, src: Source, share: Share, seed: int, window: int, validator: Validator):
        self.src, self.share, self.seed, self.window, self.validator = src, share, seed, max(1, window), validator
        self.spec = get_adapter(src.adapter)
        self.reader = open_reader(src.path, self.spec, share)
        self.epoch, self.number, self.start, self.taken, self.pairs_taken = 0, 0, None, 0, 0
        self._rows: list | None = None  # the current window's (index, row) in serving order
        self._end = None  # the reader's position after the current window
        self._live = None  # the reader's rows, read on window after window (None: open them at `start`)
        self._made: list | None = None  # the pairs of the row being served
        self.empty = False  # the last epoch ended without a row

    def state(self) -> dict:
        keys = ("epoch", "number", "start", "taken", "pairs_taken")
        return {k: getattr(self, k) for k in keys}

    def load(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._rows = self._made = self._live = None

    def _fill(self) -> bool:
        if self._live is None:  # (a straight run opens its rows once an epoch; a resumed one at the saved start)
            self._live = self.reader.rows(self.start)
        rows = list(islice(self._live, self.window))
        self._end = self.reader.position()
        order = list(range(len(rows)))
        where = f"{self.seed}-{self.src.name}-{self.share.index}/{self.share.count}-{self.epoch}-{self.number}"
        random.Random(f"window-{where}").shuffle(order)
        self._rows = [rows[i] for i in order]
        return bool(rows)

    def next_pair(self):
        """The next pair (unchecked), or None at the end of an epoch (the next call starts the next one)."""
        while True:
            if self._rows is None and not self._fill():
                self.empty = self.number == 0  # not one row in this share (a source smaller than the shares)
                self.epoch, self.number, self.start, self.taken, self.pairs_taken = self.epoch + 1, 0, None, 0, 0
                self._rows = self._live = None
                return None
            if self._made is None:
                index, row = self._rows[self.taken]
                ctx = RowContext(self.src.path, index, self.src.image_root, dict(self.src.options))
                self._made = make_pairs(self.spec, row, ctx, self.validator.policy, self.validator.report)
            pair = self._made[self.pairs_taken] if self.pairs_taken < len(self._made) else None
            self.pairs_taken += 1
            if self.pairs_taken >= len(self._made):  # the row is done: the state points past it
                self._made, self.pairs_taken, self.taken = None, 0, self.taken + 1
                if self.taken >= len(self._rows):  # and so is the window
                    self.start, self.number, self.taken, self._rows = self._end, self.number + 1, 0, None
            if pair is not None:
                pair.source = self.src.name
                return pair


class ShareStream:
    """An iterator of EncodedPairs over one share of a mix: endless, or `passes` epochs of every source."""

    def __init__(
        self,
        sources: list[Source],
        encoder,
        validator: Validator,
        seed: int,
        window: int,
        weights: dict[str, float],
        share: Share = WHOLE,
        exclude: frozenset = frozenset(),
        passes: int | None = None,
    ):
        if not sources:
            raise DataError("a streamed data mix needs at least one training source")
        self.encoder, self.validator, self.share, self.exclude, self.passes = encoder, validator, share, exclude, passes
        self.weights = {src.name: weights[src.name] for src in sources if weights[src.name] > 0}
        if not self.weights:
            raise DataError("every source of the streamed mix has weight 0")
        self.cursors = {
            n: SourceCursor(src, share, seed, window, validator) for src in sources if (n := src.name) in self.weights
        }
        self.draw = random.Random(f"draw-{seed}-{share.index}/{share.count}")
        self.empty: set[str] = set()  # sources this share has no row of (left out of its draws)
        self.served: Counter = Counter()  # pairs handed out per source
        self.encoded = 0  # pairs encoded by this object (not carried in the state: what this process did)

    def state_dict(self) -> dict:
        version, internal, gauss = self.draw.getstate()
        return {
            "share": [self.share.index, self.share.count],
            "draw": [version, list(internal), gauss],
            "cursors": {name: c.state() for name, c in self.cursors.items()},
            "empty": sorted(self.empty),
            "served": dict(self.served),
            "report": self.validator.report.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["share"] != [self.share.index, self.share.count]:
            raise ValueError(f"loader state of share {state['share']} given to share {self.share}")
        version, internal, gauss = state["draw"]
        self.draw.setstate((version, tuple(internal), gauss))
        for name in state["empty"]:
            self._drop(name)
        for name, cursor_state in state["cursors"].items():
            self.cursors[name].load(cursor_state)
        self.served = Counter(state["served"])
        self.validator.report = LoadReport.from_state(state["report"])

    def __iter__(self):
        return self

    def __next__(self) -> EncodedPair:
        while True:
            live = [n for n, c in self.cursors.items() if self.passes is None or c.epoch < self.passes]
            if not live:
                raise StopIteration
            name = self.draw.choices(live, weights=[self.weights[n] for n in live])[0]
            pair = self._next_from(name)
            if pair is not None:
                self.served[name] += 1
                return pair
            if self.cursors[name].empty:  # this share holds none of the source's rows: the others' shares do
                self._drop(name)

    def _drop(self, name: str) -> None:
        self.cursors.pop(name)
        self.empty.add(name)
        if not self.cursors:
            raise DataError(
                f"share {self.share.index + 1} of {self.share.count} holds no row of any source: the sources have "
                "fewer rows than there are loader processes (lower data_mix.workers)"
            )

    def _next_from(self, name: str) -> EncodedPair | None:
        """The next valid encoded pair of one source; None when a finite stream has finished it."""
        cursor, epoch_ends, held_out = self.cursors[name], 0, False
        while True:
            pair = cursor.next_pair()
            if pair is None:
                epoch_ends += 1
                if cursor.empty or self.passes is not None and cursor.epoch >= self.passes:
                    return None
                if epoch_ends > 1:  # a whole epoch without a pair to serve: this share is left without the source
                    if not held_out:  # (not only its validation pairs: every one skipped; the counts say why)
                        print(f"[rmlab] data source {name}: no valid pair in share {self.share.index + 1} of "
                              f"{self.share.count} (skipped: {self.validator.summary()['pairs_skipped']})",
                              file=sys.stderr)  # fmt: skip
                    cursor.empty = True  # (an error here would stop this rank alone: the others would wait)
                    return None
                continue
            if not self.validator.keep(pair):
                continue
            if self.exclude and pair_key(pair) in self.exclude:
                held_out = True  # (a validation pair is never trained on)
                continue
            try:
                encoded = self.encoder.encode(pair)
            except OverlongPair as e:
                self.validator.reject("overlong", pair, str(e))
                continue
            self.encoded += 1
            return encoded


def source_sizes(sources: list[Source]) -> dict[str, int | None]:
    """Each source's rows, counted once per run: its own `size`, else what its files (or the hub's split info) say;
    None where a hub stream does not publish its size."""
    sizes = {}
    for src in sources:
        try:
            sizes[src.name] = int(src.size) if src.size else open_reader(src.path, get_adapter(src.adapter)).size()
        except DataError:
            sizes[src.name] = None
    return sizes


def draw_weights(sources: list[Source], weighting: str, sizes: dict[str, int | None] | None = None) -> dict[str, float]:
    """Each source's draw weight: its `weight`, times its size (`source_sizes`) under `weighting=size`."""
    if any(src.weight < 0 for src in sources):
        raise ConfigError(f"a source weight is negative: {[(s.name, s.weight) for s in sources]}")
    if str(weighting) == "uniform":
        return {src.name: float(src.weight) for src in sources}
    sizes = sizes if sizes is not None else source_sizes(sources)
    unknown = [name for name, n in sizes.items() if n is None]
    if unknown:
        raise DataError(f"data sources {unknown}: their size is not published; give each a `size` (rows)")
    return {src.name: float(src.weight) * sizes[src.name] for src in sources}


def validation_head(
    sources: list[Source], encoder, validator: Validator, n_val: int, weights: dict[str, float], sizes: dict
):
    """(encoded validation pairs, their content keys): each source's first valid pairs in file order, as many as its
    share of the draw weights (largest remainders), at most a fifth of its rows where its size is known (as the held
    split takes at most a fifth). Training streams skip these pairs by content."""
    total = sum(weights.values())
    if n_val <= 0 or total <= 0:
        return [], frozenset()
    exact = {name: n_val * w / total for name, w in weights.items()}
    quota = {name: int(x) for name, x in exact.items()}
    for name in sorted(exact, key=lambda n: quota[n] - exact[n])[: n_val - sum(quota.values())]:
        quota[name] += 1
    for name, size in sizes.items():
        if size is not None:  # (a hub stream that does not publish its size: no cap)
            quota[name] = min(quota.get(name, 0), size // 5)
    encoded, keys = [], set()
    for src in sources:
        cursor = SourceCursor(src, WHOLE, 0, 1, validator)  # a window of one row: file order
        taken = 0
        while taken < quota.get(src.name, 0) and (pair := cursor.next_pair()) is not None:
            if not validator.keep(pair):
                continue
            try:
                encoded.append(encoder.encode(pair))
            except OverlongPair as e:
                validator.reject("overlong", pair, str(e))
                continue
            keys.add(pair_key(pair))
            taken += 1
    return encoded, frozenset(keys)
