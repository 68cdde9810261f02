"""Every experiment composes at every grid point, and runs one step at scale=tiny on the fixtures (so none rots).

The full sweep of tiny one-step runs over every grid point is marked slow (`make test-slow`).
"""

import pytest
from conftest import FIXTURE_DATASETS

from rmlab.config.compose import compose, experiment_table, experiments
from rmlab.launch.grid import grid_points, grid_runs
from rmlab.launch.job import run_config
from rmlab.models.backbone import backbone_source

# What makes a cluster experiment a CPU smoke run: tiny backbones in fp32, the fixtures and synthetic benchmarks,
# one step. Key overrides, so they win over the experiment's own settings.
TINY = [
    "scale=tiny",
    "backbone.dtype=float32",
    "backbone.gradient_checkpointing=false",
    "benchmarks=synth",
    "train.max_steps=1",
    "train.batch_size=2",
    "train.grad_accum=1",
    "train.eval_every=0",
    "run.save_every=0",
    "tracking=disabled",
    "launcher=inline",
    "eval.bootstrap=0",
    "data_mix.val_pairs=2",
    "data_mix.max_length=1024",
    "rl.steps=1",
    "rl.prompts_per_step=2",
    "rl.group_size=2",
    "rl.eval_prompts=4",
    *FIXTURE_DATASETS,
]


@pytest.mark.parametrize("name", experiments())
def test_every_grid_point_composes_with_a_distinct_signature(name, experiment_grids):
    """(Each job's config and signature are the grid's fast path, equal to a full composition: test_signature.)"""
    jobs = experiment_grids[name]
    assert jobs, f"{name} has no grid"
    assert len({job.signature for job in jobs}) == len(jobs)  # each grid point is its own run
    written = set()
    for cfg in (job.cfg for job in jobs):
        backbone_source(cfg.backbone, cfg.scale)  # every backbone x scale resolves to a checkpoint
        written |= {*cfg.eval.benchmarks, *(s.name for s in cfg.data_mix.test)}
    columns = experiment_table(name).columns
    for column in columns:  # a column may be empty for some rows (a text model on images), not all
        if column.get("mean_of"):
            assert set(column.mean_of) <= {c.name for c in columns}, f"{name}: {column.name} averages unknown columns"
            continue
        assert column.metric.split("/")[0] in written, (
            f"{name}: column {column.name} reads {column.metric}, which no evaluation of any run writes"
        )


def _one_step(name, point):
    run = run_config(compose(point, experiment=name))  # the point carries the tiny overrides (fixed axes of the grid)
    assert run.status()["state"] == "done", run.status()


@pytest.fixture()
def where(tmp_path, data_root):
    return [f"paths.runs={tmp_path}", f"paths.data={data_root}", "run.progress=false"]


@pytest.mark.parametrize("name", experiments())
def test_every_experiment_runs_one_step_at_tiny_scale(name, where):
    _one_step(name, grid_points(name, [*where, *TINY])[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", experiments())
def test_every_grid_point_runs_one_step_at_tiny_scale(name, where):
    """Each job as the sweep runs it (ensembles and policies after the runs they name, which the grid links)."""
    for job in sorted(grid_runs(name, [*where, *TINY]), key=lambda j: j.is_downstream):
        run = run_config(job.cfg)
        assert run.status()["state"] == "done", run.status()
