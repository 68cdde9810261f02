"""The adapter registry, the row context adapters get, and reading a dataset (local file or hub id) row by row.

An adapter is a function `(row: dict, ctx: RowContext) -> Iterator[PreferencePair]` registered with `@adapter`:
it reads one dataset's own published schema and nothing else. Reading files, resolving image paths, naming the
file and row in errors, and the skip-or-fail policy are done here, once, for every adapter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmlab.data.readers import WHOLE, MalformedRow, hub_id, open_reader, undecoded_features
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


def read_rows(path: str, spec: AdapterSpec, streaming: bool = False, share=None) -> Iterator[tuple[int, dict]]:
    """(row number, row) of a local .jsonl/.json/.parquet file, a folder of parquet shards, or a hub dataset (`hub` =
    the adapter's own hub id), in one share of the source (rmlab.data.readers). A hub dataset is downloaded whole
    unless `streaming`."""
    import datasets

    datasets.disable_progress_bars()  # rmlab shows its own progress; datasets' bars flood SLURM logs
    hub = hub_id(path, spec)
    if hub is not None and not streaming:
        ds = datasets.load_dataset(hub, **{"split": "train", **spec.hub_kwargs})
        features = undecoded_features(ds.features)
        yield from enumerate(ds.cast(features) if features is not None else ds)
        return
    yield from open_reader(path, spec, share or WHOLE).rows()


# ------------------------------------------------------------------------------------------------ pairs


@dataclass
class LoadReport:
    """What loading a file did: rows read, pairs made, rows rejected by reason (with the first few places)."""

    rows: int = 0
    pairs: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    checked: Counter = field(default_factory=Counter)  # pairs checked per source (rmlab.data.validate)
    skipped: Counter = field(default_factory=Counter)  # and skipped per source, whatever the reason

    def reject(self, reason: str, where: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(f"{where}: {detail}")

    def state_dict(self) -> dict:
        """The counts as JSON values (a loader's state carries them, so a resumed run's counts go on)."""
        counters = {k: dict(getattr(self, k)) for k in ("rejected", "checked", "skipped")}
        return {"rows": self.rows, "pairs": self.pairs, "examples": self.examples, **counters}

    @classmethod
    def from_state(cls, state: dict) -> LoadReport:
        examples = {k: list(v) for k, v in state["examples"].items()}
        counters = {k: Counter(state.get(k, {})) for k in ("rejected", "checked", "skipped")}
        return cls(state["rows"], state["pairs"], examples=examples, **counters)

    def add(self, other: LoadReport) -> None:
        """Count another process's (or loader worker's) report in this one."""
        self.rows += other.rows
        self.pairs += other.pairs
        self.rejected.update(other.rejected)
        self.checked.update(other.checked)
        self.skipped.update(other.skipped)
        for reason, examples in other.examples.items():
            self.examples[reason] = (self.examples.get(reason, []) + examples)[:3]


def make_pairs(spec: AdapterSpec, row: dict, ctx: RowContext, policy: str, report: LoadReport) -> list[PreferencePair]:
    """The pairs the adapter makes of one row. A row it cannot read is an error naming the file and row (policy
    `fail`) or is counted in `report` under "schema" (a line that is not JSON: "malformed_json") and gives none
    (policy `skip`)."""
    report.rows += 1
    if isinstance(row, MalformedRow):
        if policy == "fail":
            raise DataError(row.detail)
        report.reject("malformed_json", ctx.where, row.detail)
        return []
    try:
        made = list(spec.fn(row, ctx))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        detail = f"does not match the {spec.name} schema ({spec.schema}): {type(e).__name__}: {e}"
        if policy == "fail":
            raise DataError(f"{ctx.where}: {detail}") from None
        report.reject("schema", ctx.where, detail)
        return []
    for pair in made:
        pair.origin = pair.origin or ctx.where
    report.pairs += len(made)
    return made


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
    """Pairs of one dataset in file order (see make_pairs for a row the adapter cannot read)."""
    spec = get_adapter(name)
    report = report if report is not None else LoadReport()
    for index, row in read_rows(path, spec, streaming=streaming):
        yield from make_pairs(spec, row, RowContext(path, index, image_root, dict(options or {})), policy, report)


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
