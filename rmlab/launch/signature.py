"""The signature: a short hash of the fully resolved config, naming the run directory and the wandb run id.

Keys that do not change what a run computes are left out (where files live, tracking, progress bars, how often
checkpoints are written), so moving the data or switching wandb online does not orphan a finished run.
"""

from __future__ import annotations

import copy
import hashlib
import json

from omegaconf import DictConfig, OmegaConf

# Dotted keys left out of the hash. `paths.*` values are replaced by placeholders before resolving, so paths built
# from them hash the same wherever the data lives; `datasets` (where each dataset's copy is) is left out whole.
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


def signature_payload(cfg: DictConfig) -> dict:
    """The resolved config the signature hashes (for inspection: `rmlab train --signature-payload`)."""
    c = copy.deepcopy(cfg)
    OmegaConf.set_struct(c, False)
    for key in c.paths:
        c.paths[key] = f"<paths.{key}>"
    resolved = OmegaConf.to_container(c, resolve=True, enum_to_str=True)
    for dotted in EXCLUDED:
        node = resolved
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return resolved


def signature(cfg: DictConfig) -> str:
    payload = json.dumps(signature_payload(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:LENGTH]
