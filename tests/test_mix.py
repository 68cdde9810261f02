"""Data mixes: BaseReward's final mix built from the seven fixture sources trains, and its logged composition follows
the weights; weighting, locations and the encoding cache work as documented."""

import json

import pytest
from conftest import FIXTURE_DATASETS

from rmlab.config.compose import compose
from rmlab.data.adapters import load_pairs
from rmlab.data.mix import apply_weight, resolve_sources
from rmlab.data.validate import Validator
from rmlab.errors import ConfigError
from rmlab.launch.job import run_config

LOCATIONS = FIXTURE_DATASETS  # the seven sources of the final mix are among them
WEIGHTS = {"rlaif_v": 2.0, "ultra_hard": 0.5}  # everything else at 1


def test_basereward_mix_of_the_seven_fixtures_trains_and_logs_its_composition(tmp_path):
    weights = [
        f"data_mix.train.{i}.weight={WEIGHTS[n]}"
        for i, n in enumerate(["rlaif_v", "mmpr", "r1_reward", "tulu3", "olmo2", "ultra_hard", "others"])
        if n in WEIGHTS
    ]
    cfg = compose(
        [
            "data_mix=basereward",
            *LOCATIONS,
            *weights,
            f"paths.runs={tmp_path}",
            f"paths.cache={tmp_path}/c",
            "data_mix.val_pairs=0",
            "data_mix.max_length=1024",
            "data_mix.streaming=false",  # held: exact counts per source (a stream draws by weight: test_stream.py)
            "train.max_steps=2",
            "train.batch_size=4",
            "tracking=disabled",
            "run.progress=false",
        ]
    )
    run = run_config(cfg)
    assert run.status()["state"] == "done"
    summary = json.loads((run.path / "summary.json").read_text())
    # worked out independently: each fixture's valid pairs (its adapter, then the checks), times the weight
    expected, validator = {}, Validator()
    for src in resolve_sources(cfg.data_mix.train, cfg.datasets):
        pairs = load_pairs(src.adapter, src.path, image_root=src.image_root, options=src.options)
        n = sum(validator.keep(p) for p in pairs)
        expected[src.name] = round(n * WEIGHTS.get(src.name, 1.0))
    assert summary["data/composition"] == dict(sorted(expected.items()))
    assert expected["rlaif_v"] == 6 and expected["ultra_hard"] == 3
    # the generic fixture holds one pair twice, in two of TRL's layouts: counted, not trained on twice
    assert summary["data/validation"]["pairs_skipped"] == {"duplicate": 1}


def test_weights_keep_a_seeded_fraction_or_repeat():
    items = list(range(10))
    assert apply_weight(items, 1.0, None, "s") == items
    assert apply_weight(items, 2.0, None, "s") == items + items
    half = apply_weight(items, 0.5, None, "s")
    assert len(half) == 5 and half == apply_weight(items, 0.5, None, "s") and set(half) < set(items)
    assert len(apply_weight(items, 1.5, None, "s")) == 15
    assert len(apply_weight(items, 2.0, 7, "s")) == 7
    assert apply_weight(items, 0.0, None, "s") == []


def test_a_source_naming_an_unknown_dataset_is_a_config_error():
    cfg = compose(["data_mix=basereward", "data_mix.train.0.dataset=rlaif"])
    with pytest.raises(
        ConfigError, match=r"data source rlaif_v: dataset 'rlaif' is not in `datasets`; known: .*rlaif_v"
    ):
        resolve_sources(cfg.data_mix.train, cfg.datasets)


def test_a_generic_source_without_a_local_copy_says_where_to_point_it(tmp_path):
    from rmlab.data.mix import load_source
    from rmlab.data.validate import Validator
    from rmlab.errors import DataError

    cfg = compose(["data_mix=others"])
    with pytest.raises(DataError, match=r"data source others .*no hub dataset: give the source a local path"):
        load_source(resolve_sources(cfg.data_mix.train, cfg.datasets)[0], Validator())


def test_dataset_locations_do_not_change_the_signature():
    from rmlab.launch.signature import signature

    base = signature(compose(["data_mix=basereward"]))
    assert signature(compose(["data_mix=basereward", *LOCATIONS])) == base
    assert signature(compose(["data_mix=basereward", "data_mix.train.0.weight=2"])) != base


def test_the_second_job_on_a_mix_loads_its_encoding_from_the_cache(workdir, tmp_path, capsys):
    overrides = [*workdir, f"paths.cache={tmp_path / 'cache'}", "train.max_steps=1", "tracking=disabled"]
    run_config(compose([*overrides, "run.seed=0"]))
    assert "from the cache" not in capsys.readouterr().out
    second = run_config(compose([*overrides, "run.seed=1"]))
    out = capsys.readouterr().out
    assert out.count("encoded pairs from the cache") == 2  # train and validation pairs
    assert second.status()["state"] == "done"
    assert len(list((tmp_path / "cache" / "encoded").glob("*.safetensors"))) == 2
