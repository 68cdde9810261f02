"""The data_mix axis: which sources a run trains and tests on, how much each one weighs, and the validation split.

Loading a mix: every source is read by its adapter and checked (rmlab.data.validate) under the mix's policy; a
validation split is drawn from the checked pairs; then each source's training pairs are weighted (a weight of 0.5
keeps a seeded half, 2.0 repeats every pair twice) and capped at `max_pairs`. The composition (pairs per source
after all of that) and the counts of everything skipped go into the run's summary.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from rmlab.data.adapters import iter_pairs
from rmlab.data.records import PreferencePair
from rmlab.data.validate import Validator
from rmlab.errors import ConfigError, DataError


@dataclass
class Source:
    """A data_mix source with its location filled in from `datasets` (or given directly)."""

    name: str
    adapter: str
    path: str
    image_root: str | None = None
    options: dict = field(default_factory=dict)
    weight: float = 1.0
    max_pairs: int | None = None
    size: int | None = None


def resolve_sources(sources, datasets) -> list[Source]:
    """Each source's path, image root and options: its own, else those of the `datasets` entry it names."""
    resolved = []
    for src in sources:
        location = None
        if src.get("dataset"):
            if src.dataset not in (datasets or {}):
                known = ", ".join(sorted(datasets or {}))
                raise ConfigError(
                    f"data source {src.name}: dataset {src.dataset!r} is not in `datasets`; known: {known}"
                )
            location = datasets[src.dataset]
        path = src.get("path") or (location.path if location is not None else None)
        if not path:
            raise ConfigError(f"data source {src.name}: no path (set `path` or `dataset`)")
        resolved.append(
            Source(
                name=src.name,
                adapter=src.adapter,
                path=str(path),
                image_root=src.get("image_root") or (location.get("image_root") if location is not None else None),
                options={
                    **(dict(location.get("options") or {}) if location is not None else {}),
                    **dict(src.get("options") or {}),
                },
                weight=float(src.get("weight", 1.0)),
                max_pairs=src.get("max_pairs"),
                size=src.get("size"),
            )
        )
    return resolved


def load_source(src: Source, validator: Validator) -> list[PreferencePair]:
    """The checked pairs of one source, tagged with the source's name, in file order."""
    pairs = []
    try:
        for pair in iter_pairs(
            src.adapter,
            src.path,
            image_root=src.image_root,
            options=src.options,
            policy=validator.policy,
            report=validator.report,
        ):
            pair.source = src.name
            if validator.keep(pair):
                pairs.append(pair)
    except DataError as e:
        raise DataError(f"data source {src.name} ({src.adapter} at {src.path}): {e}") from None
    return pairs


def load_sources(sources: list[Source], validator: Validator | None = None) -> list[PreferencePair]:
    """Checked pairs of several resolved sources (no weighting), e.g. an evaluation set."""
    validator = validator or Validator()
    return [p for src in sources for p in load_source(src, validator)]


def split_validation(pairs: list, n_val: int, seed: int):
    """(train, validation): n_val items drawn at random (seeded; at most a fifth), the rest kept in their order."""
    n_val = min(n_val, len(pairs) // 5)
    picked = set(random.Random(f"val-{seed}").sample(range(len(pairs)), n_val))
    train = [p for i, p in enumerate(pairs) if i not in picked]
    val = [p for i, p in enumerate(pairs) if i in picked]
    return train, val


def apply_weight(items: list, weight: float, max_pairs: int | None, seed: str) -> list:
    """round(len * weight) items: whole copies of the list, then a seeded sample for the fraction; capped."""
    if weight < 0:
        raise ValueError(f"source weight must be >= 0, got {weight}")
    n = round(len(items) * weight)
    if max_pairs is not None:
        n = min(n, max_pairs)
    if not items or n == 0:
        return []
    copies, rest = divmod(n, len(items))
    picked = sorted(random.Random(seed).sample(range(len(items)), rest))
    return items * copies + [items[i] for i in picked]


@dataclass
class LoadedMix:
    train: list[PreferencePair]
    val: list[PreferencePair]
    validator: Validator

    @property
    def composition(self) -> dict[str, int]:
        return composition(self.train)


def load_train_mix(cfg) -> LoadedMix:
    """The mix's training pairs (weighted) and validation pairs, with the validator that counted what was skipped."""
    data_mix = cfg.data_mix
    validator = Validator(policy=str(data_mix.on_invalid), max_pixels=data_mix.max_image_pixels)
    sources = resolve_sources(data_mix.train, cfg.datasets)
    by_source = {src.name: load_source(src, validator) for src in sources}
    everything = [p for pairs in by_source.values() for p in pairs]
    train, val = split_validation(everything, data_mix.val_pairs, data_mix.seed)
    kept = {id(p) for p in train}
    weighted = []
    for src in sources:
        own = [p for p in by_source[src.name] if id(p) in kept]
        weighted += apply_weight(own, src.weight, src.max_pairs, f"{data_mix.seed}-{src.name}")
    return LoadedMix(weighted, val, validator)


def composition(pairs: list[PreferencePair]) -> dict[str, int]:
    return dict(sorted(Counter(p.source for p in pairs).items()))
