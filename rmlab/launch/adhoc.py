"""`rmlab train -m`: Hydra's multirun habit, as an ad-hoc sweep.

`rmlab train -m head=linear,mlp2_silu train.max_steps=20` is a sweep of those overrides, run by the same planner,
launchers, skip-done and signatures as `rmlab sweep`. Its runs are grouped under `experiment=NAME` (default `adhoc`),
and its spec is written beside them, `<paths.runs>/<NAME>/experiment.yaml`: the experiment file it was made on (`-e`),
the fixed overrides, the swept axes (as an experiment file's `hydra.sweeper.params`), and a table whose rows are the
swept keys (seeds averaged) and whose columns are each test source's metric and each benchmark's headline metric.
Every command that takes an experiment (`rmlab sweep|status|plan|tables|dashboard NAME`) finds it there
(rmlab.config.compose), so the same grid, with the same signatures, is rebuilt from it. `-m` again under the same name
replaces the spec (one line says so when the sweep is another); runs already done are never run again.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from rmlab.config.compose import ADHOC_SPEC, experiments, runs_root
from rmlab.errors import ConfigError
from rmlab.eval.benchmarks import BENCHMARKS
from rmlab.launch.grid import Job, grid_runs, sweep_key
from rmlab.util.atomic import atomic_write_text

DEFAULT_NAME = "adhoc"
SEED = "run.seed"  # the key seeds are averaged over (a swept seed is not a row of the table)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def sweeps_in(overrides: list[str]) -> list[str]:
    """The overrides that are sweeps (`head=linear,mlp3_silu`, `run.seed=range(3)`): what `-m` runs one job per value
    of (without -m, Hydra's composition would refuse them)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # not Hydra syntax: composition says what is wrong
        return []
    return [text for text, o in zip(overrides, parsed, strict=True) if o.is_sweep_override()]


def split_name(overrides: list[str]) -> tuple[str, list[str]]:
    """The sweep's name (`experiment=NAME`, default `adhoc`) and the other overrides."""
    parser = OverridesParser.create()
    name, rest = DEFAULT_NAME, []
    for text, o in zip(overrides, parser.parse_overrides(list(overrides)), strict=True):
        if o.get_key_element().lstrip("+") != "experiment":
            rest.append(text)
            continue
        if o.is_sweep_override():
            raise ConfigError(f"{text}: an ad-hoc sweep has one name; sweep the other keys")
        name = str(o.value())
    if not _NAME.fullmatch(name):
        raise ConfigError(f"experiment={name}: a sweep's name is letters, digits, '_', '-' and '.'")
    if name in experiments():
        raise ConfigError(
            f"experiment={name} is experiments/{name}.yaml: run its grid with `rmlab sweep {name} [overrides]`, or "
            "give the ad-hoc sweep a name of its own"
        )
    return name, rest


def spec_path(name: str, overrides: list[str]) -> Path:
    return runs_root(overrides) / name / ADHOC_SPEC


def record(overrides: list[str], base: str | None = None, command: str = "") -> tuple[str, list[str]]:
    """Write the spec of the ad-hoc sweep these `rmlab train -m` overrides ask for; return its name and the overrides
    (without `experiment=`) that `rmlab sweep NAME` takes to run it."""
    name, rest = split_name(overrides)
    if base is not None and base not in experiments():
        raise ConfigError(f"unknown experiment {base!r}; known: {', '.join(experiments())}")
    parsed = OverridesParser.create().parse_overrides(list(rest))
    fixed = [text for text, o in zip(rest, parsed, strict=True) if not o.is_sweep_override()]
    sweep = {o.get_key_element(): ",".join(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()}
    spec = {
        "experiment": name,
        "command": command or "rmlab train -m",
        "base": base,
        "overrides": fixed,
        "sweep": sweep,
    }
    path = spec_path(name, rest)
    previous = yaml.safe_load(path.read_text()) if path.is_file() else None
    _write(path, spec)  # the grid is composed from the spec (the table's columns need its jobs)
    try:
        spec["table"] = table_spec(name, sweep, grid_runs(name, rest))
    except Exception:  # a sweep that does not compose leaves the spec it replaced, or none
        if previous is None:
            path.unlink()
            with contextlib.suppress(OSError):  # the folder made for it, unless something else is there
                path.parent.rmdir()
        else:
            _write(path, previous)
        raise
    _write(path, spec)
    if previous and any(previous.get(k) != spec[k] for k in ("base", "overrides", "sweep")):
        was = " ".join([*previous.get("overrides", []), *(f"{k}={v}" for k, v in previous.get("sweep", {}).items())])
        print(f"[rmlab] {name}: replaced the sweep recorded in {path} (it was: {was or 'one run'})", file=sys.stderr)
    return name, rest


def _write(path: Path, spec: dict) -> None:
    header = (
        "# An ad-hoc sweep, written by `rmlab train -m` (rmlab/launch/adhoc.py): `rmlab sweep|status|tables|dashboard "
        f"{spec['experiment']}` read it;\n# `-m` again under this name replaces it.\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def table_spec(name: str, sweep: dict[str, str], jobs: list[Job]) -> dict:
    """Rows: the swept keys (`sweep.<axis>`) but the seed; columns: what the grid's runs measure (each test source's
    pair accuracy, or exact match for policies, and each benchmark's first headline metric)."""
    axes = [sweep_key(k) for k in sweep]
    rows = [f"sweep.{a}" for a in axes if a != sweep_key(SEED)]
    columns: dict[str, None] = {}
    for job in jobs:
        c = job.container
        stage = str(c.get("stage") or "reward_model")
        policy = stage in ("rl", "selfcompare") or (c.get("paradigm") or {}).get("name") == "sft"
        for source in (c.get("data_mix") or {}).get("test") or []:
            columns.setdefault(f"{source['name']}/{'exact_match' if policy else 'pair_accuracy'}")
        for bench in (c.get("eval") or {}).get("benchmarks") or []:
            if bench in BENCHMARKS:
                columns.setdefault(f"{bench}/{BENCHMARKS[bench].headline[0]}")
    if not columns:
        raise ConfigError(f"ad-hoc sweep {name}: its runs measure nothing (no test source, no benchmark) to tabulate")
    return {
        "title": f"Ad-hoc sweep {name}: " + (" x ".join(k.lstrip("+~") for k in sweep) or "one run"),
        "rows": rows,
        "seeds": SEED,
        "columns": [{"name": m, "metric": m} for m in columns],
    }
