"""The data_mix axis: which sources a run trains and tests on, how many pairs each gives, and the validation split."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import fields
from pathlib import Path

from rmlab.data.adapters import load_pairs
from rmlab.data.records import PreferencePair
from rmlab.data.synth import SynthSpec, write_testbed
from rmlab.util.atomic import file_lock


def ensure_synth(synth) -> None:
    """Write the synthetic testbed where the mix expects it, once (parallel jobs wait on a lock)."""
    if synth is None:
        return
    spec = SynthSpec(**{f.name: synth[f.name] for f in fields(SynthSpec)})
    out = Path(synth.dir)
    manifest = out / "MANIFEST.json"
    with file_lock(out.parent / f".{out.name}.lock"):
        if manifest.exists() and json.loads(manifest.read_text()).get("spec") == spec.__dict__:
            return
        write_testbed(out, spec)


def load_sources(sources) -> list[PreferencePair]:
    """All pairs of the given sources, each capped at its max_pairs, tagged with the source's name."""
    pairs = []
    for src in sources:
        got = load_pairs(src.adapter, src.path, limit=src.max_pairs)
        for p in got:
            p.source = src.name
        pairs.extend(got)
    return pairs


def split_validation(pairs: list[PreferencePair], n_val: int, seed: int):
    """(train, validation): n_val pairs drawn at random (seeded), the rest kept in their order."""
    n_val = min(n_val, len(pairs) // 5)
    picked = set(random.Random(f"val-{seed}").sample(range(len(pairs)), n_val))
    train = [p for i, p in enumerate(pairs) if i not in picked]
    val = [p for i, p in enumerate(pairs) if i in picked]
    return train, val


def composition(pairs: list[PreferencePair]) -> dict[str, int]:
    return dict(sorted(Counter(p.source for p in pairs).items()))
