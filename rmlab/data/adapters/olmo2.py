"""OLMo 2 1124 7B preference mix (allenai/olmo-2-1124-7b-preference-mix): the on-policy DPO mix of OLMo 2 7B, built
with the Tulu 3 pipeline (SFT-reused, IF, WildChat and UltraFeedback prompts), with the judge's ratings.

Schema (dataset card, https://huggingface.co/datasets/allenai/olmo-2-1124-7b-preference-mix, dataset_info): prompt
(string), chosen and rejected (lists of {content, role}), chosen_rating and rejected_rating (float64),
chosen_model and rejected_model (string), source (string), id (string); one config (`default`), one split (`train`,
data/train-*.parquet, about 378k rows). chosen / rejected are whole conversations, prompt included, read the way
open-instruct reads the Tulu 3 mix (see `rmlab.data.adapters.tulu3`).

- prompt: the shared turns of chosen/rejected; chosen / rejected: the final assistant turns.
- id: `id`; category: `source`.
- chosen_score / rejected_score: chosen_rating / rejected_rating; margin: their difference (None where a rating
  is missing). chosen_model / rejected_model go to meta.

Not confirmed: the ratings' scale (the card does not state it) and whether every row has both ratings; the card's
first revisions (Nov 2024, a 528-byte README) could not be checked, so a missing or NaN rating and
a missing model column are read as None rather than as errors.
"""

from __future__ import annotations

import math

from rmlab.data.adapters.base import adapter
from rmlab.data.adapters.tulu3 import allenai_pair


def _rating(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@adapter(
    "olmo2",
    hub_id="allenai/olmo-2-1124-7b-preference-mix",
    modality="text",
    schema="chosen, rejected ([{role, content}] whole conversations), prompt, id, source, chosen_rating, "
    "rejected_rating, chosen_model, rejected_model",
)
def olmo2(row: dict, ctx):
    c, r = _rating(row.get("chosen_rating")), _rating(row.get("rejected_rating"))
    pair = allenai_pair(
        row,
        ctx,
        "olmo2",
        chosen_score=c,
        rejected_score=r,
        margin=c - r if c is not None and r is not None else None,
    )
    pair.meta = {"chosen_model": row.get("chosen_model"), "rejected_model": row.get("rejected_model")}
    yield pair
