"""Config composition: every axis composes, and every kind of typo fails with one line naming the valid choices."""

import subprocess
import sys

import pytest

from rmlab.config.compose import compose, experiment_table, experiments, resolved
from rmlab.errors import ConfigError
from rmlab.models.backbone import backbone_source

FAMILIES = ["qwen2_5_vl", "qwen2_vl", "internvl3", "internvl2", "qwen2_5", "qwen3"]


def test_default_config_is_the_embedded_default():
    cfg = resolved(compose())
    assert cfg["paradigm"]["name"] == "naive"
    assert (cfg["head"]["layers"], cfg["head"]["activation"]) == (2, "silu")  # BaseReward's head
    assert cfg["backbone"]["family"] == "qwen2_5_vl" and cfg["scale"]["name"] == "tiny"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_backbone_composes_at_tiny(family):
    cfg = compose([f"backbone={family}", "scale=tiny"])
    assert backbone_source(cfg.backbone, cfg.scale) == "tiny"


@pytest.mark.parametrize(
    ("family", "scale", "hub_id"),
    [
        ("qwen2_5_vl", "7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("qwen2_5_vl", "32b", "Qwen/Qwen2.5-VL-32B-Instruct"),
        ("qwen2_vl", "7b", "Qwen/Qwen2-VL-7B-Instruct"),
        ("internvl3", "1b", "OpenGVLab/InternVL3-1B-hf"),
        ("internvl2", "8b", "OpenGVLab/InternVL2-8B"),
        ("qwen3", "8b", "Qwen/Qwen3-8B"),
    ],
)
def test_backbone_and_scale_resolve_to_a_hub_id(family, scale, hub_id):
    cfg = compose([f"backbone={family}", f"scale={scale}"])
    assert backbone_source(cfg.backbone, cfg.scale) == hub_id


def test_a_local_path_overrides_the_hub_id():
    cfg = compose(["backbone=qwen3", "scale=8b", "backbone.path=/models/my-qwen3"])
    assert backbone_source(cfg.backbone, cfg.scale) == "/models/my-qwen3"


def test_a_scale_the_family_lacks_names_the_sizes_it_has():
    cfg = compose(["backbone=qwen2_vl", "scale=3b"])
    with pytest.raises(ConfigError, match=r"qwen2_vl has no scale '3b'; available: 7b, tiny"):
        backbone_source(cfg.backbone, cfg.scale)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "head.activation=sigmoidd",
            r"head\.activation: Invalid value 'sigmoidd', expected one of \[none, tanh, silu, relu\]",
        ),
        ("head.activaton=silu", r"head\.activaton: Key 'activaton' not in 'HeadConfig'"),
        ("head=mlp9", r"Could not find 'head/mlp9'; available: linear, mlp2_none, .*mlp5_silu$"),
        (
            "backbone=qwen9",
            r"Could not find 'backbone/qwen9'; available: internvl2, internvl3, qwen2_5, qwen2_5_vl, qwen2_vl, qwen3$",
        ),
        ("train.lr=fast", r"train\.lr: Value 'fast' of type 'str' could not be converted to Float"),
        ("backbone.dtype=fp8", r"backbone\.dtype: Invalid value 'fp8', expected one of \[float32, bfloat16, float16\]"),
    ],
)
def test_config_errors_are_one_line_and_name_the_choices(override, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        compose([override])
    assert "\n" not in str(info.value)


def test_unknown_experiment_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown experiment 'demoo'; known: .*demo"):
        compose([], experiment="demoo")


def test_every_experiment_composes_and_its_table_stays_in_its_file():
    for name in experiments():
        cfg = compose([], experiment=name)
        assert cfg.experiment == name
        assert "table" not in cfg  # a run's config (and its wandb config) never carries the table
        assert experiment_table(name).columns, f"experiments/{name}.yaml has no table spec"


def test_cli_config_typo_exits_nonzero_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "rmlab.cli", "train", "head.activation=sigmoidd"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rmlab: error: head.activation: Invalid value 'sigmoidd', expected one of [none, tanh, silu, relu]"
    ]
