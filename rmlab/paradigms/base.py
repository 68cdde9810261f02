"""What a reward paradigm is: how it builds its model, encodes and batches pairs, computes its loss, and scores.

Every paradigm has the same shape so that the trainer, the data layer and evaluation never ask which one runs:

- `build(cfg) -> (model, processor)`: a model with `save`, `trainable_state`, `load_trainable_state`
- `encoder(processor, cfg)`: `.encode(pair) -> item` (items have `id`, `source`, `length`; an item too long for
  `data_mix.max_length` raises `OverlongPair`) and a `key` naming what the encoding depends on (for the cache)
- `collate(items, pad_id, cfg) -> batch`; `loss(model, batch, cfg) -> (loss, metrics)`
- `score(model, items, pad_id, cfg) -> [verdict]`: per pair `{"scores": [chosen, rejected]}` (a scalar per response)
  and/or `{"choice": 0 | 1 | None}` (which response a generative judge prefers; None when it could not be read)
"""

from __future__ import annotations


def verdict_right(verdict: dict) -> bool:
    """Did the verdict prefer the chosen response? Scores strictly (a tie is wrong); a choice must name it."""
    if "scores" in verdict:
        chosen, rejected = verdict["scores"]
        return chosen > rejected
    return verdict.get("choice") == 0
