"""VLFeedback (MMInstruction/VLFeedback): one image and instruction, four model completions each rated by GPT-4V
on three aspects, paired the way Silkie's DPO training pairs them.

Schema (dataset card https://huggingface.co/datasets/MMInstruction/VLFeedback, `dataset_info` in its README, and
its loading script VLFeedback.py): id, prompt, models[], completions[{annotations{Helpfulness, Ethical
Considerations, Visual Faithfulness: {Rating, Rationale}}, model, response}], img_path. Ratings are strings. The
files are vlfeedback_80k.jsonl (rows without img_path) and merged_images.zip; the loading script adds
`img_path = <extracted zip>/merged_images/{id}.jpg`. A `datasets` Sequence of structs comes back column-wise
(completions = {annotations: [...], model: [...], response: [...]}); both that and the jsonl's list of dicts are read.

Pairing (vlf-silkie/VLFeedback:run_dpo.py, make_vlfeedback_paired_dataset): for every pair of completions, the
average of float(Rating) over the annotated aspects; the higher average is chosen, ties are dropped, and a pair
with a rating that is not a number is skipped. Options (a data_mix source's `options`):
- `pairs`: "all" (default, the Silkie rule: every pair with different averages), "best_vs_rest" (the top-rated
  completion against each lower one) or "best_worst" (top against bottom, one pair per row).
- `min_gap`: the least average-score gap a pair needs (default 0: any strictly positive gap, as Silkie).
- `aspects`: which aspects to average (default: every aspect the annotation has, as Silkie).
- `image_template`: where a row without img_path has its image, relative to image_root or the file's folder
  (default "merged_images/{id}.jpg", the layout inside merged_images.zip, so image_root may be the zip itself).

Not confirmed: the exact columns of the hub's parquet conversion (refs/convert/parquet, what `hub` reads since
`datasets` no longer runs the loading script); the adapter takes the image from `image` or `img_path` in either
form ({bytes, path} or a path), else from `image_template`. The rows carry no category field.
"""

from __future__ import annotations

from rmlab.data.adapters.base import adapter
from rmlab.data.records import PreferencePair, content_with_images

SCHEMA = (
    "id, prompt, completions[{annotations{<aspect>: {Rating, Rationale}}, model, response}], img_path "
    "(else image_template)"
)
RULES = ("all", "best_vs_rest", "best_worst")
IMAGE_TEMPLATE = "merged_images/{id}.jpg"


def _completions(row: dict) -> list[dict]:
    """The completions as a list of dicts, whether stored row-wise (jsonl) or column-wise (a `datasets` Sequence)."""
    comps = row["completions"]
    if isinstance(comps, dict):
        keys = list(comps)
        lengths = {len(comps[k]) for k in keys}
        if len(lengths) > 1:
            raise ValueError(f"completions columns of different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: comps[k][i] for k in keys} for i in range(n)]
    if not isinstance(comps, list):
        raise TypeError(f"completions is a {type(comps).__name__}, not a list")
    return comps


def _score(annotations: dict | None, aspects) -> tuple[float, dict, dict] | None:
    """(average rating, ratings, rationales) over the aspects; None when a rating is missing or not a number
    (Silkie skips the pairs with such a completion)."""
    if not isinstance(annotations, dict):
        return None
    names = aspects or [k for k in annotations if annotations[k] is not None]
    ratings, rationales = {}, {}
    for name in names:
        aspect = annotations.get(name)
        if not isinstance(aspect, dict):
            return None
        try:
            ratings[name] = float(aspect["Rating"])
        except (TypeError, ValueError, KeyError):
            return None
        rationales[name] = aspect.get("Rationale") or ""
    if not ratings:
        return None
    return sum(ratings.values()) / len(ratings), ratings, rationales


def _image_ref(row: dict, ctx):
    for key in ("image", "img_path"):
        ref = row.get(key)
        if ref:
            return ctx.image(ref)
    template = ctx.options.get("image_template", IMAGE_TEMPLATE)
    return ctx.image(template.format(id=row["id"]))


@adapter(
    "vlfeedback",
    hub_id="MMInstruction/VLFeedback",
    modality="multimodal",
    schema=SCHEMA,
    revision="refs/convert/parquet",
)
def vlfeedback(row: dict, ctx):
    rule = ctx.options.get("pairs", "all")
    if rule not in RULES:
        raise ValueError(f"option pairs={rule!r}; expected one of {', '.join(RULES)}")
    min_gap = float(ctx.options.get("min_gap", 0.0))
    aspects = ctx.options.get("aspects")
    if isinstance(aspects, str):
        aspects = [aspects]

    prompt_text = row["prompt"]
    if not isinstance(prompt_text, str):
        raise TypeError(f"prompt is a {type(prompt_text).__name__}, not a string")
    scored = []
    for comp in _completions(row):
        if not isinstance(comp.get("response"), str):
            raise TypeError("a completion without a response string")
        result = _score(comp.get("annotations"), aspects)
        if result is not None:
            scored.append((*result, comp))

    candidates = []  # (chosen, rejected) completion tuples in Silkie's combination order
    if rule == "all":
        for i, a in enumerate(scored):
            for b in scored[i + 1 :]:
                if a[0] != b[0]:
                    candidates.append((a, b) if a[0] > b[0] else (b, a))
    elif scored:
        ranked = sorted(scored, key=lambda s: -s[0])  # stable: ties keep file order
        best = ranked[0]
        losers = ranked[1:] if rule == "best_vs_rest" else ranked[-1:]
        candidates = [(best, lo) for lo in losers if lo[0] < best[0]]

    base = str(row["id"]) if row.get("id") is not None else ctx.row_id
    image = _image_ref(row, ctx)
    k = 0
    for hi, lo in candidates:
        gap = hi[0] - lo[0]
        if gap <= 0 or gap < min_gap - 1e-9:  # averages of thirds: allow for rounding
            continue
        yield PreferencePair(
            id=f"{base}:{k}",
            prompt=[{"role": "user", "content": content_with_images(prompt_text, 1)}],
            chosen=hi[3]["response"],
            rejected=lo[3]["response"],
            images=[image],
            source="vlfeedback",
            category="",
            margin=gap,
            chosen_score=hi[0],
            rejected_score=lo[0],
            meta={
                "chosen_model": hi[3].get("model"),
                "rejected_model": lo[3].get("model"),
                "chosen_ratings": hi[1],
                "rejected_ratings": lo[1],
                "chosen_rationales": hi[2],
                "rejected_rationales": lo[2],
            },
        )
        k += 1
