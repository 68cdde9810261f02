"""The signature: a short hash of what a run computes, naming its run directory, its submitit folder and its wandb id.

Hashed is the config's difference from the schema's defaults (as Dora hashes a run's delta), in the nodes the run's
stage reads (rmlab.config.stages), with interpolations left as written (a path built from `${paths.data}` hashes the
same wherever the data lives). So:

- adding a config field with a default renames no run: a value at its default is not in the difference;
- a value no stage computes with is never hashed: where files live (`paths`, `datasets`, `benchmarks`,
  `data_mix.synth.dir`), display labels, the hub-id catalogue, tracking, the launcher, evaluation settings, the
  generation engine, progress, threads and checkpoint frequency (EXCLUDED);
- changing what a default means would otherwise leave finished runs under a name that no longer fits them: such a key
  goes in CHANGED_DEFAULTS with a version, which enters the hash of every run that leaves the key at its default;
- likewise the synthetic testbed's generator version enters the hash of every run on a synthetic mix.

Two ways to the same config (`head=mlp3_silu` or `head.layers=3`) give the same signature.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import types
import typing

from omegaconf import DictConfig, OmegaConf

from rmlab.config import schema
from rmlab.config.stages import stage_of
from rmlab.runtime.run_dir import RunDir
from rmlab.testbed import GENERATOR_VERSION

LENGTH = 12
EXCLUDED = (
    "label",
    "paths",
    "datasets",
    "benchmarks",
    "launcher",
    "tracking",
    "eval",
    "generation",
    "table",
    "backbone.hub_ids",
    "data_mix.synth.dir",
    "run.threads",
    "run.strategy",
    "run.offload",
    "run.progress",
    "run.save_every",
    "run.keep_checkpoints",
    "train.eval_every",
)
# Keys whose default value changed what a run computes, each with the number of such changes; e.g. {"train.lr": 1}
# after the default learning rate changes once.
CHANGED_DEFAULTS: dict[str, int] = {
    "data_mix.max_length": 1,  # 512 -> 4096 (real multimodal pairs)
    "data_mix.weighting": 1,  # streamed sources drawn by size, no longer uniformly
    "data_mix.max_pixels": 1,  # an image budget where the processor's own allowed ~16k tokens per image
    "data_mix.max_tiles": 1,
}

_SAME = object()  # a value equal to its default: left out of the difference


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _structured(tp):
    """The dataclass a field's type names (through `X | None`), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


@functools.cache
def _defaults(cls) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cls), resolve=False, enum_to_str=True)


def _value(value, tp):
    """A value as the hash sees it: structured parts as their own difference from their dataclass's defaults (so a
    list of data sources is stable when DataSource gains a field), everything else as it is."""
    cls = _structured(tp)
    if cls is not None and isinstance(value, dict):
        diff = _diff(value, cls)
        return {} if diff is _SAME else diff
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and isinstance(value, list) and args:
        return [_value(v, args[0]) for v in value]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _value(v, args[1]) for k, v in value.items()}
    return value


def _diff(container: dict, cls):
    """The part of a container that differs from dataclass `cls`'s defaults (_SAME when none does). Keys the schema
    does not know (none, for a typed config) are kept whole."""
    defaults, hints, out = _defaults(cls), _hints(cls), {}
    for key, value in container.items():
        tp = hints.get(key)
        if key in defaults and value == defaults[key]:
            continue
        sub_cls = _structured(tp)
        if sub_cls is not None and isinstance(value, dict) and isinstance(defaults.get(key), dict):
            sub = _diff(value, sub_cls)
            if sub is not _SAME:
                out[key] = sub
            continue
        out[key] = _value(value, tp)
    return out or _SAME


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def _get(tree: dict, dotted: str, default=None):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def payload_of(container: dict) -> dict:
    """What the signature hashes, from a config container (interpolations unresolved, enums as strings)."""
    nodes = stage_of(container).nodes
    read = copy.deepcopy({k: v for k, v in container.items() if k in nodes})  # the container stays as it was
    for dotted in EXCLUDED:
        _drop(read, dotted)
    diff = _diff(read, schema.RMLabConfig)
    payload = {} if diff is _SAME else diff
    at_default = {
        key: n
        for key, n in sorted(CHANGED_DEFAULTS.items())
        if key.split(".")[0] in nodes and _get(payload, key, _SAME) is _SAME
    }
    if at_default:
        payload["changed_defaults"] = at_default
    if isinstance(_get(read, "data_mix.synth"), dict):
        payload["testbed_version"] = GENERATOR_VERSION  # new synthetic pairs: runs on them are new runs
    return payload


def signature_payload(cfg: DictConfig) -> dict:
    """The payload of a composed config (for inspection: `rmlab train --cfg` prints it)."""
    return payload_of(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))


def signature_of(container: dict) -> str:
    text = json.dumps(payload_of(container), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def signature(cfg: DictConfig) -> str:
    return signature_of(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))


def run_dir(cfg: DictConfig) -> RunDir:
    """The run directory a config names: `<paths.runs>/<experiment>/<signature>/`."""
    return RunDir.under(cfg.paths.runs, cfg.experiment, signature(cfg))
