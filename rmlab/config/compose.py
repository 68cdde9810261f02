"""Composing the config tree, and turning Hydra/OmegaConf errors into one line that names the valid choices.

The config tree (`conf/`) and the experiments (`experiments/`) live at the project root; both are found from the
package's location, never from the working directory, so `rmlab` works from any folder. An ad-hoc sweep
(`rmlab train -m`) is an experiment too: its spec is written beside its runs, `<paths.runs>/<name>/experiment.yaml`
(rmlab.launch.adhoc), and every command that takes an experiment name finds it there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from rmlab.config.schema import PathsConfig, register
from rmlab.errors import ConfigError


def project_root() -> Path:
    """The folder holding `conf/` and `experiments/`: RMLAB_ROOT if set, else the checkout the package lives in."""
    root = Path(os.environ.get("RMLAB_ROOT") or Path(__file__).resolve().parents[2])
    if not (root / "conf" / "config.yaml").exists():
        raise ConfigError(
            f"no conf/config.yaml under {root}; install rmlab editable (pip install -e) or set RMLAB_ROOT"
        )
    return root


def experiments() -> list[str]:
    return sorted(p.stem for p in (project_root() / "experiments").glob("*.yaml"))


ADHOC_SPEC = "experiment.yaml"  # an ad-hoc sweep's spec, in its runs folder (rmlab.launch.adhoc writes it)


def runs_root(overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """`paths.runs` as the command line sets it (the schema's default otherwise), found without composing: where an
    ad-hoc sweep's spec is looked for."""
    value = PathsConfig.runs
    for text in overrides:
        key, sep, found = text.partition("=")
        if sep and key.lstrip("+") == "paths.runs":
            value = found.strip("'\"")
    if "${" in value:  # an interpolation (an environment variable, another path): let OmegaConf resolve it
        value = str(compose([t for t in overrides if t.lstrip("+").startswith("paths.")]).paths.runs)
    return Path(value)


def adhoc_spec(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> dict | None:
    """The recorded spec of the ad-hoc sweep named `experiment` (rmlab.launch.adhoc), or None: an experiment file of
    that name, or no such sweep under `paths.runs`."""
    if experiment in experiments():
        return None
    path = runs_root(overrides) / experiment / ADHOC_SPEC
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _unknown(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> ConfigError:
    root = runs_root(overrides)
    adhoc = sorted(p.parent.name for p in root.glob(f"*/{ADHOC_SPEC}")) if root.is_dir() else []
    return ConfigError(
        f"unknown experiment {experiment!r}; known: {', '.join(experiments())}"
        + (f"; ad-hoc sweeps under {root}: {', '.join(adhoc)}" if adhoc else "")
        + f" (an ad-hoc sweep is looked for as {root / experiment / ADHOC_SPEC}; `rmlab train -m` writes it)"
    )


def experiment_file(experiment: str) -> Path:
    if experiment not in experiments():
        raise _unknown(experiment)
    return project_root() / "experiments" / f"{experiment}.yaml"


def experiment_table(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The table spec of an experiment, read from its file (composed configs never carry it), or from an ad-hoc
    sweep's spec."""
    spec = adhoc_spec(experiment, overrides)
    if spec is not None:
        table = OmegaConf.create(spec["table"]) if spec.get("table") else None
    elif experiment in experiments():
        table = OmegaConf.load(experiment_file(experiment)).get("table")
    else:
        raise _unknown(experiment, overrides)
    if table is None:
        raise ConfigError(f"experiment {experiment} has no table: spec")
    return table


def base_overrides(experiment: str | None, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What every composition adds: the project root on the search path, and the experiment if any (its file; for an
    ad-hoc sweep, the experiment file it was made on, its recorded overrides and its name)."""
    out = [f"hydra.searchpath=[file://{project_root()}]"]
    if experiment:
        if experiment in experiments():
            out.append(f"+experiments={experiment}")
        else:
            spec = adhoc_spec(experiment, overrides)
            if spec is None:
                raise _unknown(experiment, overrides)
            if spec.get("base"):
                out.append(f"+experiments={spec['base']}")
            out += [*(spec.get("overrides") or []), f"experiment={experiment}"]
    return out


def compose(
    overrides: list[str] | tuple[str, ...] = (),
    experiment: str | None = None,
    with_hydra: bool = False,
    locate: list[str] | tuple[str, ...] | None = None,
) -> DictConfig:
    """The fully composed config (typed, interpolations unresolved) for one run; `with_hydra` keeps `hydra.*`.
    An experiment's `table:` is dropped: it describes the experiment, not a run (rmlab.results reads it). `locate`:
    the overrides that say where an ad-hoc sweep's spec is (its `paths.runs`), when not `overrides` themselves."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    register()
    head = base_overrides(experiment, overrides if locate is None else locate)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(project_root() / "conf"), version_base="1.3"):
            cfg = hydra_compose("config", overrides=[*head, *overrides], return_hydra_config=with_hydra)
    except Exception as e:  # Hydra wraps OmegaConf's errors; unwrap them into one line
        raise ConfigError(describe_config_error(e)) from None
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.pop("table", None)
    return cfg


def describe_config_error(error: BaseException) -> str:
    """One line from a Hydra or OmegaConf error chain.

    OmegaConf's validation errors carry the offending key (`full_key`) and, for enums, the valid values; Hydra's
    own errors (an unknown group option) list the options over several lines, which are joined here.
    """
    chain = []
    e: BaseException | None = error
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        key = getattr(e, "full_key", None)
        if key:
            return f"{key}: {str(e).strip().splitlines()[0]}"
    message = str(chain[0]).strip()
    lines = message.splitlines() or [type(chain[0]).__name__]
    first = lines[0]
    header = next((i for i, line in enumerate(lines) if line.startswith("Available options")), None)
    if header is not None:
        options = []
        for line in lines[header + 1 :]:
            if not line.strip() or not line[0].isspace():
                break
            options.append(line.strip())
        first = f"{first}; available: {', '.join(options)}"
    return re.sub(r"\s+", " ", first)


def resolved(cfg: DictConfig) -> dict:
    """The config as plain containers with every interpolation resolved (enums as their values)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
