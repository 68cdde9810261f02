"""Reward paradigms (the `paradigm` axis): Naive-RM, Critic-RM, GRM and LongCoT-GRM, one module each."""

from rmlab.errors import ConfigError


def get_paradigm(name: str):
    from rmlab.paradigms.critic import Critic
    from rmlab.paradigms.grm import GRM, LongCoT
    from rmlab.paradigms.naive import Naive

    paradigms = {"naive": Naive(), "critic": Critic(), "grm": GRM(), "longcot": LongCoT()}
    if str(name) not in paradigms:
        raise ConfigError(f"unknown paradigm {name!r}; known: {', '.join(paradigms)}")
    return paradigms[str(name)]
