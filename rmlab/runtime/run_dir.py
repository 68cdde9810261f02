"""A run directory `runs/<experiment>/<signature>/` and its status file, and references to finished runs.

Layout: `config.yaml` (the resolved config), `status.json` (state, attempts, timings), `checkpoints/`, `model/`
(the trained model), `history.jsonl` (train curves), `summary.json`, `eval/<set>/{predictions.jsonl,metrics.json}`.
Every file is written atomically, so a crash never leaves a torn status or config. The directory's name (the
signature) is given by rmlab.launch.signature; this module only keeps what is in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rmlab.errors import ConfigError
from rmlab.util.atomic import atomic_write_json, atomic_write_text

STATES = ("pending", "queued", "running", "done", "failed", "interrupted")


def _slurm_job_id() -> str | None:
    """This job's id as sacct and squeue name it (`<array>_<task>` for an array task)."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class RunDir:
    path: Path
    signature: str
    experiment: str

    @classmethod
    def under(cls, runs: str | Path, experiment: str, signature: str) -> RunDir:
        return cls(Path(runs).resolve() / experiment / signature, signature, experiment)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    def eval_dir(self, name: str) -> Path:
        return self.path / "eval" / name

    def status(self) -> dict:
        f = self.path / "status.json"
        return json.loads(f.read_text()) if f.exists() else {"state": "pending", "attempts": 0}

    def update_status(self, **fields) -> dict:
        status = {
            **self.status(),
            **fields,
            "signature": self.signature,
            "experiment": self.experiment,
            "updated": _now(),
        }
        if fields.get("state") not in (None, *STATES):
            raise ValueError(f"unknown run state {fields['state']!r}")
        atomic_write_json(self.path / "status.json", status)
        return status

    @contextlib.contextmanager
    def lock(self):
        """Yield True while this process holds the run's lock (non-blocking; False if another process has it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def start_attempt(self, cfg: DictConfig) -> dict:
        """Write the resolved config and mark the run as running (one more attempt)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        previous = self.status()
        return self.update_status(
            state="running",
            stage=str(cfg.stage),
            attempts=previous.get("attempts", 0) + 1,
            started=_now(),
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm_job_id=_slurm_job_id() or previous.get("slurm_job_id"),
            error=None,
        )


def resolve_run(ref: str, cfg: DictConfig, what: str) -> Path:
    """A reference to a finished run or model (an ensemble member, a policy, a reward model, weights to start from)
    as a directory: a path as given, else a run signature under `paths.runs` (this experiment's folder first)."""
    path = Path(ref)
    if path.is_dir():
        return path
    root = Path(cfg.paths.runs)
    if cfg.experiment and (root / cfg.experiment / ref).is_dir():
        return root / cfg.experiment / ref
    found = sorted(glob.glob(str(root / "*" / glob.escape(ref))))
    if len(found) == 1:
        return Path(found[0])
    if found:
        raise ConfigError(f"{what} {ref!r}: several runs have that signature: {', '.join(found)}")
    raise ConfigError(f"{what} {ref!r}: not a run directory, a saved model directory, or a run signature under {root}")
