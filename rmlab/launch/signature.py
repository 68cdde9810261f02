"""The signature: a short hash of a run's config, naming its run directory and its wandb run id.

Hashed is the config as composed, interpolations left as written: every value an interpolation reads is in the
config too, so nothing that changes a run escapes the hash, and a path built from `${paths.data}` hashes the same
wherever the data lives. Left out are the keys that do not change what a run computes: where files live (`paths`,
`datasets`, `benchmarks`), tracking, the launcher, evaluation settings, progress bars and checkpoint frequency. Two
ways to the same config (`head=mlp3_silu` or `head.layers=3`) give the same signature.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

EXCLUDED = (
    "paths",
    "datasets",
    "benchmarks",
    "launcher",
    "tracking",
    "table",
    "eval",
    "train.progress",
    "train.threads",
    "train.eval_every",
    "train.save_every",
    "train.keep_checkpoints",
)
LENGTH = 12


def payload_of(container: dict) -> dict:
    """The part of a config container the signature hashes (a copy; the container is left as it is). A reward-model
    run leaves out the policy stage's settings (`stage`, `rl`), and every other run the self-compare settings: they
    do not read them."""
    payload = {k: v for k, v in container.items() if k not in EXCLUDED}
    stage = payload.get("stage", "reward_model")
    if stage == "reward_model":
        payload.pop("stage", None)
        payload.pop("rl", None)
    if stage != "selfcompare":
        payload.pop("selfcompare", None)
    for dotted in (e for e in EXCLUDED if "." in e):
        section, leaf = dotted.split(".", 1)
        if isinstance(payload.get(section), dict):
            payload[section] = {k: v for k, v in payload[section].items() if k != leaf}
    return payload


def signature_payload(cfg: DictConfig) -> dict:
    """The config the signature hashes (for inspection)."""
    return payload_of(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))


def signature_of(container: dict) -> str:
    text = json.dumps(payload_of(container), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def signature(cfg: DictConfig) -> str:
    return signature_of(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
