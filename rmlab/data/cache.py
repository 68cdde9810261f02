"""Encoded pairs cached on disk, so the jobs of a sweep that share a data mix and a processor encode it once.

The key is content, not file names: the processor (tokenizer, chat template, image processor), the encoder (the
paradigm's input layout), max_length and the content hash of every pair (rmlab.data.validate.pair_key, plus what
else of it the encoder reads, such as critiques). Moving the data or renaming a file keeps the cache; changing
one pair or the tokenizer makes a new entry. The first job takes a lock and encodes; the others wait and load.

An entry is one safetensors file and nothing else: the items' structure as JSON (in a byte tensor: no header
limit), every token-id list in one int64 tensor, every image tensor in one flat buffer per dtype. Reading it back
runs no code and rebuilds only the registered item types (rmlab.data.encode.ENCODED); an entry that does not read
is said in one line and encoded again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import torch

from rmlab.data.encode import ENCODED, PairEncoder, encode_all, tokenizer_of
from rmlab.data.validate import pair_key
from rmlab.util.atomic import atomic_write_bytes, file_lock

# Bump when EncodedPair or the encoding itself changes, so old entries are not read as new ones.
ENCODE_VERSION = 3


def processor_fingerprint(processor) -> str:
    tok = tokenizer_of(processor)
    h = hashlib.sha256()
    h.update(type(processor).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)).encode())
    h.update(str(tok.chat_template).encode())
    h.update(json.dumps(tok.special_tokens_map, sort_keys=True, default=str).encode())
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        h.update(image_processor.to_json_string().encode())
    return h.hexdigest()


def cache_key(encoder: PairEncoder, pairs) -> str:
    fingerprint = processor_fingerprint(encoder.processor)
    h = hashlib.sha256(f"v{ENCODE_VERSION}|{encoder.key}|{encoder.max_length}|{fingerprint}".encode())
    for p in pairs:
        h.update(f"{p.id}|{pair_key(p)}|{encoder.content_key(p)}\n".encode())
    return h.hexdigest()[:24]


def pack(obj) -> dict[str, torch.Tensor]:
    """Items (dataclasses, lists, dicts, token-id lists, tensors, plain values) as a few tensors."""
    ints: list[int] = []
    flats: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}

    def enc(x):
        if dataclasses.is_dataclass(x):
            ENCODED.get(type(x).__name__)
            return {"$c": type(x).__name__, "f": {f.name: enc(getattr(x, f.name)) for f in dataclasses.fields(x)}}
        if torch.is_tensor(x):
            key = str(x.dtype).removeprefix("torch.")
            flats.setdefault(key, []).append(x.detach().cpu().reshape(-1))
            offset = sizes.get(key, 0)
            sizes[key] = offset + x.numel()
            return {"$t": [key, offset, list(x.shape)]}
        if isinstance(x, list) and x and all(type(v) is int for v in x):
            ints.extend(x)
            return {"$i": [len(ints) - len(x), len(x)]}
        if isinstance(x, list | tuple):
            return {"$l": [enc(v) for v in x]}
        if isinstance(x, dict):
            return {"$d": {str(k): enc(v) for k, v in x.items()}}
        if x is None or isinstance(x, str | int | float | bool):
            return x
        raise TypeError(f"the encoding cache cannot store a {type(x).__name__}")

    structure = json.dumps(enc(obj)).encode()
    out = {"structure": torch.frombuffer(bytearray(structure), dtype=torch.uint8), "ints": torch.tensor(ints or [0])}
    out.update({f"flat.{k}": torch.cat(v) for k, v in flats.items()})
    return out


def unpack(tensors: dict[str, torch.Tensor]):
    """The items `pack` stored."""
    ints = tensors["ints"].tolist()

    def dec(x):
        if not isinstance(x, dict):
            return x
        if "$c" in x:
            cls = ENCODED.get(x["$c"])
            return cls(**{k: dec(v) for k, v in x["f"].items()})
        if "$t" in x:
            key, offset, shape = x["$t"]
            n = 1
            for d in shape:
                n *= d
            return tensors[f"flat.{key}"][offset : offset + n].reshape(shape).clone()
        if "$i" in x:
            offset, n = x["$i"]
            return ints[offset : offset + n]
        if "$l" in x:
            return [dec(v) for v in x["$l"]]
        return {k: dec(v) for k, v in x["$d"].items()}

    return dec(json.loads(bytes(tensors["structure"].numpy()).decode()))


def _read_entry(path: Path):
    from safetensors.torch import load_file

    try:
        return unpack(load_file(str(path)))
    except Exception as e:  # a damaged or planted entry is never trusted: it is encoded again
        print(f"[rmlab] ignored the encoding cache entry {path.name} ({type(e).__name__}): encoding again",
              file=sys.stderr)  # fmt: skip
        return None


def encode_cached(encoder: PairEncoder, pairs, cache_dir, desc: str, progress: bool = True, validator=None):
    """`encode_all` through the cache (None as cache_dir: no cache). Returns (encoded, kept pairs, skipped)."""
    if cache_dir is None:
        return encode_all(encoder, pairs, desc, progress=progress, validator=validator)
    key = cache_key(encoder, pairs)
    path = Path(cache_dir) / "encoded" / f"{key}.safetensors"
    with file_lock(path.with_suffix(".lock")):
        saved = _read_entry(path) if path.exists() else None
        if saved is not None:
            kept_index = saved["kept"]
            for reason, where in saved["overlong"]:
                if validator is not None:
                    validator.report.reject(reason, where, "longer than max_length (from the encoding cache)")
            print(f"[rmlab] {desc}: {len(kept_index)} encoded pairs from the cache ({path.name})")
            return saved["encoded"], [pairs[i] for i in kept_index], {"overlong": len(saved["overlong"])}
        encoded, kept, skipped = encode_all(encoder, pairs, desc, progress=progress, validator=validator)
        kept_ids = {id(p) for p in kept}
        kept_index = [i for i, p in enumerate(pairs) if id(p) in kept_ids]
        overlong = [("overlong", p.origin) for p in pairs if id(p) not in kept_ids]
        from safetensors.torch import save

        entry = pack({"encoded": encoded, "kept": kept_index, "overlong": overlong})
        atomic_write_bytes(path, save(entry))
    return encoded, kept, skipped
