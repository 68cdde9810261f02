"""Encoded pairs cached on disk, so the jobs of a sweep that share a data mix and a processor encode it once.

The key is content, not file names: the processor (tokenizer, chat template, image processor), the encoder (the
paradigm's input layout), max_length and the content hash of every pair (rmlab.data.validate.pair_key, plus what
else of it the encoder reads, such as critiques). Moving the data or renaming a file keeps the cache; changing
one pair or the tokenizer makes a new entry. The first job takes a lock and encodes; the others wait and load.
"""

from __future__ import annotations

import hashlib
import json

import torch

from rmlab.data.encode import PairEncoder, encode_all, tokenizer_of
from rmlab.data.validate import pair_key
from rmlab.util.atomic import atomic_write_bytes, file_lock

# Bump when EncodedPair or the encoding itself changes, so old entries are not read as new ones.
ENCODE_VERSION = 2


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


def encode_cached(encoder: PairEncoder, pairs, cache_dir, desc: str, progress: bool = True, validator=None):
    """`encode_all` through the cache (None as cache_dir: no cache). Returns (encoded, kept pairs, skipped)."""
    if cache_dir is None:
        return encode_all(encoder, pairs, desc, progress=progress, validator=validator)
    from pathlib import Path

    key = cache_key(encoder, pairs)
    path = Path(cache_dir) / "encoded" / f"{key}.pt"
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            saved = torch.load(path, weights_only=False)
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
        import io

        buf = io.BytesIO()
        torch.save({"encoded": encoded, "kept": kept_index, "overlong": overlong}, buf)
        atomic_write_bytes(path, buf.getvalue())
    return encoded, kept, skipped
