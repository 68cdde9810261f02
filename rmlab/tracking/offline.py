"""Reading wandb's offline run files (`run-<id>.wandb`) back, without a server.

The file is wandb's append-only log of protobuf `Record`s in the leveldb-log framing: a 7-byte header (`:W&B`, magic
0xBEE1, version), then 32 KiB blocks of chunks, each with a 7-byte header (crc32 of type byte + data, length, type
FULL/FIRST/MIDDLE/LAST). wandb 0.31 writes no config.yaml or wandb-summary.json offline, so this file is the only
record. A file still being written, or cut by a crash, is read up to its last whole record; what could not be read
is said in `warnings`, never raised.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class RunRecord:
    """What a wandb run logged: identity, config, summary, history rows, and how it ended."""

    id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None  # None: no exit record (still running, or killed before it could finish)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.exit_code is None:
            return "running"
        return "done" if self.exit_code == 0 else "failed"


def iter_chunks(data: bytes, path: str, warnings: list[str]):
    """The records' payloads, reassembled from chunks; stops (with a warning) at the first damaged or cut chunk."""
    if data[:4] != b":W&B" or len(data) < HEADER or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        warnings.append(f"{path}: not a wandb run file (bad header)")
        return
    pos, pending = HEADER, None
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        start = pos + HEADER
        if start + length > len(data):
            warnings.append(f"{path}: truncated at byte {pos} ({len(data) - pos} bytes of a cut record skipped)")
            return
        payload = data[start : start + length]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            warnings.append(f"{path}: damaged record at byte {pos}; {len(data) - pos} bytes not read")
            return
        pos = start + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE and pending is not None:
            pending += payload
        elif kind == LAST and pending is not None:
            yield pending + payload
            pending = None
        else:
            warnings.append(f"{path}: unexpected chunk type {kind} at byte {pos - length - HEADER}")
            return
    if pos < len(data) and BLOCK - pos % BLOCK >= HEADER and any(data[pos:]):
        warnings.append(f"{path}: truncated at byte {pos} ({len(data) - pos} bytes of a cut record header skipped)")
    elif pending is not None:
        warnings.append(f"{path}: the last record is incomplete (cut while being written)")


def _set(tree: dict, item) -> None:
    """Apply one config/summary/history item (`key`, or a `nested_key` path) with its JSON value."""
    path = [item.key] if item.key else list(item.nested_key)
    value = json.loads(item.value_json)
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def read_run_file(path: str | Path, history: bool = True) -> RunRecord:
    """One offline run file into a RunRecord (history rows skipped when `history` is False: they are most of it)."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = str(path)
    rec = RunRecord(files=[path])
    data = Path(path).read_bytes()
    for raw in iter_chunks(data, path, rec.warnings):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception as e:  # a payload that passed its crc but does not parse: say so, keep what came before
            rec.warnings.append(f"{path}: unreadable record ({type(e).__name__}); stopped there")
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            rec.id, rec.project, rec.group, rec.job_type = r.run_id, r.project, r.run_group, r.job_type
            rec.name, rec.tags = r.display_name, list(r.tags)
            for item in r.config.update:
                _set(rec.config, item)
        elif kind == "config":
            for item in record.config.update:
                _set(rec.config, item)
            for item in record.config.remove:
                rec.config.pop(item.key, None)
        elif kind == "summary":
            for item in record.summary.update:
                _set(rec.summary, item)
            for item in record.summary.remove:
                rec.summary.pop(item.key, None)
        elif kind == "history" and history:
            row: dict = {}
            for item in record.history.item:
                _set(row, item)
            rec.history.append(row)
        elif kind == "exit":
            rec.exit_code = record.exit.exit_code
    rec.config.pop("_wandb", None)
    return rec


def merge_attempts(records: list[RunRecord]) -> RunRecord:
    """One run logged by several attempts (a resumed run writes a new file with the same id), oldest first: identity,
    config and ending from the newest, summaries layered, history in order without repeated steps."""
    merged = RunRecord()
    for rec in records:
        for name in ("id", "project", "group", "job_type", "name"):
            setattr(merged, name, getattr(rec, name) or getattr(merged, name))
        merged.tags = rec.tags or merged.tags
        merged.config.update(rec.config)
        merged.summary.update(rec.summary)
        merged.exit_code = rec.exit_code
        merged.files += rec.files
        merged.warnings += rec.warnings
        seen = {row.get("_step") for row in rec.history}
        merged.history = [row for row in merged.history if row.get("_step") not in seen] + rec.history
    merged.history.sort(key=lambda row: row.get("_step", 0))
    return merged
