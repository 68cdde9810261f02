"""An experiment's grid: the overrides of each job its sweep launches, and the run directory each one maps to."""

from __future__ import annotations

import itertools

from omegaconf import DictConfig, OmegaConf

from rmlab.config.compose import compose
from rmlab.launch.run_dir import RunDir


def sweep_params(experiment: str, overrides: list[str] = ()) -> dict[str, str]:
    """`hydra.sweeper.params` of the experiment (after command-line overrides), as key -> sweep string."""
    cfg = compose([*overrides], experiment=experiment, with_hydra=True)
    params = cfg.hydra.sweeper.params or {}
    return {k: str(v) for k, v in OmegaConf.to_container(params, resolve=False).items()}


def grid_points(experiment: str, overrides: list[str] = ()) -> list[list[str]]:
    """Each job's overrides: the cartesian product of the sweep params, expanded as Hydra's basic sweeper does.

    A command-line override of a swept key (`head=linear`) replaces that axis, as in a Hydra multirun.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed = [o for o in overrides if "," not in o.split("=", 1)[-1]]
    swept_cli = [o for o in overrides if o not in fixed]
    axes = dict(sweep_params(experiment, fixed))
    for o in parser.parse_overrides(swept_cli):
        axes[o.get_key_element()] = ",".join(o.sweep_string_iterator())
    for o in parser.parse_overrides(fixed):
        axes.pop(o.get_key_element(), None)
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in axes.items()])
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [[*fixed, *point] for point in itertools.product(*choices)] if choices else [list(fixed)]


def grid_runs(experiment: str, overrides: list[str] = ()) -> list[tuple[list[str], DictConfig, RunDir]]:
    """(job overrides, composed config, run directory) for every job of the experiment's sweep."""
    jobs = []
    for point in grid_points(experiment, overrides):
        cfg = compose(point, experiment=experiment)
        jobs.append((point, cfg, RunDir.for_config(cfg)))
    return jobs
