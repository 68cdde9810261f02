"""Stanford Human Preferences (stanfordnlp/SHP): a Reddit post and two top-level comments, one preferred by the
subreddit's votes.

Schema (dataset card, https://huggingface.co/datasets/stanfordnlp/SHP, "Data Structure", whose example row from
askculinary/train.json is in tests/fixtures/real/shp/ and read by tests/test_adapters_real.py): post_id, domain (the
subreddit and split joined by "_", e.g. "askculinary_train"), upvote_ratio, history (post title + body), c_root_id_A,
c_root_id_B, created_at_utc_A, created_at_utc_B, score_A, score_B (1 + upvotes - downvotes), human_ref_A,
human_ref_B, labels (1 if A is preferred, 0 if B), seconds_difference, score_ratio (the preferred comment's score over
the other's, >= 1). Files: `<subreddit>/{train,validation,test}.json`, 18 subreddits, one JSON object per line.

- prompt: `history` as one user turn; chosen / rejected: human_ref_A / human_ref_B as `labels` says.
- id: "<post_id>-<c_root_id_A>-<c_root_id_B>" (a post gives many pairs, so post_id alone is not unique).
- category: the subreddit (`domain` without its split suffix; the full `domain` is kept in meta).
- chosen_score / rejected_score: the two comments' scores; margin: ln(score_ratio), the card's own measure of how
  strong a preference is, on a log scale (raw score gaps span orders of magnitude across subreddits).
- option `min_score_ratio` (default 1.0, i.e. all pairs): pairs with a lower `score_ratio` yield nothing. The card
  recommends training on score_ratio >= 2 pairs.

Local files: SHP's `<subreddit>/train.json` are JSON lines under a `.json` name; rmlab's reader reads them as such
(rmlab.data.readers.open_reader), so they load as shipped.
"""

from __future__ import annotations

import math

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, user_prompt

SPLITS = ("_train", "_validation", "_test")


def _subreddit(domain: str) -> str:
    for suffix in SPLITS:
        if domain.endswith(suffix):
            return domain[: -len(suffix)]
    return domain


@adapter(
    "shp",
    hub_id="stanfordnlp/SHP",
    modality="text",
    schema="history, human_ref_A, human_ref_B, labels (1 = A preferred), score_A, score_B, score_ratio, domain, "
    "post_id, c_root_id_A, c_root_id_B",
)
def shp(row: dict, ctx):
    label = row["labels"]
    if label not in (0, 1):
        raise ValueError(f"labels is {label!r}, not 1 (A preferred) or 0 (B preferred)")
    win, lose = ("A", "B") if label == 1 else ("B", "A")
    chosen, rejected = row[f"human_ref_{win}"], row[f"human_ref_{lose}"]
    history = row["history"]
    for name, value in (("history", history), (f"human_ref_{win}", chosen), (f"human_ref_{lose}", rejected)):
        if not isinstance(value, str):
            raise TypeError(f"{name} is {type(value).__name__}, not a string")
    ratio = row.get("score_ratio")
    ratio = float(ratio) if ratio is not None else None
    if ratio is not None and ratio < float(ctx.options.get("min_score_ratio", 1.0)):
        return
    domain = row.get("domain") or ""
    yield PreferencePair(
        id=f"{row['post_id']}-{row['c_root_id_A']}-{row['c_root_id_B']}",
        prompt=user_prompt(history),
        chosen=chosen,
        rejected=rejected,
        source="shp",
        category=_subreddit(domain),
        margin=math.log(ratio) if ratio is not None and ratio > 0 else None,
        chosen_score=float(row[f"score_{win}"]),
        rejected_score=float(row[f"score_{lose}"]),
        meta={
            "domain": domain,
            "post_id": row["post_id"],
            "score_ratio": ratio,
            "upvote_ratio": row.get("upvote_ratio"),
            "seconds_difference": row.get("seconds_difference"),
        },
    )
