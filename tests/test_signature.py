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
    assert payload["data_mix"]["train"][0]["path"] == "${data_mix.synth.dir}/rlaif_v/train.parquet"
    assert payload["data_mix"]["synth"]["dir"] == "${paths.data}/synth"


def test_run_directory_is_runs_experiment_signature(tmp_path):
    cfg = compose([f"paths.runs={tmp_path}", "experiment=abl"])
    run = RunDir.for_config(cfg)
    assert run.path == tmp_path / "abl" / signature(cfg)


def test_the_grid_fast_path_gives_each_job_the_signature_of_a_full_composition(tmp_path):
    from rmlab.launch.grid import grid_runs

    overrides = [
        f"paths.runs={tmp_path}",
        "train.lr=1",
        "head.activation=tanh",
        "train.seed=0,1",
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
