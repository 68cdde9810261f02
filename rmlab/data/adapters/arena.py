"""Chatbot Arena battles (lmsys/chatbot_arena_conversations): two anonymous models answer the same user, who votes
for one, a tie, or both bad.

Schema (dataset card, https://huggingface.co/datasets/lmsys/chatbot_arena_conversations, dataset_info; the dataset
is gated): question_id, model_a, model_b, winner, judge, conversation_a and conversation_b (lists of
{content, role}, OpenAI format), turn (number of user turns), anony, language, tstamp, openai_moderation {categories,
category_scores, flagged}, toxic_chat_tag {roberta-large {flagged, probability}, t5-large {flagged, score}}; one
config, split `train` (33,000 rows, data/train-00000-of-00001-*.parquet). The release code
(lm-sys/FastChat: fastchat/serve/monitor/clean_battle_data.py, `clean_battle_data` and `to_openai_format`) sets
`winner` to "model_a", "model_b", "tie" or "tie (bothbad)" (left, right, tie and both-bad votes), builds each
conversation with roles alternating user/assistant from the user's first turn, and `turn` = len(conversation_a) // 2.

- A battle won by one side gives one pair: prompt = the conversation before the winner's last reply, chosen = that
  reply, rejected = the loser's last reply. Ties and both-bad yield nothing unless `options: {keep_ties: true}`:
  then a tie gives A as "chosen", B as "rejected", margin 0.0 and meta["tie"] = True, for losses that use ties.
- Multi-turn battles: each model answered the earlier turns itself, so the two conversations share the user turns
  but not the assistant ones, and no single prompt precedes both last replies. `options: {multi_turn: ...}`:
  "skip" (default) yields nothing for them unless both conversations agree before the last reply; "first_turn"
  keeps the first exchange only (first user turn, each model's first reply), although the vote judged the whole
  conversation. Single-turn battles (the great majority; the card gives 1.2 turns per sample on average) are read
  as they are.
- id: question_id; category: "" (the dataset has no category field; `language` is in meta).
- meta: winner, chosen_model, rejected_model, judge, language, turn, anony, and openai_moderation.flagged.

Not confirmed: the exact parquet shard name (seen only in a third-party download script, kuk/rulm-sbs-arena
README.md); the hub files themselves are gated and were not read.
"""

from __future__ import annotations

from rmlab.data.adapters.base import adapter
from rmlab.data.adapters.preference import chat_messages
from rmlab.data.records import PreferencePair

WINS = {"model_a": ("a", "b"), "model_b": ("b", "a")}
TIES = ("tie", "tie (bothbad)")
MULTI_TURN = ("skip", "first_turn")


def _first_exchange(conv: list[dict]) -> list[dict]:
    """The conversation up to and including the first assistant reply."""
    for i, m in enumerate(conv):
        if m["role"] == "assistant":
            return conv[: i + 1]
    raise ValueError("a conversation without an assistant reply")


def _split(conv_w: list[dict], conv_l: list[dict], multi_turn: str):
    """(prompt, winner's reply, loser's reply), or None where the conversations differ before the last reply."""
    for name, conv in (("winner's", conv_w), ("loser's", conv_l)):
        if not conv or conv[-1]["role"] != "assistant":
            raise ValueError(f"the {name} conversation does not end with an assistant reply")
    if conv_w[:-1] != conv_l[:-1]:
        if multi_turn == "skip":
            return None
        conv_w, conv_l = _first_exchange(conv_w), _first_exchange(conv_l)
        if conv_w[:-1] != conv_l[:-1]:
            raise ValueError("the two conversations differ before the first reply")
    if not conv_w[:-1]:
        raise ValueError("a conversation without a user turn before the reply")
    return conv_w[:-1], conv_w[-1]["content"], conv_l[-1]["content"]


@adapter(
    "arena",
    hub_id="lmsys/chatbot_arena_conversations",
    modality="text",
    schema="question_id, model_a, model_b, winner (model_a|model_b|tie|tie (bothbad)), conversation_a, "
    "conversation_b ([{role, content}]), language, turn",
)
def arena(row: dict, ctx):
    winner = row["winner"]
    keep_ties = bool(ctx.options.get("keep_ties", False))
    multi_turn = ctx.options.get("multi_turn", "skip")
    if multi_turn not in MULTI_TURN:
        raise ValueError(f"option multi_turn={multi_turn!r}; expected one of {', '.join(MULTI_TURN)}")
    if winner in WINS:
        w, lose = WINS[winner]
    elif winner in TIES:
        if not keep_ties:
            return
        w, lose = "a", "b"
    else:
        raise ValueError(f"winner is {winner!r}; expected one of model_a, model_b, {', '.join(TIES)}")
    conv_w = chat_messages(row[f"conversation_{w}"], f"conversation_{w}")
    conv_l = chat_messages(row[f"conversation_{lose}"], f"conversation_{lose}")
    for conv in (conv_w, conv_l):
        if any(not isinstance(m["content"], str) for m in conv):
            raise TypeError("a message whose content is not a string")
    split = _split(conv_w, conv_l, multi_turn)
    if split is None:
        return
    prompt, chosen, rejected = split
    tie = winner in TIES
    moderation = row.get("openai_moderation") or {}
    yield PreferencePair(
        id=str(row["question_id"]),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source="arena",
        category="",
        margin=0.0 if tie else None,
        meta={
            "winner": winner,
            "tie": tie,
            "chosen_model": row[f"model_{w}"],
            "rejected_model": row[f"model_{lose}"],
            "judge": row.get("judge"),
            "language": row.get("language"),
            "turn": row.get("turn"),
            "anony": row.get("anony"),
            "moderation_flagged": moderation.get("flagged"),
        },
    )
