"""What a job runs: training a reward model, (a config with an `ensemble`) evaluating an ensemble of trained ones,
or (stage=rl) training a policy, in the run directory its config names.

The config is pickled at submission, so editing conf/ while jobs wait in the queue does not change them. On
preemption or timeout submitit calls `checkpoint`: the job is requeued with the same config and resumes from the
run's last checkpoint.
"""

from __future__ import annotations

from omegaconf import DictConfig

from rmlab.launch.run_dir import RunDir


def is_ensemble(cfg) -> bool:
    return str(cfg.ensemble.method) != "none"


def run_config(cfg: DictConfig) -> RunDir:
    """Train the config's reward model, evaluate its ensemble, or train its policy (stage=rl); return the run
    directory."""
    if str(cfg.stage) == "rl":
        from rmlab.rl.recipe import train_policy

        return train_policy(cfg)
    if str(cfg.stage) == "selfcompare":
        from rmlab.rl.selfcompare import run_selfcompare

        return run_selfcompare(cfg)
    if is_ensemble(cfg):
        from rmlab.eval.ensemble import run_ensemble

        run_ensemble(cfg)
        return RunDir.for_config(cfg)
    from rmlab.train.recipe import train

    return train(cfg)


class TrainJob:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __call__(self) -> str:
        from rmlab.config.schema import register

        register()
        return str(run_config(self.cfg).path)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg))
