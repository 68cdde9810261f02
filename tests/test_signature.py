"""The signature: same config, same run; anything that changes the run changes it; paths and tracking do not."""

from rmlab.config.compose import compose
from rmlab.launch.run_dir import RunDir
from rmlab.launch.signature import signature, signature_payload


def sig(*overrides):
    return signature(compose(list(overrides)))


def test_same_config_same_signature():
    assert sig("head=mlp3_silu") == sig("head.layers=3")  # the same resolved config, reached two ways


def test_what_changes_the_run_changes_the_signature():
    base = sig()
    for o in [
        "train.lr=1e-4",
        "head=linear",
        "backbone=qwen2_vl",
        "train.seed=1",
        "paradigm.center_coef=0.01",
        "data_mix=synth_all",
        "experiment=other",
    ]:
        assert sig(o) != base, o


def test_where_files_live_and_how_runs_are_watched_do_not():
    base = sig()
    for o in [
        "paths.runs=/elsewhere/runs",
        "paths.data=/scratch/data",
        "tracking=online",
        "train.progress=false",
        "train.save_every=7",
        "eval.batch_size=3",
    ]:
        assert sig(o) == base, o


def test_data_paths_are_hashed_relative_to_paths_data():
    payload = signature_payload(compose(["paths.data=/some/where"]))
    assert payload["data_mix"]["train"][0]["path"] == "<paths.data>/synth/rlaif_v/train.parquet"


def test_run_directory_is_runs_experiment_signature(tmp_path):
    cfg = compose([f"paths.runs={tmp_path}", "experiment=abl"])
    run = RunDir.for_config(cfg)
    assert run.path == tmp_path / "abl" / signature(cfg)
