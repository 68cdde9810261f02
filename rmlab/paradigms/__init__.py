"""Reward paradigms (the `paradigm` axis): Naive-RM, Critic-RM, GRM and LongCoT-GRM, one module each; and SFT of a
policy on the chosen responses (the policy stage's warm start), trained the same way. Each registers itself in
PARADIGMS (rmlab.paradigms.base) on import."""

from rmlab.paradigms import critic, grm, naive, sft  # noqa: F401  (registration)
from rmlab.paradigms.base import PARADIGMS, Paradigm


def get_paradigm(name) -> Paradigm:
    return PARADIGMS.get(name)()
