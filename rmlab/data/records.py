"""The one record type every dataset adapter produces: a preference pair."""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARCHIVE_SEP = "::"  # "images.zip::train/0001.jpg": a member of an archive


class LazyFrames(Sequence):
    """A video's frame references, listed when first used (a frame folder is read then, not when its row is): a
    file of rows loads, and a benchmark's metrics (which need ids and categories, not media) are computed, on a
    machine without the media. A folder that cannot be listed raises ValueError at that first use."""

    def __init__(self, list_frames: Callable[[], list], where: str):
        self._list_frames, self.where, self._frames = list_frames, where, None

    @property
    def frames(self) -> list:
        if self._frames is None:
            self._frames = list(self._list_frames())
        return self._frames

    def __getitem__(self, i):
        return self.frames[i]

    def __len__(self) -> int:
        return len(self.frames)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"LazyFrames({self.where})" if self._frames is None else repr(self._frames)


@dataclass
class PreferencePair:
    """A prompt (chat messages, images and video frames referenced in place) with a chosen and a rejected final
    assistant turn.

    `prompt` is a list of `{"role", "content"}` messages, multi-turn kept as such; content is a string or a list of
    parts `{"type": "text", "text": ...}` / `{"type": "image"}` / `{"type": "video"}`. The i-th image part refers to
    `images[i]` (encoded bytes, a `{bytes, path}` dict, a file path, `archive::member`, or a PIL image); the i-th
    video part to `videos[i]`, a list of frames given the same way. Decoding waits until encoding time.
    `origin` says where the pair came from (file and row), for every error and report about it.
    """

    id: str
    prompt: list[dict]
    chosen: str
    rejected: str
    images: list[Any] = field(default_factory=list)
    videos: list[list[Any]] = field(default_factory=list)
    source: str = ""
    category: str = ""
    margin: float | None = None
    chosen_score: float | None = None
    rejected_score: float | None = None
    origin: str = ""
    meta: dict = field(default_factory=dict)


def critiques_of(pair: PreferencePair) -> tuple[str, str] | None:
    """(critique of the chosen response, of the rejected one) where the data has both (MM-RLHF's human reasons,
    UltraFeedback's critiques, the testbed's templated ones), else None."""
    chosen, rejected = pair.meta.get("chosen_reason"), pair.meta.get("rejected_reason")
    if isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() and rejected.strip():
        return chosen.strip(), rejected.strip()
    return None


def user_prompt(text: str, n_images: int = 0) -> list[dict]:
    """A single user turn: the images first, then the text (how most VL datasets lay out a question)."""
    if not n_images:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def content_with_images(text: str, n_images: int, placeholder: str = "<image>") -> str | list[dict]:
    """Message content with the images where the text's placeholders put them (LLaVA-style `<image>` markers).

    Placeholders beyond n_images are an error; images without a placeholder go first, as most datasets mean them.
    """
    pieces = re.split(re.escape(placeholder), text)
    marked = len(pieces) - 1
    if marked > n_images:
        raise ValueError(f"{marked} {placeholder} placeholder(s) for {n_images} image(s)")
    parts: list[dict] = [{"type": "image"}] * (n_images - marked)
    for i, piece in enumerate(pieces):
        if i > 0:
            parts.append({"type": "image"})
        piece = piece.strip("\n") if marked else piece
        if piece.strip():
            parts.append({"type": "text", "text": piece})
    if not n_images:
        return text
    return parts


def count_parts(messages: list[dict], kind: str) -> int:
    return sum(1 for m in messages if isinstance(m["content"], list) for p in m["content"] if p.get("type") == kind)


_archives: dict[str, zipfile.ZipFile] = {}
_archives_lock = threading.Lock()


def _read_archive_member(ref: str) -> bytes:
    archive, member = ref.split(ARCHIVE_SEP, 1)
    if archive.endswith(".zip"):
        with _archives_lock:
            zf = _archives.get(archive) or _archives.setdefault(archive, zipfile.ZipFile(archive))
            return zf.read(member)
    import tarfile

    with tarfile.open(archive) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} is not a file in {archive}")
        return f.read()


def image_bytes_or_path(ref: Any):
    """Normalize an image reference to bytes, a path, or a PIL image (archive members are read)."""
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, str) and ARCHIVE_SEP in ref:
        return _read_archive_member(ref)
    return ref


def _open_lazily(ref: Any):
    """A PIL image for the reference with only its header read (`Image.open` defers decoding to `load`)."""
    from PIL import Image

    ref = image_bytes_or_path(ref)
    if isinstance(ref, bytes | bytearray):
        return Image.open(io.BytesIO(ref))
    if isinstance(ref, str | Path):
        return Image.open(ref)
    if isinstance(ref, Image.Image):
        return ref
    raise TypeError(f"cannot open an image from {type(ref).__name__}")


def open_image(ref: Any, max_pixels: int | None = None):
    """Decode an image reference to an RGB PIL image; refuses images above `max_pixels` before decoding them."""
    image = _open_lazily(ref)
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ValueError(f"image of {image.width}x{image.height} pixels is over the limit of {max_pixels}")
    return image.convert("RGB")


def image_size(ref: Any) -> tuple[int, int]:
    """(height, width) of an image reference from its header alone, no pixel decoded: what an image's token count
    follows from (rmlab.data.encode.image_tokens), so an overlong pair can be refused before its images are read.
    (No EXIF rotation here, as none in `open_image`: the size is the one the processor will see.)"""
    image = _open_lazily(ref)
    size = image.height, image.width
    if image is not ref:  # opened here (not the caller's PIL image): release its file
        image.close()
    return size
