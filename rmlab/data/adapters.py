"""Dataset adapters: each reads one dataset's own published schema and yields PreferencePair records.

An adapter is registered by name; `load_pairs(name, path)` reads a local file (jsonl, json or parquet) through the
`datasets` library, or a hub id on a cluster with hub access. Errors name the file and the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from rmlab.data.records import PreferencePair, user_prompt
from rmlab.errors import DataError

Adapter = Callable[[dict, str], Iterator[PreferencePair]]
ADAPTERS: dict[str, Adapter] = {}


def adapter(name: str):
    def register(fn: Adapter) -> Adapter:
        ADAPTERS[name] = fn
        return fn

    return register


@adapter("rlaif_v")
def rlaif_v(row: dict, row_id: str) -> Iterator[PreferencePair]:
    """openbmb/RLAIF-V-Dataset: question, chosen, rejected (plain strings), image ({bytes, path})."""
    yield PreferencePair(
        id=str(row.get("idx") or row_id),
        prompt=user_prompt(row["question"], n_images=1),
        chosen=row["chosen"],
        rejected=row["rejected"],
        images=[row["image"]],
        source=row.get("ds_name") or "rlaif_v",
        category=row.get("ds_name") or "",
    )


@adapter("ultrafeedback")
def ultrafeedback(row: dict, row_id: str) -> Iterator[PreferencePair]:
    """openbmb/UltraFeedback (raw): every pair of completions whose overall_score differs, better one chosen."""
    scored = [(c["overall_score"], c["response"]) for c in row["completions"] if c.get("overall_score") is not None]
    base = str(row.get("id") or row_id)
    k = 0
    for i, (s_i, r_i) in enumerate(scored):
        for s_j, r_j in scored[i + 1 :]:
            if s_i == s_j:
                continue
            (s_hi, hi), (s_lo, lo) = ((s_i, r_i), (s_j, r_j)) if s_i > s_j else ((s_j, r_j), (s_i, r_i))
            yield PreferencePair(
                id=f"{base}:{k}",
                prompt=user_prompt(row["instruction"]),
                chosen=hi,
                rejected=lo,
                source=row.get("source") or "ultrafeedback",
                category=row.get("source") or "",
                margin=float(s_hi - s_lo),
            )
            k += 1


def _read_rows(path: str):
    """Rows of a local jsonl/json/parquet file, or of a hub dataset id (train split), without decoding images."""
    import datasets

    p = Path(path)
    if p.exists():
        suffix = p.suffix.lower()
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(suffix)
        if kind is None:
            raise DataError(f"{path}: unsupported file type {suffix!r} (expected .jsonl, .json or .parquet)")
        if kind == "json":
            return _read_jsonl(p) if suffix == ".jsonl" else datasets.Dataset.from_json(str(p))
        ds = datasets.Dataset.from_parquet(str(p))
    elif "/" in path and not path.startswith((".", "/")):
        ds = datasets.load_dataset(path, split="train")
    else:
        raise DataError(f"{path}: no such file")
    if "image" in ds.features and isinstance(ds.features["image"], datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))
    return ds


def _read_jsonl(path: Path) -> list[dict]:
    """jsonl read line by line, so a malformed row is reported with its line number."""
    import json

    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: malformed JSON ({e.msg})") from None
    return rows


def load_pairs(name: str, path: str, limit: int | None = None) -> list[PreferencePair]:
    """All pairs of one dataset file, in file order."""
    if name not in ADAPTERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    fn = ADAPTERS[name]
    pairs: list[PreferencePair] = []
    for i, row in enumerate(_read_rows(path)):
        try:
            pairs.extend(fn(row, f"{Path(path).stem}-{i}"))
        except (KeyError, TypeError) as e:
            raise DataError(
                f"{path}: row {i + 1}: does not match the {name} schema ({type(e).__name__}: {e})"
            ) from None
        if limit is not None and len(pairs) >= limit:
            return pairs[:limit]
    return pairs
