"""The adapter registry, the row context adapters get, and reading a dataset (local file or hub id) row by row.

An adapter is a function `(row: dict, ctx: RowContext) -> Iterator[PreferencePair]` registered with `@adapter`:
it reads one dataset's own published schema and nothing else. Reading files, resolving image paths, naming the
file and row in errors, and the skip-or-fail policy are done here, once, for every adapter.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmlab.data.records import ARCHIVE_SEP, PreferencePair
from rmlab.errors import DataError
from rmlab.util.registry import Registry


@dataclass
class RowContext:
    """Where a row comes from, and how to resolve the image paths it mentions."""

    file: str  # local file or hub id
    index: int  # 0-based row number (the line number minus one, for jsonl)
    image_root: str | None = None  # a folder or a .zip/.tar archive that relative image paths are under
    options: dict = field(default_factory=dict)  # the data_mix source's `options` (an adapter's parameters)

    @property
    def row_id(self) -> str:
        return f"{Path(self.file).stem}-{self.index}"

    @property
    def where(self) -> str:
        kind = "line" if self.file.endswith(".jsonl") else "row"
        return f"{self.file}: {kind} {self.index + 1}"

    def image(self, ref: Any) -> Any:
        """An image reference with relative paths resolved against image_root (else the data file's folder)."""
        if isinstance(ref, dict) and ref.get("bytes"):
            return ref["bytes"]
        if isinstance(ref, dict):
            ref = ref.get("path")
        if not isinstance(ref, str) or not ref:
            return ref
        if ARCHIVE_SEP in ref or Path(ref).is_absolute():
            return ref
        root = self.image_root
        if root and root.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
            return f"{root}{ARCHIVE_SEP}{ref}"
        base = Path(root) if root else Path(self.file).parent
        return str(base / ref)


Adapter = Callable[[dict, RowContext], Iterator[PreferencePair]]


@dataclass
class AdapterSpec:
    name: str
    fn: Adapter
    hub_id: str | None  # the dataset on the hub, read when a source's path is `hub`
    modality: str  # "multimodal" or "text"
    schema: str  # one line: the fields the adapter reads (for the README and error messages)
    hub_kwargs: dict = field(default_factory=dict)  # extra load_dataset arguments (config name, split, data_files)


ADAPTERS: Registry[AdapterSpec] = Registry("dataset adapter", error=DataError)


def adapter(name: str, *, hub_id: str | None, modality: str, schema: str, **hub_kwargs):
    """Register an adapter under `name` (the name data mixes and `rmlab data validate` use)."""

    def register(fn: Adapter) -> Adapter:
        ADAPTERS.add(name, AdapterSpec(name, fn, hub_id, modality, schema, hub_kwargs))
        return fn

    return register


def get_adapter(name: str) -> AdapterSpec:
    return ADAPTERS.get(name)


# ------------------------------------------------------------------------------------------------ reading rows


def _jsonl_rows(path: Path) -> Iterator[dict]:
    """jsonl line by line, so a malformed line is reported with its number."""
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {line_no}: malformed JSON ({e.msg})") from None


def _json_rows(path: Path) -> Iterator[dict]:
    """A JSON list of rows (or an object holding one list), or, as some datasets ship `.json`, JSON lines."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one object per line under a .json name (SHP does this)
            yield from _jsonl_rows(path)
            return
        raise DataError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: a JSON object, not a list of rows (keys: {', '.join(list(data)[:5])})")
        data = lists[0]
    yield from data


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


def _datasets_rows(ds) -> Iterator[dict]:
    """Rows of a `datasets` dataset with images left encoded ({bytes, path}): decoding waits for the encoder."""
    features = getattr(ds, "features", None)
    if features:
        undecoded = {name: _undecoded(f) for name, f in features.items()}
        if undecoded != dict(features):
            import datasets

            ds = ds.cast(datasets.Features(undecoded))
    yield from ds


def read_rows(path: str, spec: AdapterSpec, streaming: bool = False) -> Iterator[dict]:
    """Rows of a local .jsonl/.json/.parquet file, a folder of parquet shards, or a hub dataset (`hub` = the
    adapter's own hub id)."""
    import datasets

    datasets.disable_progress_bars()  # rmlab shows its own progress; datasets' bars flood SLURM logs
    if path == "hub":
        if not spec.hub_id:
            raise DataError(
                f"adapter {spec.name} has no hub dataset: give the source a local path (datasets.NAME.path)"
            )
        path = spec.hub_id
    p = Path(path)
    if p.is_dir():
        shards = sorted(p.glob("**/*.parquet"))
        if not shards:
            raise DataError(f"{path}: a folder without .parquet files")
        yield from _datasets_rows(datasets.Dataset.from_parquet([str(s) for s in shards]))
    elif p.exists():
        suffix = p.suffix.lower()
        if suffix == ".jsonl":
            yield from _jsonl_rows(p)
        elif suffix == ".json":
            yield from _json_rows(p)
        elif suffix == ".parquet":
            yield from _datasets_rows(datasets.Dataset.from_parquet(str(p)))
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r} (expected .jsonl, .json or .parquet)")
    elif "/" in path and not path.startswith((".", "/")):
        kwargs = {"split": "train", **spec.hub_kwargs}
        yield from _datasets_rows(datasets.load_dataset(path, streaming=streaming, **kwargs))
    else:
        raise DataError(f"{path}: no such file")


# ------------------------------------------------------------------------------------------------ pairs


@dataclass
class LoadReport:
    """What loading a file did: rows read, pairs made, rows rejected by reason (with the first few places)."""

    rows: int = 0
    pairs: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, reason: str, where: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(f"{where}: {detail}")


def iter_pairs(
    name: str,
    path: str,
    *,
    image_root: str | None = None,
    options: dict | None = None,
    policy: str = "fail",
    report: LoadReport | None = None,
    streaming: bool = False,
) -> Iterator[PreferencePair]:
    """Pairs of one dataset in file order. A row the adapter cannot read is an error naming the file and row
    (policy `fail`) or is counted in `report` under "schema" and skipped (policy `skip`)."""
    spec = get_adapter(name)
    report = report if report is not None else LoadReport()
    for index, row in enumerate(read_rows(path, spec, streaming=streaming)):
        ctx = RowContext(path, index, image_root, dict(options or {}))
        report.rows += 1
        try:
            made = list(spec.fn(row, ctx))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            detail = f"does not match the {name} schema ({spec.schema}): {type(e).__name__}: {e}"
            if policy == "fail":
                raise DataError(f"{ctx.where}: {detail}") from None
            report.reject("schema", ctx.where, detail)
            continue
        for pair in made:
            pair.origin = pair.origin or ctx.where
            report.pairs += 1
            yield pair


def load_pairs(name: str, path: str, limit: int | None = None, **kwargs) -> list[PreferencePair]:
    """All pairs of one dataset file (the first `limit` if given), in file order."""
    pairs = []
    for pair in iter_pairs(name, path, **kwargs):
        pairs.append(pair)
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


# ------------------------------------------------------------------------------------------------ helpers for adapters


def message_text(message: dict) -> str:
    """The text of one message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(p.get("text") or "" for p in content if p.get("type") == "text")


def split_final_turn(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """(shared prompt, chosen reply, rejected reply) from two whole conversations that differ only in the last
    assistant turn (the implicit-prompt preference format)."""
    if not chosen or not rejected:
        raise ValueError("empty conversation")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError("the last turn of chosen/rejected is not the assistant's")
    if [(m["role"], message_text(m)) for m in chosen[:-1]] != [(m["role"], message_text(m)) for m in rejected[:-1]]:
        raise ValueError("chosen and rejected conversations differ before their last turn")
    return [dict(m) for m in chosen[:-1]], message_text(chosen[-1]), message_text(rejected[-1])


def sharegpt_messages(turns: list[dict]) -> list[dict]:
    """ShareGPT-style `{"from": "human"|"gpt"|"system", "value"}` turns as `{"role", "content"}` messages."""
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    return [{"role": roles[t["from"]], "content": t["value"]} for t in turns]
