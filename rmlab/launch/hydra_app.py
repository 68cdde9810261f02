"""The Hydra entry point a sweep runs: each job trains one config (`rmlab sweep` builds the command line).

A failing job records its failure in its run directory and returns it, so one bad grid point does not stop the
rest of the sweep; `rmlab sweep` reports the failures at the end and exits non-zero.
"""

from __future__ import annotations

import traceback

import hydra
from omegaconf import DictConfig

from rmlab.config.compose import project_root
from rmlab.config.schema import register

register()


@hydra.main(config_path=str(project_root() / "conf"), config_name="config", version_base="1.3")
def job(cfg: DictConfig) -> dict:
    try:
        from rmlab.train.recipe import train

        run = train(cfg)
        return {"state": "done", "run": str(run.path)}
    except Exception as e:
        traceback.print_exc()
        return {"state": "failed", "error": f"{type(e).__name__}: {e}"}
