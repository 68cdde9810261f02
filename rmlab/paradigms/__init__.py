"""Reward paradigms (the `paradigm` axis): Naive-RM, Critic-RM, GRM and LongCoT-GRM, one module each; and SFT of a
policy on the chosen responses (the policy stage's warm start), trained the same way."""

from rmlab.errors import ConfigError


def get_paradigm(name: str):
    from rmlab.paradigms.critic import Critic
    from rmlab.paradigms.grm import GRM, LongCoT
    from rmlab.paradigms.naive import Naive
    from rmlab.paradigms.sft import SFT

    paradigms = {"naive": Naive(), "critic": Critic(), "grm": GRM(), "longcot": LongCoT(), "sft": SFT()}
    if str(name) not in paradigms:
        raise ConfigError(f"unknown paradigm {name!r}; known: {', '.join(paradigms)}")
    return paradigms[str(name)]
