"""The one lifecycle every stage runs in: once per run directory, its state always said, its wandb run always closed.

`run_stage(cfg, run, body)`:

1. processes: joins torch.distributed when the job has several (rank 0 owns the run: its lock, status and logs;
   the other ranks run the body and write nothing);
2. a run already `done` is skipped; a run whose lock another process holds is left to it (status untouched);
3. an attempt starts: the resolved config written, `status.json` says `running` (attempt n, host, pid, job id);
4. threads and seeds set; the body runs inside the run's logger (wandb: job_type = the stage, id = the signature);
5. it ends `done` (with the stage's step count), `interrupted` (Ctrl-C, or a preemption handing over to its
   requeue) or `failed` (the error in one line), and the exception goes on. wandb is finished in every case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from rmlab.config.stages import stage_of
from rmlab.runtime.distributed import Dist, init_distributed
from rmlab.runtime.run_dir import RunDir
from rmlab.runtime.setup import seed_everything, set_threads
from rmlab.tracking.logger import RunLogger


@dataclass
class StageRun:
    """What a stage's body gets: its config, its run directory, its logger, its processes, its threads."""

    cfg: DictConfig
    run: RunDir
    log: RunLogger
    dist: Dist
    threads: int


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_stage(cfg: DictConfig, run: RunDir, body: Callable[[StageRun], None]) -> str:
    """Run `body` for the run directory `run` once (see the module's docstring); return what happened: `done`,
    `skipped` (done before), `busy` (another process holds the run) or, on the ranks other than 0, `worker`.
    Rank 0 decides, and every rank follows its decision."""
    dist = init_distributed()
    with contextlib.ExitStack() as held:
        decision = "run"
        if dist.is_main:
            if run.status().get("state") == "done":
                decision = "skipped"
                print(f"[rmlab] {run.path}: already done, skipped")
            elif not held.enter_context(run.lock()):
                decision = "busy"
                print(f"[rmlab] {run.path}: already being run by another process, not starting a second copy")
        decision = dist.broadcast(decision)
        if not dist.is_main:
            if decision == "run":
                body(StageRun(cfg, run, RunLogger(cfg, run), dist, _prepare(cfg)))
            return "worker"
        if decision != "run":
            return decision
        run.start_attempt(cfg)
        try:
            threads = _prepare(cfg)
            with RunLogger(cfg, run) as log:
                body(StageRun(cfg, run, log, dist, threads))
                log.summary({"run/state": "done"})
        except (KeyboardInterrupt, SystemExit) as e:
            run.update_status(state="interrupted", error=f"interrupted ({type(e).__name__})")
            raise
        except BaseException as e:
            run.update_status(state="failed", error=f"{type(e).__name__}: {e}")
            raise
        steps = stage_of(cfg).steps
        run.update_status(state="done", finished=_now(), **({"step": OmegaConf.select(cfg, steps)} if steps else {}))
    return "done"


def _prepare(cfg: DictConfig) -> int:
    threads = set_threads(cfg.run.threads)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    return threads
