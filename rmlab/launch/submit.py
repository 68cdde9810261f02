"""`rmlab sweep`: plan an experiment's jobs from their run directories, then run or submit what needs running.

A job is skipped when its run is done, or queued/running under a scheduler job that is still alive (so no
signature ever runs twice at once); a failed, timed-out, cancelled or interrupted run is resubmitted only with
`--retry`. Submission goes through submitit directly rather than Hydra's launcher plugin, which blocks until every
job ends, submits finished jobs again, and cannot split an array: here jobs are grouped by resource spec, split into
arrays no larger than the cluster allows, and each run's status records its scheduler job id and log file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rmlab.launch.grid import Job, grid_runs
from rmlab.launch.job import TrainJob, run_config
from rmlab.runtime.run_dir import RunDir

ALIVE_SLURM_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SIGNALING",
    "STAGE_OUT",
}


@dataclass
class Planned:
    job: Job
    submit: bool
    reason: str

    @property
    def point(self) -> list[str]:
        return self.job.point

    @property
    def run(self) -> RunDir:
        return self.job.run

    @property
    def cfg(self) -> DictConfig:
        return self.job.cfg


def slurm_state(job_id: str) -> str | None:
    """The scheduler's state of a job (sacct, else squeue), None if it knows no such job."""
    for cmd in (["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], ["squeue", "-h", "-o", "%T", "-j", job_id]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            return out[0].split()[0].rstrip("+")
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_alive(status: dict) -> bool:
    """Is a queued or running run still in the hands of a live job (a SLURM job or a local process)?"""
    if status.get("state") not in ("queued", "running"):
        return False
    if status.get("slurm_job_id"):
        return slurm_state(str(status["slurm_job_id"])) in ALIVE_SLURM_STATES
    if status.get("pid") and status.get("host") == socket.gethostname():
        return _pid_alive(int(status["pid"]))
    return False


def plan(experiment: str, overrides: list[str], retry: bool = False) -> list[Planned]:
    """Each job of the sweep with whether it needs running and why; downstream jobs (ensembles, policies) last:
    they read the others. Grid points that compute the same run (an axis its stage does not read) are one job."""
    planned = []
    first: dict[str, Job] = {}
    for job in sorted(grid_runs(experiment, overrides), key=lambda j: j.is_downstream):
        status = job.run.status()
        state = status.get("state", "pending")
        if job.signature in first:
            planned.append(Planned(job, False, f"the same run as {' '.join(first[job.signature].point)}"))
            continue
        first[job.signature] = job
        if state == "done":
            planned.append(Planned(job, False, "done"))
        elif job_alive(status):
            planned.append(Planned(job, False, f"{state} (job {status.get('slurm_job_id') or status.get('pid')})"))
        elif state == "pending":
            planned.append(Planned(job, True, "new"))
        elif retry:
            planned.append(Planned(job, True, f"retry ({state})"))
        else:
            planned.append(Planned(job, False, f"{state}: relaunch with --retry to run it again"))
    return planned


def _resources(launcher) -> dict:
    """The resource spec of a job: jobs with equal specs share an array."""
    keys = (
        "timeout_min",
        "partition",
        "account",
        "qos",
        "constraint",
        "nodes",
        "tasks_per_node",
        "gpus_per_node",
        "cpus_per_task",
        "mem_gb",
        "array_parallelism",
        "signal_delay_s",
        "setup",
        "additional_parameters",
    )
    spec = OmegaConf.to_container(launcher, resolve=True)
    return {k: spec.get(k) for k in keys}


def _executor(folder: Path, cluster: str, spec: dict, max_num_timeout: int):
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster, slurm_max_num_timeout=max_num_timeout)
    params = {
        "timeout_min": spec["timeout_min"],
        "nodes": spec["nodes"],
        "tasks_per_node": spec["tasks_per_node"],
        "cpus_per_task": spec["cpus_per_task"],
        "name": "rmlab",
    }
    if spec["gpus_per_node"]:
        params["gpus_per_node"] = spec["gpus_per_node"]
    if spec["mem_gb"]:
        params["mem_gb"] = spec["mem_gb"]
    if cluster == "slurm":
        for key in ("partition", "account", "qos", "constraint"):
            if spec[key]:
                params[f"slurm_{key}"] = spec[key]
        params["slurm_array_parallelism"] = spec["array_parallelism"]
        params["slurm_signal_delay_s"] = spec["signal_delay_s"]
        if spec["setup"]:
            params["slurm_setup"] = list(spec["setup"])
        if spec["additional_parameters"]:
            params["slurm_additional_parameters"] = dict(spec["additional_parameters"])
    executor.update_parameters(**params)
    return executor


def _record_submission(job, run: RunDir, launcher: str) -> None:
    run.path.mkdir(parents=True, exist_ok=True)
    run.update_status(
        state="queued",
        slurm_job_id=str(job.job_id) if launcher == "slurm" else None,
        launcher=launcher,
        log=str(job.paths.stdout),
        submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        pid=None,
    )


def submit_slurm(planned: list[Planned], experiment_dir: Path) -> list:
    """One array per resource spec, split at max_array_size; returns the submitit jobs (in planned order).

    Downstream jobs (ensembles, policies trained with the sweep's reward models) go in arrays of their own that
    start after every other job of this sweep has ended (`--dependency=afterany`), and after any such job still
    queued or running from an earlier sweep."""
    training = [p for p in planned if p.submit and not p.job.is_downstream]
    ensembles = [p for p in planned if p.submit and p.job.is_downstream]
    submitted = _submit_arrays(training, experiment_dir, dependency=None)
    if ensembles:
        waits = {str(j.job_id).split("_")[0] for _, j in submitted}
        waits |= {
            str(p.run.status()["slurm_job_id"]).split("_")[0]
            for p in planned
            if not p.submit and not p.job.is_downstream and job_alive(p.run.status())
            and p.run.status().get("slurm_job_id")
        }  # fmt: skip
        dependency = "afterany:" + ":".join(sorted(waits)) if waits else None
        submitted += _submit_arrays(ensembles, experiment_dir, dependency)
    return submitted


def _submit_arrays(todo: list[Planned], experiment_dir: Path, dependency: str | None) -> list:
    groups: dict[str, list[Planned]] = {}
    for p in todo:
        groups.setdefault(repr(sorted(_resources(p.cfg.launcher).items())), []).append(p)
    submitted = []
    for members in groups.values():
        launcher = members[0].cfg.launcher
        spec = _resources(launcher)
        if dependency:
            spec["additional_parameters"] = {**(spec["additional_parameters"] or {}), "dependency": dependency}
        executor = _executor(experiment_dir / ".submitit", "slurm", spec, launcher.max_num_timeout)
        size = max(1, int(launcher.max_array_size))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            with executor.batch():
                jobs = [executor.submit(TrainJob(p.cfg)) for p in chunk]
            for job, p in zip(jobs, chunk, strict=True):
                _record_submission(job, p.run, "slurm")
                submitted.append((p, job))
    return submitted


def run_local(planned: list[Planned], experiment_dir: Path, parallelism: int) -> None:
    """submitit subprocesses on this machine, `parallelism` at a time (ensemble jobs once every training job has
    ended); returns when all have ended."""
    todo = [p for p in planned if p.submit]
    running: list = []
    while todo or running:
        # plan() puts ensembles last: one starts only once nothing else runs
        while todo and len(running) < parallelism and not (todo[0].job.is_downstream and running):
            p = todo.pop(0)
            launcher = p.cfg.launcher
            cfg = p.cfg.copy()
            cfg.run.threads = int(launcher.cpus_per_task)  # no SLURM to say how many cores a job may use
            executor = _executor(experiment_dir / ".submitit", "local", _resources(launcher), 0)
            job = executor.submit(TrainJob(cfg))
            _record_submission(job, p.run, "local")
            running.append(job)
        time.sleep(0.5)
        running = [j for j in running if not j.done()]


def run_inline(planned: list[Planned]) -> None:
    """One after another in this process; a failing job is recorded in its run and the sweep goes on."""
    import traceback

    for p in planned:
        if p.submit:
            try:
                run_config(p.cfg)
            except Exception:
                traceback.print_exc()


def wait_for(jobs: list, poll_s: float = 2.0) -> None:
    """Until every submitted job has left the scheduler (requeued jobs included)."""
    pending = list(jobs)
    while pending:
        time.sleep(poll_s)
        pending = [
            (p, j)
            for p, j in pending
            if slurm_state(str(j.job_id)) in ALIVE_SLURM_STATES | {None}
            and p.run.status().get("state") not in ("done", "failed")
        ]
