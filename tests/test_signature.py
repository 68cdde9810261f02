"""The signature: same computation, same run; anything a run computes with changes it; where files live, labels,
catalogues, tracking and a new field with a default do not."""

import copy
import dataclasses
import enum
import typing

import pytest
from omegaconf import OmegaConf

from rmlab.config import schema
from rmlab.config.compose import compose
from rmlab.config.stages import STAGES
from rmlab.launch import signature as signature_module
from rmlab.launch.grid import grid_runs
from rmlab.launch.signature import EXCLUDED, run_dir, signature, signature_of, signature_payload


def sig(*overrides):
    return signature(compose(list(overrides)))


def test_same_config_same_signature():
    assert sig("head=mlp3_silu") == sig("head.layers=3")  # the same config, reached two ways


def test_what_changes_the_run_changes_the_signature():
    base = sig()
    for o in [
        "train.lr=1e-4",
        "head=linear",
        "backbone=qwen2_vl",
        "run.seed=1",
        "paradigm.center_coef=0.01",
        "data_mix=synth_all",
        "experiment=other",
        "train.schedule=constant",
        "hardware=8xh100",  # bf16 compute
        "data_mix.train.0.path=/elsewhere/other.parquet",  # another file is other data
    ]:
        assert sig(o) != base, o


def test_where_files_live_labels_catalogues_and_watching_do_not():
    base = sig()
    for o in [
        "paths.runs=/elsewhere/runs",
        "paths.data=/scratch/data",
        "data_mix.synth.dir=/scratch/synth",
        "tracking=online",
        "run.progress=false",
        "run.save_every=7",
        "run.threads=3",
        "run.keep_checkpoints=5",
        "train.eval_every=7",
        "eval.batch_size=3",
        "eval.benchmarks=[vlrb]",
        "launcher=slurm",
        "launcher.timeout_min=5",
        "label=Something else",
        "backbone.hub_ids={7b:someone/another-7b}",  # (Hydra keys cannot start with a digit)
        "datasets.rlaif_v.path=/local/copy",
    ]:
        assert sig(o) == base, o


def test_each_stage_hashes_only_what_it_reads():
    rm, rl = [], ["stage=rl"]
    assert sig(*rm, "rl.lr=1") == sig(*rm) and sig(*rm, "selfcompare.max_questions=3") == sig(*rm)
    assert sig(*rl, "train.lr=1") == sig(*rl) and sig(*rl, "head=linear") == sig(*rl)
    assert sig(*rl, "rl.lr=1") != sig(*rl) and sig(*rl, "run.seed=1") != sig(*rl)
    ens = ["ensemble=average"]
    assert sig(*ens, "backbone=qwen3") == sig(*ens) and sig(*ens, "ensemble.standardize=false") != sig(*ens)


def test_data_paths_are_hashed_as_written():
    payload = signature_payload(compose(["paths.data=/some/where"]))
    assert payload["data_mix"]["train"][0]["path"] == "${data_mix.synth.dir}/rlaif_v/train.parquet"
    assert "dir" not in payload["data_mix"]["synth"] and "paths" not in payload


def test_run_directory_is_runs_experiment_signature(tmp_path):
    cfg = compose([f"paths.runs={tmp_path}", "experiment=abl"])
    assert run_dir(cfg).path == tmp_path / "abl" / signature(cfg)


def _other_value(value, tp):
    """A different valid value for a field of type tp (None when there is no obvious one)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if args and type(None) in args:
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(m.value for m in tp if m.value != value)
    if tp is bool:
        return not value
    if tp is int:
        return (value or 0) + 1
    if tp is float:
        return (value or 0.0) * 2 + 0.5
    if tp is str:
        return f"{value}-changed"
    if origin is list:
        return [*value, "extra"] if args and args[0] is str else None
    if origin is dict:
        return {**value, "extra": "1"}
    return None


def _leaves(cls, prefix=""):
    """(dotted key, type) of every leaf field of a schema dataclass."""
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp


def _get(tree, dotted):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _set(tree, dotted, value):
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = value


@pytest.mark.parametrize("stage", list(STAGES))
def test_changing_any_field_a_stage_reads_changes_its_signature(stage):
    """Every leaf of every node the stage reads, changed one at a time on the config container, moves the signature;
    the excluded keys (and only they) leave it."""
    base = OmegaConf.to_container(compose([f"stage={stage}"]), resolve=False, enum_to_str=True)
    checked = 0
    for node in STAGES[stage].nodes:
        hints = typing.get_type_hints(schema.RMLabConfig)
        pairs = _leaves(hints[node], f"{node}.") if dataclasses.is_dataclass(hints[node]) else [(node, hints[node])]
        for key, tp in pairs:
            if key == "stage" or key.startswith("data_mix.synth"):  # stage: another stage; synth: optional node
                continue
            value = _other_value(_get(base, key), tp)
            if value is None:
                continue
            changed = copy.deepcopy(base)
            _set(changed, key, value)
            moved = signature_of(changed) != signature_of(base)
            excluded = any(key == e or key.startswith(e + ".") for e in EXCLUDED)
            assert moved != excluded, (key, "excluded" if excluded else "read", value)
            checked += 1
    assert checked > 10


def test_a_new_field_with_a_default_renames_no_run(monkeypatch, experiment_grids):
    """A field added to the schema with a default (here train.new_knob) leaves every experiment's every signature as
    it was; setting it renames the run. (Composition with the field gives each config as before plus the field, as
    checked on one grid point per experiment; every job's config then gets it the same way.)"""
    grids = experiment_grids
    before = {name: [job.signature for job in jobs] for name, jobs in grids.items()}

    @dataclasses.dataclass
    class TrainPlus(schema.TrainConfig):
        new_knob: float = 0.5

    @dataclasses.dataclass
    class ConfigPlus(schema.RMLabConfig):
        train: TrainPlus = dataclasses.field(default_factory=TrainPlus)

    monkeypatch.setattr(schema, "RMLabConfig", ConfigPlus)
    after = {}
    for name, jobs in grids.items():
        first = OmegaConf.to_container(compose(jobs[0].point, experiment=name), resolve=False, enum_to_str=True)
        assert first["train"].pop("new_knob") == 0.5 and first == jobs[0].container
        after[name] = []
        for job in jobs:
            container = copy.deepcopy(job.container)
            container["train"]["new_knob"] = 0.5
            after[name].append(signature_of(container))
    assert after == before
    assert sig("train.new_knob=0.7") != sig()


def test_a_changed_default_renames_the_runs_that_relied_on_it(monkeypatch):
    leaves_it, sets_it, rl_run = sig(), sig("train.lr=1e-4"), sig("stage=rl")
    monkeypatch.setitem(signature_module.CHANGED_DEFAULTS, "train.lr", 1)
    assert sig() != leaves_it  # it computed with the old default: no longer the same run
    assert sig("train.lr=1e-4") == sets_it  # it said what it wanted
    assert sig("stage=rl") == rl_run  # a stage that never reads train.lr


def test_the_grid_fast_path_gives_each_job_the_signature_of_a_full_composition(tmp_path):
    overrides = [
        f"paths.runs={tmp_path}",
        "train.lr=1",
        "head.activation=tanh",
        "run.seed=0,1",
        "data_mix.max_length=300",
        "backbone.lora.target_modules=[q_proj,v_proj]",
    ]
    jobs = grid_runs("demo", overrides)
    assert len(jobs) == 6
    for job in jobs:
        full = compose(job.point, experiment="demo")
        assert job.signature == signature(full), job.point
        assert job.run.path == tmp_path / "demo" / signature(full)
        assert job.cfg.train.lr == 1.0 and job.value("train.lr") == 1.0  # the float field keeps its type
