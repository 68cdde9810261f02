"""UltraFeedback (openbmb/UltraFeedback, raw): one instruction with rated completions, and the two pair views
BaseReward trains on.

Schema (OpenBMB/UltraFeedback README, "Dataset Format"; its example row, one completion of four shown, is in
tests/fixtures/real/ultrafeedback/): source, instruction, models, correct_answers, incorrect_answers,
completions[{model, principle, custom_system_prompt, response, annotations{instruction_following, honesty,
truthfulness, helpfulness: {Rating, Rationale, ...}}}]. The README's example has no `overall_score`, `critique` or
`fine-grained_score`: those are added per completion by the repository's annotation code
(src/data_annotation/annotate_critique.py writes `critique` and `overall_score`; fix_overall_score_issue.py adds
`fine-grained_score` and corrects `overall_score`, the fix the hub release carries since 2023-12-29).
`overall_score` is the 1-10 critique score the paper's views use; each completion's `critique` (GPT-4's text) goes to
the pair's meta as `chosen_reason` / `rejected_reason`, the critiques Critic-RM trains on. A row whose completions
carry no `overall_score` (the README's form, even with the one completion its example shows) is a counted `schema`
fault, never a silent 0; a row whose one completion is scored simply has nothing to compare.

- `ultrafeedback` (Ultra-All): every pair of completions with different overall scores, the higher one chosen.
- `ultrafeedback_hard` (Ultra-Hard): the pairs whose score gap is at least `HARD_MIN_GAP` (a data_mix source sets
  another with `options: {min_gap: ...}`): the clear-cut preferences only. The paper does not print its threshold.
"""

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, user_prompt

HARD_MIN_GAP = 4.0
SCHEMA = "instruction, completions[{response, overall_score}], source"


def _pairs(row: dict, ctx, min_gap: float):
    scored = [c for c in row["completions"] if c.get("overall_score") is not None]
    if len(scored) < min(2, len(row["completions"])):  # unscored ones leave no pair: a fault, not a "clean" 0
        raise ValueError(f"{len(row['completions']) - len(scored)} of {len(row['completions'])} completions have no "
                         "overall_score: no pair can be ranked")  # fmt: skip
    base = str(row.get("id") or ctx.row_id)
    k = 0
    for i, c_i in enumerate(scored):
        for c_j in scored[i + 1 :]:
            s_i, s_j = float(c_i["overall_score"]), float(c_j["overall_score"])
            if abs(s_i - s_j) < max(min_gap, 1e-9):
                continue
            high, low = (c_i, c_j) if s_i > s_j else (c_j, c_i)
            reasons = {"chosen_reason": high.get("critique"), "rejected_reason": low.get("critique")}
            yield PreferencePair(
                id=f"{base}:{k}",
                prompt=user_prompt(row["instruction"]),
                chosen=high["response"],
                rejected=low["response"],
                source="ultrafeedback",
                category=row.get("source") or "",
                margin=abs(s_i - s_j),
                chosen_score=max(s_i, s_j),
                rejected_score=min(s_i, s_j),
                meta={key: text for key, text in reasons.items() if text},
            )
            k += 1


@adapter("ultrafeedback", hub_id="openbmb/UltraFeedback", modality="text", schema=SCHEMA)
def ultra_all(row: dict, ctx):
    yield from _pairs(row, ctx, min_gap=0.0)


@adapter("ultrafeedback_hard", hub_id="openbmb/UltraFeedback", modality="text", schema=SCHEMA)
def ultra_hard(row: dict, ctx):
    yield from _pairs(row, ctx, min_gap=float(ctx.options.get("min_gap", HARD_MIN_GAP)))
