"""What a job runs: its config's stage, in the run directory its signature names, inside the one run lifecycle.

The config is pickled at submission, so editing conf/ while jobs wait in the queue does not change them. On
preemption or timeout submitit calls `checkpoint`: the job is requeued with the same config and resumes from the
run's last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from rmlab.config.schema import register
from rmlab.config.stages import STAGES
from rmlab.launch.signature import run_dir
from rmlab.runtime.run_dir import RunDir
from rmlab.testbed import ensure_testbed


def stage_body(stage: str) -> Callable:
    """The body of a stage (imported when a job runs: each pulls in torch and transformers)."""
    if stage == "reward_model":
        from rmlab.train.recipe import train_reward_model

        return train_reward_model
    if stage == "rl":
        from rmlab.rl.recipe import train_policy

        return train_policy
    if stage == "selfcompare":
        from rmlab.train.selfcompare import selfcompare

        return selfcompare
    if stage == "ensemble":
        from rmlab.eval.ensemble import ensemble_stage

        return ensemble_stage
    raise ValueError(f"no body for stage {stage!r}; stages: {', '.join(STAGES)}")


def run_config(cfg: DictConfig) -> RunDir:
    """Run the config's stage (train a reward model, a policy, self-compare, or fit an ensemble) in its run
    directory; return the directory. The synthetic testbed a mix names is written first if it is missing."""
    from rmlab.runtime.lifecycle import run_stage

    ensure_testbed(cfg.data_mix.synth)
    run = run_dir(cfg)
    run_stage(cfg, run, stage_body(str(cfg.stage)))
    return run


class TrainJob:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __call__(self) -> str:
        register()
        return str(run_config(self.cfg).path)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg))
