"""The one record type every dataset adapter produces: a preference pair."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PreferencePair:
    """A prompt (chat messages, images referenced in place) with a chosen and a rejected final assistant turn.

    `prompt` is a list of `{"role", "content"}` messages; content is a string or a list of parts
    `{"type": "text", "text": ...}` / `{"type": "image"}`. The i-th image part refers to `images[i]`, which holds
    encoded bytes, a file path or a PIL image; decoding waits until encoding time.
    """

    id: str
    prompt: list[dict]
    chosen: str
    rejected: str
    images: list[Any] = field(default_factory=list)
    source: str = ""
    category: str = ""
    margin: float | None = None


def user_prompt(text: str, n_images: int = 0) -> list[dict]:
    """A single user turn: the images first, then the text (how the VL datasets lay out a question)."""
    if not n_images:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def open_image(ref: Any):
    """Decode an image reference (bytes, {bytes, path} dict, path or PIL image) to an RGB PIL image."""
    from PIL import Image

    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, bytes | bytearray):
        image = Image.open(io.BytesIO(ref))
    elif isinstance(ref, str | Path):
        image = Image.open(ref)
    elif isinstance(ref, Image.Image):
        image = ref
    else:
        raise TypeError(f"cannot open an image from {type(ref).__name__}")
    return image.convert("RGB")
