"""An experiment's grid: the overrides of each job its sweep launches, and the run directory each one maps to."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from rmlab.config.compose import adhoc_spec, compose, project_root
from rmlab.errors import ConfigError
from rmlab.launch.signature import signature_of
from rmlab.runtime.run_dir import RunDir


def sweep_params(experiment: str, overrides: list[str] = ()) -> dict[str, str]:
    """`hydra.sweeper.params` of the experiment (after command-line overrides), as key -> sweep string; for an ad-hoc
    sweep (`rmlab train -m`), the axes its spec recorded."""
    spec = adhoc_spec(experiment, overrides)
    if spec is not None:
        return {k: str(v) for k, v in (spec.get("sweep") or {}).items()}
    cfg = compose([*overrides], experiment=experiment, with_hydra=True)
    params = cfg.hydra.sweeper.params or {}
    return {k: str(v) for k, v in OmegaConf.to_container(params, resolve=False).items()}


def sweep_key(key: str) -> str:
    """The name a swept key is logged under, in the config's `sweep` node: without Hydra's `+`/`~` prefixes and with
    "/" for "." (`run.seed` -> `run/seed`, `+variant/paradigms` -> `variant/paradigms`), so each axis is one key inside
    `sweep` and `sweep.<name>` addresses it (in tables, and in wandb as `config:sweep.value.<name>`)."""
    return key.lstrip("+~").replace(".", "/")


def _grid(experiment: str, overrides: list[str] = ()) -> tuple[list[str], list[list[str]]]:
    """The fixed command-line overrides, and each job's swept part: the cartesian product of the sweep params,
    expanded as Hydra's basic sweeper does. A command-line override of a swept key (`head=linear`) replaces that
    axis, as in a Hydra multirun."""
    parser = OverridesParser.create()
    parsed_cli = parser.parse_overrides(list(overrides))
    fixed = [text for text, o in zip(overrides, parsed_cli, strict=True) if not o.is_sweep_override()]
    axes = dict(sweep_params(experiment, fixed))
    for o in parsed_cli:
        key = o.get_key_element()
        if o.is_sweep_override():
            axes[key] = ",".join(o.sweep_string_iterator())
        else:
            axes.pop(key, None)
    choices = []
    for o in parser.parse_overrides([f"{k}={v}" for k, v in axes.items()]):
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        choices.append([f"{o.get_key_element()}={v}" for v in values])
    return fixed, [list(point) for point in itertools.product(*choices)] if choices else [[]]


def grid_points(experiment: str, overrides: list[str] = ()) -> list[list[str]]:
    """Each job's overrides: the fixed command-line ones, then its point of the sweep (see _grid)."""
    fixed, points = _grid(experiment, overrides)
    return [[*fixed, *point] for point in points]


def _is_plain(override) -> bool:
    """A `key=value` override of an existing key that is not a config group (it can be applied to a composed
    config directly, as Hydra would apply it after composing the defaults)."""
    if override.is_add() or override.is_delete() or override.is_force_add() or override.is_sweep_override():
        return False
    key = override.get_key_element()
    if key.startswith("hydra.") or "@" in key:
        return False
    return not (project_root() / "conf" / key.replace(".", "/")).is_dir()


class Job:
    """One job of a sweep: its overrides, its config container and signature (cheap), its DictConfig (built when
    asked for: submitting or training needs it, tables and status do not) and its run directory. `sweep` is its point
    of the sweep ({sweep_key: value}): it goes into the DictConfig (the config the job runs and logs), not into the
    container (what the point composes to), and is never hashed."""

    def __init__(
        self,
        point,
        experiment,
        base: DictConfig,
        base_container: dict,
        plain: list[tuple[str, object]],
        sweep: dict | None = None,
    ):
        self.point, self.experiment, self.sweep = point, experiment, dict(sweep or {})
        self._base, self._plain, self._cfg = base, list(plain), None
        self.container = copy.deepcopy(base_container)
        for key, value in plain:
            _set_dotted(self.container, key, _like(_get_dotted(base_container, key), value))
        self._place()

    def _place(self) -> None:
        self.signature = signature_of(self.container)
        self.run = RunDir.under(self.value("paths.runs"), self.container["experiment"], self.signature)

    def set(self, dotted: str, value) -> None:
        """Change one value of this job's config (its signature and run directory follow)."""
        _set_dotted(self.container, dotted, value)
        self._plain.append((dotted, value))
        self._cfg = None
        self._place()

    @property
    def is_downstream(self) -> bool:
        """Does this job read other runs (an ensemble of reward models, a policy trained with them)? Such jobs run
        after the sweep's others."""
        return str(self.container.get("stage") or "reward_model") in DOWNSTREAM_STAGES

    @property
    def cfg(self) -> DictConfig:
        if self._cfg is None:
            cfg = self._base.copy()
            for key, value in self._plain:
                OmegaConf.update(cfg, key, value, merge=True)
            if self.sweep:
                OmegaConf.update(cfg, "sweep", self.sweep, merge=False)
            self._cfg = cfg
        return self._cfg

    def value(self, dotted: str):
        """A config value of this job, resolved (row keys of a table); `sweep.<name>`: its value of that axis."""
        if dotted.startswith("sweep."):
            return self.sweep.get(dotted.removeprefix("sweep."))
        raw = _get_dotted(self.container, dotted)
        if isinstance(raw, str) and "${" in raw:
            return OmegaConf.select(self.cfg, dotted)
        return raw


def _get_dotted(tree, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _has_dotted(tree, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _set_dotted(tree, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def _like(current, value):
    """An override's value as the typed config would store it (1 in a float field is 1.0)."""
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def grid_runs(experiment: str, overrides: list[str] = ()) -> list[Job]:
    """Every job of the experiment's sweep.

    Hydra composes once per distinct set of group choices; each job's plain key=value overrides are applied to a
    copy of that config's container, which is all its signature needs (a 1,000-job seed or learning-rate grid costs
    one composition, not 1,000).
    """
    parser = OverridesParser.create()
    known: dict[str, object] = {}  # each distinct override string parsed once (Hydra's parser is slow)
    base: dict[tuple, tuple[DictConfig, dict]] = {}
    checked: set[tuple] = set()
    jobs = []
    fixed, points = _grid(experiment, overrides)
    for swept in points:
        point = [*fixed, *swept]
        for text in point:
            if text not in known:
                known[text] = parser.parse_overrides([text])[0]
        parsed = [known[text] for text in point]
        plain = [(o.get_key_element(), o.value()) for o in parsed if _is_plain(o)]
        structural = tuple(text for text, o in zip(point, parsed, strict=True) if not _is_plain(o))
        if structural not in base:
            cfg = compose(list(structural), experiment=experiment, locate=overrides)
            base[structural] = (cfg, OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
        for key, _ in plain:  # a key the config lacks (`train.seed`): composing the point says so, in one line
            if (structural, key) not in checked and not _has_dotted(base[structural][1], key):
                compose(point, experiment=experiment, locate=overrides)
            checked.add((structural, key))
        sweep = {sweep_key(known[t].get_key_element()): known[t].value() for t in swept}
        jobs.append(Job(point, experiment, *base[structural], plain, sweep))
    _link_references(jobs)
    return jobs


def _is_override(ref: str) -> bool:
    return "=" in ref and not Path(ref).exists()


# Config fields that name other runs: a run directory, a model directory, a signature, or a grid override.
REFERENCES = ("ensemble.members", "ensemble.text_member", "rl.policy", "rl.reward_model", "selfcompare.policy")
DOWNSTREAM_STAGES = ("rl", "selfcompare", "ensemble")  # the stages that read other runs


def _link_references(jobs: list[Job]) -> None:
    """A downstream job may name the runs it reads by a grid override (`+variant/ensembles=qwen2_5_vl`,
    `rl.reward_model: "+variant/rl_rewards=reward_model"`): the job of this sweep whose overrides are this one's
    with that one swapped in. The reference is replaced by that job's signature, so the downstream job's own
    signature changes whenever what it reads does."""
    by_point = {frozenset(j.point): j for j in jobs}

    def linked(job: Job, field: str, ref: str) -> str:
        if not _is_override(ref):
            return ref
        key = ref.split("=", 1)[0]
        point = frozenset([*(o for o in job.point if o.split("=", 1)[0] != key), ref])
        found = by_point.get(point)
        if found is None or found.is_downstream:
            raise ConfigError(
                f"job {' '.join(job.point)}: {field} {ref!r} names no upstream job of this sweep (a training job, not"
                f" one that itself reads others; looked for overrides {' '.join(sorted(point))})"
            )
        return found.signature

    for job in jobs:
        if not job.is_downstream:
            continue
        for field in REFERENCES:
            value = _get_dotted(job.container, field)
            if isinstance(value, list) and any(_is_override(str(v)) for v in value):
                job.set(field, [linked(job, field, str(v)) for v in value])
            elif value and not isinstance(value, list) and _is_override(str(value)):
                job.set(field, linked(job, field, str(value)))
