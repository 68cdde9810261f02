"""What a submitted job runs: the composed config it was submitted with, trained (or resumed) in its run directory.

The config is pickled at submission, so editing conf/ while jobs wait in the queue does not change them. On
preemption or timeout submitit calls `checkpoint`: the job is requeued with the same config and resumes from the
run's last checkpoint.
"""

from __future__ import annotations

from omegaconf import DictConfig


class TrainJob:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __call__(self) -> str:
        from rmlab.config.schema import register
        from rmlab.train.recipe import train

        register()
        return str(train(self.cfg).path)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg))
