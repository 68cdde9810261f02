"""Reading a dataset's rows from a position, in one share of many: what lets several processes split a source
between them and a resumed run start where it stopped without reading what came before.

A reader yields `(index, row)`: `index` is the row's number in the whole source (the line among non-blank lines of a
jsonl file; the row across a folder's parquet shards in name order), so pair ids do not depend on how the source is
split. `position()` is a small JSON value saying where the next row starts; `rows(position)` starts there.

A source is split into `Share(index, count)` parts that together hold every row once: parquet by row group when its
groups split evenly over the shares (a process reads only its own groups), otherwise, like jsonl and json, every
`count`-th row (the others' lines are skipped unparsed). A hub dataset is streamed, split with
`datasets.distributed.split_dataset_by_node`, and positioned with the IterableDataset's own state_dict.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rmlab.errors import DataError


@dataclass(frozen=True)
class Share:
    """Part `index` of `count` parts of a source (rank x loader worker)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"share {self.index} of {self.count}")


WHOLE = Share()


@dataclass(frozen=True)
class MalformedRow:
    """A line that is not JSON, given in its row's place: the caller counts it (policy skip) or raises its
    `detail`, which names the file and line (policy fail); one bad line never hides the rest of a file."""

    detail: str


class JsonlReader:
    """A jsonl file; a position is the byte offset of the next line and that line's row and line numbers."""

    def __init__(self, path: Path, share: Share):
        self.path, self.share = path, share
        self._at = {"offset": 0, "row": 0, "line": 0}

    def position(self) -> dict:
        return dict(self._at)

    def rows(self, position: dict | None = None) -> Iterator[tuple[int, dict]]:
        at = dict(position or {"offset": 0, "row": 0, "line": 0})
        self._at = dict(at)
        with open(self.path, "rb") as f:
            f.seek(at["offset"])
            rows, line_no, offset = at["row"], at["line"], at["offset"]
            for raw in f:
                offset += len(raw)
                line_no += 1
                if not raw.strip():
                    self._at = {"offset": offset, "row": rows, "line": line_no}
                    continue
                index, rows = rows, rows + 1
                self._at = {"offset": offset, "row": rows, "line": line_no}
                if index % self.share.count != self.share.index:
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as e:
                    row = MalformedRow(f"{self.path}: line {line_no}: malformed JSON ({e.msg})")
                yield index, row

    def size(self) -> int:
        with open(self.path, "rb") as f:
            return sum(1 for raw in f if raw.strip())


ROW_LISTS = ("data", "train", "test", "validation", "rows", "examples", "instances", "items")  # {"data": [rows]}


class JsonReader:
    """A JSON list of rows, an object holding them (under one of ROW_LISTS, or as its only key), or one row alone (any
    other object); JSON lines under a .json name are read as jsonl, as SHP ships them. The file is parsed whole,
    once; a position is the next row's number."""

    def __init__(self, path: Path, share: Share, data=None):
        self.path, self.share = path, share
        self._data = data  # the parsed file, when the caller has it
        self._next = 0

    def _rows_list(self) -> list:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path}: line {e.lineno}: malformed JSON ({e.msg})") from None
        data = self._data
        if isinstance(data, dict):
            held = [v for k, v in data.items() if k in ROW_LISTS and isinstance(v, list)]
            lone = len(data) == 1 and isinstance(next(iter(data.values())), list)
            # {"data": [...]} (or one key holding a list) holds the rows; any other object is one row (POVID's
            # README shows an element so), even with a list-valued field (an mm_rlhf row's list of images)
            data = held[0] if len(held) == 1 else next(iter(data.values())) if lone else [data]
        if not isinstance(data, list):
            raise DataError(f"{self.path}: not a list of rows (nor a row)")
        self._data = data
        return data

    def position(self) -> dict:
        return {"row": self._next}

    def rows(self, position: dict | None = None) -> Iterator[tuple[int, dict]]:
        data = self._rows_list()
        start = (position or {}).get("row", 0)
        self._next = start
        for index in range(start, len(data)):
            self._next = index + 1
            if index % self.share.count == self.share.index:
                yield index, data[index]

    def size(self) -> int:
        return len(self._rows_list())


class ParquetReader:
    """A parquet file or a folder of shards, read a row group at a time with pyarrow (nothing copied into a cache);
    image columns stay as stored ({bytes, path}), as `datasets` gives them undecoded. A position is a row number."""

    def __init__(self, files: list[Path], share: Share):
        import pyarrow.parquet as pq

        self.share = share
        self.groups = []  # (file, group number, first row, rows): the source's row groups in order
        start = 0
        for f in files:
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                self.groups.append((f, g, start, n))
                start += n
        self.total = start
        # whole row groups per share when they split evenly enough (every share draws its sources at the same rate,
        # so a share holding more rows would serve each less often), else every count-th row
        n = len(self.groups)
        self.by_group = n >= share.count and (n % share.count == 0 or n >= 8 * share.count)
        self._next = 0

    def position(self) -> dict:
        return {"row": self._next}

    def _mine(self, group_number: int, index: int) -> bool:
        key = group_number if self.by_group else index
        return key % self.share.count == self.share.index

    def rows(self, position: dict | None = None) -> Iterator[tuple[int, dict]]:
        import pyarrow.parquet as pq

        start = (position or {}).get("row", 0)
        self._next = start
        for number, (f, g, first, n) in enumerate(self.groups):
            if first + n <= start or (self.by_group and not self._mine(number, 0)):
                continue
            table = pq.ParquetFile(f).read_row_group(g)
            for offset, row in enumerate(table.to_pylist()):
                index = first + offset
                if index < start:
                    continue
                self._next = index + 1
                if self.by_group or self._mine(number, index):
                    yield index, row
            self._next = max(self._next, first + n)

    def size(self) -> int:
        return self.total


def _undecoded(feature):
    """The same feature with every Image inside it left encoded."""
    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, list) and len(feature) == 1:
        return [_undecoded(feature[0])]
    if isinstance(feature, dict):
        return {k: _undecoded(v) for k, v in feature.items()}
    inner = getattr(feature, "feature", None)
    if inner is not None and hasattr(feature, "length"):
        return type(feature)(_undecoded(inner), length=feature.length)
    return feature


def undecoded_features(features):
    """A `datasets` dataset's features with its images left encoded ({bytes, path}: decoding waits for the encoder),
    or None when nothing needs changing."""
    if not features:
        return None
    import datasets

    undecoded = {name: _undecoded(f) for name, f in features.items()}
    return datasets.Features(undecoded) if undecoded != dict(features) else None


class HubReader:
    """A hub dataset streamed (never downloaded whole), split over the shares with split_dataset_by_node, with images
    left encoded. Rows are numbered share by share (`i * count + share`), exact when the split is by row."""

    def __init__(self, hub_id: str, share: Share, hub_kwargs: dict):
        self.hub_id, self.share = hub_id, share
        self.kwargs = {"split": "train", **hub_kwargs}
        self.split = self.kwargs["split"]
        self.ds = self._open()
        self.info = self.ds.info
        self._served = 0
        self._fresh = True  # self.ds not iterated yet: the first epoch reads it as opened

    def _open(self):
        """A fresh stream of this share (each epoch and each resume opens one: a stream keeps the state it loaded)."""
        import datasets
        from datasets.distributed import split_dataset_by_node

        ds = datasets.load_dataset(self.hub_id, streaming=True, **self.kwargs)
        features = undecoded_features(ds.features)
        if features is not None:
            ds = ds.cast(features)
        count, index = self.share.count, self.share.index
        return split_dataset_by_node(ds, rank=index, world_size=count) if count > 1 else ds

    def position(self) -> dict:
        return {"served": self._served, "state": copy.deepcopy(self.ds.state_dict())}

    def rows(self, position: dict | None = None) -> Iterator[tuple[int, dict]]:
        if position or not self._fresh:
            self.ds = self._open()
        self._fresh = False
        if position:
            self.ds.load_state_dict(position["state"])
        self._served = (position or {}).get("served", 0)
        # `.iter`, not `for row in ds`: inside a DataLoader worker the latter splits the share again by worker
        for batch in self.ds.iter(batch_size=1):
            index = self._served * self.share.count + self.share.index
            self._served += 1
            yield index, {key: values[0] for key, values in batch.items()}

    def size(self) -> int:
        splits = getattr(self.info, "splits", None) or {}
        split = splits.get(self.split) if hasattr(splits, "get") else None
        if split is None or not split.num_examples:
            raise DataError(f"{self.hub_id}: its size is not published; give the data source a `size` (rows)")
        return int(split.num_examples)


def hub_id(path: str, spec) -> str | None:
    """The hub dataset a source's path names (`hub` = the adapter's own), or None for a local path."""
    if path == "hub":
        if not spec.hub_id:
            raise DataError(
                f"adapter {spec.name} has no hub dataset: give the source a local path (datasets.NAME.path)"
            )
        return spec.hub_id
    if Path(path).exists() or "/" not in path or path.startswith((".", "/")):
        return None
    return path


def open_reader(path: str, spec, share: Share = WHOLE):
    """The reader for a source's path: a .jsonl/.json/.parquet file, a folder of parquet shards, or a hub id."""
    hub = hub_id(path, spec)
    if hub is not None:
        return HubReader(hub, share, spec.hub_kwargs)
    p = Path(path)
    if p.is_dir():
        shards = sorted(p.glob("**/*.parquet"))
        if not shards:
            raise DataError(f"{path}: a folder without .parquet files")
        return ParquetReader(shards, share)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return JsonlReader(p, share)
    if suffix == ".json":
        try:
            return JsonReader(p, share, json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # one object per line under a .json name
                return JsonlReader(p, share)
            raise DataError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from None
    if suffix == ".parquet":
        return ParquetReader([p], share)
    raise DataError(f"{path}: unsupported file type {suffix!r} (expected .jsonl, .json or .parquet)")
