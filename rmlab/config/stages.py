"""The four stages a run can be, and what each one reads of the config.

One table, read by everything that has to know a stage: the signature hashes only the nodes a stage reads, wandb
names and tags a run by its stage's axes, `rmlab status` shows its stage's step count, and a value set in a node
the stage never reads is pointed out instead of silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from rmlab.config.schema import Stage

COMMON = ("experiment", "stage", "run", "data_mix")  # read by every stage


@dataclass(frozen=True)
class StageSpec:
    name: Stage
    reads: tuple[str, ...]  # top-level config nodes the stage reads, beside COMMON
    steps: str | None  # the dotted key of its number of optimizer steps (None: it does not train)
    axes: tuple[str, ...]  # the keys that name its runs (wandb name and tags)

    @property
    def nodes(self) -> tuple[str, ...]:
        return (*COMMON, *self.reads)


STAGES: dict[str, StageSpec] = {
    spec.name.value: spec
    for spec in (
        StageSpec(
            Stage.reward_model,
            reads=("paradigm", "head", "backbone", "scale", "train"),
            steps="train.max_steps",
            axes=("paradigm.name", "head.layers", "head.activation", "backbone.family", "scale.name", "data_mix.name"),
        ),
        # the policy is built from backbone x scale when rl.policy is null; a reward model outside a run directory
        # is scored with `paradigm`'s options
        StageSpec(
            Stage.rl,
            reads=("rl", "paradigm", "backbone", "scale"),
            steps="rl.steps",
            axes=("rl.algorithm", "rl.reward", "backbone.family", "scale.name", "data_mix.name"),
        ),
        # the policy's answers (selfcompare), then fine-tuning it (train, as paradigm=sft with `paradigm`'s scoring
        # options) in the backbone's architecture
        StageSpec(
            Stage.selfcompare,
            reads=("selfcompare", "train", "paradigm", "backbone", "scale"),
            steps="train.max_steps",
            axes=("stage", "backbone.family", "scale.name", "data_mix.name"),
        ),
        # members bring their own model settings; a member outside a run directory is scored with `paradigm`'s
        StageSpec(
            Stage.ensemble,
            reads=("ensemble", "paradigm"),
            steps=None,
            axes=("ensemble.method", "data_mix.name"),
        ),
    )
}


def stage_of(cfg) -> StageSpec:
    """The stage spec of a config (a DictConfig or a plain container)."""
    return STAGES[str(cfg.get("stage") or Stage.reward_model.value)]
