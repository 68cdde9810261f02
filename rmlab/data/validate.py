"""Checks a pair must pass before training or scoring uses it; nothing is dropped without being counted.

Reasons: `malformed_json` (a line that is not JSON), `schema` (the adapter could not read the row), `empty_field`,
`identical` (chosen == rejected), `image_count` (image parts and images disagree), `image_missing`, `image_undecodable`, `image_too_large` (over the
pixel limit: decompression bombs are refused from the header, before decoding), `overlong` (cannot fit max_length
without cutting tokens; checked when encoding), `duplicate` (the same prompt, images and replies already came, from
this source or another: the first one is kept).
Policy `skip` counts and drops a bad pair; `fail` stops at the first one with its file and row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from rmlab.data.adapters import iter_pairs
from rmlab.data.adapters.base import LoadReport, message_text
from rmlab.data.records import PreferencePair, count_parts, image_bytes_or_path
from rmlab.errors import DataError

REASONS = (
    "malformed_json",
    "schema",
    "empty_field",
    "identical",
    "image_count",
    "image_missing",
    "image_undecodable",
    "image_too_large",
    "overlong",
    "duplicate",
)
ROW_FAULTS = ("malformed_json", "schema")  # counted per row (no pair was made), not per pair
DEFAULT_MAX_PIXELS = 4096 * 4096


class InvalidPair(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _check_image(ref, max_pixels: int) -> None:
    """Header-only: the image exists, is an image, and is not larger than max_pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        data = image_bytes_or_path(ref)
    except (FileNotFoundError, KeyError) as e:
        raise InvalidPair("image_missing", f"image not found: {e}") from None
    if data is None or data == b"":
        raise InvalidPair("image_missing", "image reference is empty")
    if isinstance(data, str):
        from pathlib import Path

        if not Path(data).exists():
            raise InvalidPair("image_missing", f"image not found: {data}")
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidPair("image_too_large", f"image of {width}x{height} pixels is over {max_pixels}")
            image.verify()
    except InvalidPair:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidPair("image_undecodable", f"image does not decode: {type(e).__name__}: {e}") from None


def check_pair(pair: PreferencePair, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise InvalidPair(reason, detail) if the pair cannot be trained on as it is."""
    if not pair.prompt:
        raise InvalidPair("empty_field", "prompt is empty")
    for m in pair.prompt:
        content = m.get("content")
        texts = [content] if not isinstance(content, list) else [p.get("text") for p in content if p["type"] == "text"]
        if not isinstance(content, list) and not (isinstance(content, str) and content.strip()):
            raise InvalidPair("empty_field", f"a {m.get('role')} message is empty")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InvalidPair("empty_field", f"a {m.get('role')} message has an empty text part")
    for name in ("chosen", "rejected"):
        value = getattr(pair, name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidPair("empty_field", f"{name} is empty")
    if pair.chosen.strip() == pair.rejected.strip():
        raise InvalidPair("identical", "chosen and rejected are the same text")
    n_image_parts, n_video_parts = count_parts(pair.prompt, "image"), count_parts(pair.prompt, "video")
    if n_image_parts != len(pair.images) or n_video_parts != len(pair.videos):
        raise InvalidPair(
            "image_count",
            f"{n_image_parts} image part(s) for {len(pair.images)} image(s), "
            f"{n_video_parts} video part(s) for {len(pair.videos)} video(s)",
        )
    try:
        frames = [frame for video in pair.videos for frame in video]
    except (ValueError, OSError) as e:  # a video's frame folder listed only now (rmlab.data.records.LazyFrames)
        raise InvalidPair("image_missing", str(e)) from None
    for ref in [*pair.images, *frames]:
        _check_image(ref, max_pixels)


def pair_key(pair: PreferencePair) -> str:
    """Content hash of a pair (prompt text, images, both replies), for finding exact duplicates."""
    h = hashlib.sha256()
    for m in pair.prompt:
        h.update(f"{m['role']}\x00{message_text(m)}\x01".encode())
    for ref in [*pair.images, *(frame for video in pair.videos for frame in video)]:
        data = image_bytes_or_path(ref)
        h.update(data if isinstance(data, bytes | bytearray) else str(data).encode())
    h.update(f"\x02{pair.chosen}\x03{pair.rejected}".encode())
    return h.hexdigest()


@dataclass
class Validator:
    """Applies the checks with a policy, counting every skipped pair by reason (see REASONS)."""

    policy: str = "skip"
    max_pixels: int = DEFAULT_MAX_PIXELS
    dedupe: bool = True  # off for streams, which repeat their data every epoch by design
    report: LoadReport = field(default_factory=LoadReport)
    _seen: dict[str, str] = field(default_factory=dict)  # pair key -> source that had it first

    def __post_init__(self):
        if self.policy not in ("skip", "fail"):
            raise DataError(f"validation policy {self.policy!r} is not one of skip, fail")

    def reject(self, reason: str, pair: PreferencePair, detail: str) -> None:
        if self.policy == "fail":
            raise DataError(f"{pair.origin}: {reason}: {detail}")
        self.report.reject(reason, pair.origin, detail)
        self.report.skipped[pair.source] += 1

    def keep(self, pair: PreferencePair) -> bool:
        """True if the pair passes; otherwise it is counted (skip) or raises DataError (fail)."""
        self.report.checked[pair.source] += 1
        try:
            check_pair(pair, self.max_pixels)
        except InvalidPair as e:
            self.reject(e.reason, pair, str(e))
            return False
        if not self.dedupe:
            return True
        key = pair_key(pair)
        if key in self._seen:
            self.reject("duplicate", pair, f"the same pair is already at {self._seen[key]}")
            return False
        self._seen[key] = pair.origin or pair.source
        return True

    def summary(self) -> dict:
        return {
            "rows_read": self.report.rows,
            "pairs_read": self.report.pairs,
            "pairs_kept": self.report.pairs - sum(v for k, v in self.report.rejected.items() if k not in ROW_FAULTS),
            "pairs_skipped": {r: self.report.rejected.get(r, 0) for r in REASONS if self.report.rejected.get(r)},
            # per source: the share of its checked pairs skipped (invalid, too long, duplicate)
            "skipped_share": {
                s: round(self.report.skipped[s] / n, 4) for s, n in sorted(self.report.checked.items()) if n and s
            },
            "examples": self.report.examples,
        }


def validate_file(
    adapter: str, path: str, image_root: str | None, options: dict, policy: str, processor, max_length: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:  # fmt: skip
    """`rmlab data validate`: every check on one dataset file, tokenized with a backbone's processor."""
    from rmlab.data.encode import PairEncoder, encode_all  # torch

    validator = Validator(policy=policy, max_pixels=max_pixels)
    pairs = [
        p
        for p in iter_pairs(
            adapter, path, image_root=image_root, options=options, policy=policy, report=validator.report
        )
        if validator.keep(p)
    ]
    encode_all(PairEncoder(processor, max_length), pairs, "encode", progress=False, validator=validator)
    return {"dataset": adapter, "path": path, "max_length": max_length, **validator.summary()}
