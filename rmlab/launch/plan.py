"""`rmlab plan EXPERIMENT`: each grid point's per-GPU memory under its strategy and the launcher's GPUs, against a
GPU's memory (`launcher.gpu_mem_gb`), with one line on what to change where it does not fit. `rmlab sweep` makes the
same check before it submits anything (`--force` submits anyway). Points that run on CPUs (no GPU asked for) and
the ensemble stage (members scored one at a time, in the compute dtype) are not planned, nor yet policy runs (their
rollouts' KV cache and the frozen reference are not in the estimate); a self-compare run is planned as the SFT it
trains."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from rmlab.launch.grid import Job, grid_runs
from rmlab.runtime.memory import GIB, MemoryPlan, footprint, plan_memory


@dataclass
class PlannedMemory:
    job: Job
    plan: MemoryPlan | None  # None: not planned (why says why)
    params: int = 0
    why: str = ""

    @property
    def fits(self) -> bool:
        return self.plan is None or self.plan.fits


def plan_grid(experiment: str, overrides: list[str] = ()) -> list[PlannedMemory]:
    out, counted = [], {}
    for job in grid_runs(experiment, overrides):
        cfg = job.cfg
        if int(cfg.launcher.gpus_per_node) == 0:
            out.append(PlannedMemory(job, None, why="on CPUs (hardware=cpu)"))
            continue
        stage = str(cfg.stage)
        if stage == "ensemble":
            out.append(PlannedMemory(job, None, why="an ensemble: its members, one at a time"))
            continue
        if stage == "rl":
            out.append(PlannedMemory(job, None, why="a policy run: rollouts and the reference are not in the estimate"))
            continue
        if stage == "selfcompare":  # what it trains: its policy, fine-tuned with paradigm=sft
            cfg = OmegaConf.merge(cfg, {"paradigm": {"name": "sft"}})
        key = repr([OmegaConf.to_container(cfg[k], resolve=True) for k in ("backbone", "scale", "paradigm", "head")])
        if key not in counted:
            counted[key] = footprint(cfg)
        fp = counted[key]
        out.append(PlannedMemory(job, plan_memory(cfg, fp), params=fp.params))
    return out


def _gib(x: float) -> str:
    return f"{x / GIB:.1f}"


def plan_table(planned: list[PlannedMemory]) -> str:
    header = ["overrides", "model", "params", "strategy", "GPUs", "weights", "grads", "optim", "activ", "total", "fits"]
    rows = []
    for p in planned:
        cfg = p.job.cfg
        model = f"{cfg.backbone.family} {cfg.scale.name}"
        point = " ".join(p.job.point) or "(defaults)"
        if p.plan is None:
            rows.append([point, model, "", "", "", "", "", "", "", "", f"- {p.why}"])
            continue
        m = p.plan
        verdict = f"yes ({_gib(m.limit)} GiB)" if m.fits else f"NO: {m.advice(cfg)}"
        rows.append([point, model, f"{p.params / 1e9:.2f}B", m.strategy, str(m.processes), _gib(m.weights),
                     _gib(m.gradients), _gib(m.optimizer), _gib(m.activations), _gib(m.total), verdict])  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines) + "\n(GiB per GPU; see rmlab/runtime/memory.py for what each column counts)\n"
