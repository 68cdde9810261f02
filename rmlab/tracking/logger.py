"""Run logging: wandb (offline by default) with the project's naming conventions, plus the run's own JSON files.

One wandb run per run directory: project from config, group = experiment, job_type = what the run is (its stage; `sft`
for a policy's supervised warm start, which the reward-model stage trains), name = the stage's axis values, tags =
`stage=...` and the axis values (each <= 64 characters), config = the flattened resolved config plus the sweep's grid
point as one nested `sweep` key (what dashboards group by), id = signature, resume allowed (a resumed attempt, or
`rmlab eval` rescoring the run, continues it), always finished. `history.jsonl` and `summary.json` in the run
directory carry the same numbers, as a second source that needs no wandb reader. Only rank 0 logs. The API key is
never written anywhere: wandb reads it from its own environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from rmlab.config.compose import resolved
from rmlab.config.stages import stage_of
from rmlab.util.atomic import atomic_write_json, atomic_write_text

MAX_TAG = 64


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def numeric_leaves(tree: dict, prefix: str = "") -> dict:
    """The numbers of a nested dict as `prefix<a>/<b>/<c>` keys (how metrics go into a run's summary)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(numeric_leaves(v, f"{prefix}{k}/"))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def job_type(cfg) -> str:
    """wandb's job_type of a run: its stage, except that a policy's supervised warm start (`paradigm=sft`, trained by
    the reward-model stage) is `sft`, so runs a dashboard must not mix (policies and reward models; trained models
    and ensembles, which only score) never share one. `rmlab eval` continues a run under the same job_type."""
    stage = str(cfg.get("stage") or "reward_model")
    paradigm = cfg.get("paradigm") or {}
    return "sft" if stage == "reward_model" and str(paradigm.get("name")) == "sft" else stage


def logged_config(cfg: DictConfig) -> dict:
    """The config a run logs: the resolved config flattened to dotted keys (`head.layers`), and, for a job of a
    sweep, its grid point as one nested key `sweep` ({axis: value}), which wandb stores as `sweep.value.<axis>`:
    the address wandb-workspaces gives `Config("sweep.<axis>")`, so a dashboard groups by it."""
    tree = resolved(cfg)
    sweep = tree.pop("sweep", None)
    config = flatten(tree)
    if sweep:
        config["sweep"] = sweep
    return config


def axis_values(cfg: DictConfig) -> dict[str, str]:
    """The values of the keys that name a run of the config's stage (rmlab.config.stages)."""
    flat = flatten(resolved(cfg))
    return {k: str(flat[k]) for k in stage_of(cfg).axes if k in flat}


def run_name(cfg: DictConfig) -> str:
    """The stage's axis values joined by "-" (a head as `<layers>x<activation>`): `naive-2xsilu-qwen2_5_vl-tiny-
    synth_mm`, `grpo-rule-qwen2_5_vl-tiny-synth_mm`."""
    v = axis_values(cfg)
    if "head.layers" in v:
        v["head.layers"] = f"{v['head.layers']}x{v.pop('head.activation', '')}"
    return "-".join(v.values())[:128]


def tags(cfg: DictConfig) -> list[str]:
    """`stage=<stage>`, then `<node>=<value>` per axis (`backbone=qwen3`), or `<key>=<value>` where a node names
    two axes (`layers=2`, `activation=silu`)."""
    values = axis_values(cfg)
    nodes = [k.split(".")[0] for k in values]
    named = [
        f"{k.split('.')[0] if nodes.count(k.split('.')[0]) == 1 else k.split('.')[-1]}={v}" for k, v in values.items()
    ]
    return [t[:MAX_TAG] for t in dict.fromkeys([f"stage={cfg.stage}", *named])]


class RunLogger:
    """Context manager: `with RunLogger(cfg, run) as log: log.log({...}, step=n)`; wandb always finished. The run's
    stage is its wandb job_type (see job_type); its signature its id."""

    def __init__(self, cfg: DictConfig, run):
        self.cfg, self.run_dir, self.job_type = cfg, run, job_type(cfg)
        self.enabled = is_rank_zero()
        self.wandb_run = None
        self._summary: dict = {}

    def __enter__(self) -> RunLogger:
        mode = str(self.cfg.tracking.mode)
        if self.enabled and mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(
                project=self.cfg.tracking.project,
                entity=self.cfg.tracking.entity,
                group=self.cfg.experiment,
                job_type=self.job_type,
                name=run_name(self.cfg),
                tags=tags(self.cfg),
                config=logged_config(self.cfg),
                id=self.run_dir.signature,
                resume="allow",
                mode=mode,
                dir=str(self.run_dir.path),
                reinit="finish_previous",
            )
        return self

    def log(self, metrics: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.run_dir.history, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def rewind(self, step: int) -> None:
        """Forget history.jsonl's rows after `step`: a run resumed from the checkpoint of `step` logs the steps after it
        again, so each step stays once (wandb's attempts are merged the same way when read: rmlab.tracking.offline).
        A row cut by a crash mid-write goes too."""
        path = Path(self.run_dir.history)
        if not self.enabled or not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except ValueError:
                continue
        atomic_write_text(path, "".join(kept))

    def summary(self, values: dict) -> None:
        if not self.enabled:
            return
        self._summary.update(values)
        path = Path(self.run_dir.path) / "summary.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        atomic_write_json(path, {**previous, **values})
        if self.wandb_run is not None:
            self.wandb_run.summary.update(flatten(values) if isinstance(values, dict) else values)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.wandb_run is None:
            return
        run, self.wandb_run = self.wandb_run, None
        try:
            run.finish(exit_code=0 if exc_type is None else 1)
        except Exception as e:
            if exc_type is None:
                raise
            # already leaving on an error or a preemption (whose requeue may have killed wandb's service): keep that
            # reason, not wandb's; the run's history.jsonl has every number
            print(f"[rmlab] wandb could not finish the run while stopping: {type(e).__name__}: {e}", file=sys.stderr)
