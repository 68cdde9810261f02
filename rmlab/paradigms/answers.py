"""Reading a generated answer against a reference: what a policy's exact match (paradigm=sft), the rule reward of
the policy stage and self-compare's verdicts all compare."""

from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_EDGE = re.compile(r"^[\s\"'`*.,;:!?()\[\]]+|[\s\"'`*.,;:!?()\[\]]+$")


def normalize_answer(text: str) -> str:
    """What a rule compares: the last `<answer>` tag's content if there is one, lowercased, inner spaces collapsed,
    quotes, brackets and punctuation around it stripped."""
    tagged = _ANSWER.findall(text)
    text = tagged[-1] if tagged else text
    return _EDGE.sub("", " ".join(text.lower().split()))


def exact_match(answer: str, reference: str) -> bool:
    return normalize_answer(answer) == normalize_answer(reference)
