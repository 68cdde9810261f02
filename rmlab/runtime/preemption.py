"""Preemption and timeouts on SLURM: the requeue signal waits for the end of the current training step.

submitit binds SIGUSR2 (SUBMITIT_PREEMPT_SIGNAL) to "checkpoint, requeue, exit". Arriving in the middle of a step it
would interrupt an optimizer update; so while training runs this guard takes the signal first, the loop finishes
the step, writes a checkpoint of it, and only then hands the signal to submitit, which requeues the job. The next
attempt resumes from that checkpoint (no step lost), in the same run directory and the same wandb run.
"""

from __future__ import annotations

import os
import signal


def _requeue_signal() -> signal.Signals:
    return signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2').upper().removeprefix('SIG')}"]


class PreemptionGuard:
    def __init__(self):
        self.signum: int | None = None
        self._previous = None
        self._installed = False

    def install(self) -> PreemptionGuard:
        """Take the requeue signal, if this process runs under submitit (else there is nothing to wait for)."""
        if "SUBMITIT_FOLDER" not in os.environ and "SLURM_JOB_ID" not in os.environ:
            return self
        sig = _requeue_signal()
        self._previous = signal.getsignal(sig)
        signal.signal(sig, self._defer)
        self._installed = True
        return self

    def _defer(self, signum, frame) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def hand_over(self) -> None:
        """Give the signal to submitit's handler (it requeues the job and exits)."""
        signum, self.signum = self.signum or int(_requeue_signal()), None  # another rank may have got the signal
        self.uninstall()
        if callable(self._previous):
            self._previous(signum, None)
        raise SystemExit(-1)  # no submitit handler (not under submitit): stop as preempted

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(_requeue_signal(), self._previous)
            self._installed = False
