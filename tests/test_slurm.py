"""The real scheduler: a single-node SLURM cluster (`make slurm-up`), driven through `rmlab sweep --launcher slurm`.

Skipped when no cluster answers (`make test` starts one first, and names the skipped tests); under
RMLAB_REQUIRE_SLURM=1 (set by `.ci/run`) they fail instead. Jobs use one CPU each, so two run at a time here.
"""

import glob
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rmlab.cli import main
from rmlab.launch.submit import slurm_state

pytestmark = pytest.mark.slurm


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s in out for s in ("idle", "mixed", "allocated"))


@pytest.fixture(autouse=True)
def _needs_slurm():
    if _cluster_up():
        return
    if os.environ.get("RMLAB_REQUIRE_SLURM") == "1":  # CI (.ci/run): the only coverage of the real scheduler
        pytest.fail("no SLURM cluster answers and RMLAB_REQUIRE_SLURM=1: `make slurm-up` did not start one")
    pytest.skip("no SLURM cluster answers (make slurm-up needs root and apt)")


def _read(pattern: str) -> str:
    return Path(glob.glob(pattern)[0]).read_text()


def _statuses(root):
    return [json.loads(Path(p).read_text()) for p in sorted(glob.glob(f"{root}/demo/*/status.json"))]


FAST = [
    "train.max_steps=3",
    "train.eval_every=0",
    "run.save_every=0",
    "tracking=disabled",
    "eval.benchmarks=[]",
    "launcher.cpus_per_task=1",
    "launcher.timeout_min=10",
]


def test_four_jobs_through_slurm_split_into_arrays_skipped_when_done_retried_on_request(workdir, tmp_path, capsys):
    overrides = [*workdir, *FAST, "head=linear,mlp2_silu", "run.seed=0,1", "launcher.max_array_size=3"]
    assert main(["sweep", "demo", "--launcher", "slurm", "--wait", *overrides]) == 0
    out = capsys.readouterr().out
    assert "4 job(s), 4 to run" in out and "4/4 done" in out
    statuses = _statuses(tmp_path / "runs")
    assert [s["state"] for s in statuses] == ["done"] * 4
    arrays = {s["slurm_job_id"].split("_")[0] for s in statuses}
    assert len(arrays) == 2  # 4 jobs, at most 3 per array

    assert main(["sweep", "demo", "--launcher", "slurm", *overrides]) == 0
    assert "4 job(s), 0 to run" in capsys.readouterr().out  # nothing submitted again

    path = Path(sorted(glob.glob(f"{tmp_path / 'runs'}/demo/*/status.json"))[1])
    status = json.loads(path.read_text())
    path.write_text(json.dumps({**status, "state": "failed", "error": "planted"}))
    assert main(["sweep", "demo", "--launcher", "slurm", "--retry", "--wait", *overrides]) == 0
    out = capsys.readouterr().out
    assert "4 job(s), 1 to run" in out and "submitted 1 job(s)" in out
    again = json.loads(path.read_text())
    assert again["state"] == "done" and again["attempts"] == 2


def _wait(predicate, timeout_s, what):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    "processes",
    [
        ["launcher.cpus_per_task=2"],  # one process
        ["launcher.tasks_per_node=2", "launcher.cpus_per_task=1", "run.strategy=fsdp"],  # FSDP over 2 tasks
    ],
    ids=["one-process", "fsdp-2-tasks"],
)
def test_a_preempted_job_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(workdir, tmp_path, processes):
    common = [
        *workdir,
        "head=linear",
        "run.seed=0",
        "train.max_steps=300",
        "run.save_every=50",
        "train.eval_every=0",
        "tracking=offline",
        "eval.benchmarks=[]",
        "launcher.timeout_min=10",
        *processes,
    ]
    assert main(["sweep", "demo", "--launcher", "slurm", *common]) == 0
    runs = tmp_path / "runs"
    _wait(lambda: _statuses(runs) and _statuses(runs)[0].get("step", 0) >= 100, 120, "two checkpoints")
    job = _statuses(runs)[0]["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # what SLURM sends before preempting
    _wait(lambda: _statuses(runs)[0]["state"] == "interrupted", 60, "the job to stop")
    # SLURM holds a requeued job back for two minutes; an admin's nudge lets the test go on
    _wait(lambda: slurm_state(job) == "PENDING", 60, "the requeue")
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    final = _wait(lambda: _statuses(runs)[0]["state"] == "done" and _statuses(runs)[0], 180, "the resumed job")
    assert final["attempts"] == 2
    run_dir = glob.glob(f"{runs}/demo/*/")[0]
    log = _read(f"{runs}/demo/.submitit/*/*_0_log.out")
    assert "preempted: checkpoint of step" in log and "resumed from step_" in log
    history = _read(f"{run_dir}/history.jsonl").splitlines()
    steps = [json.loads(line)["step"] for line in history if "train/loss" in line]
    assert steps == list(range(1, 301))  # every step once: the checkpoint was taken where the signal stopped it
    ids = {p.rsplit("-", 1)[1] for p in glob.glob(f"{run_dir}/wandb/offline-run-*")}
    assert len(glob.glob(f"{run_dir}/wandb/offline-run-*")) == 2 and len(ids) == 1  # two attempts, one wandb run

    straight = [o.replace(str(runs), str(tmp_path / "straight")) for o in common]
    local = ["--launcher", "local"] if "run.strategy=fsdp" in processes else []  # the same 2 processes, not preempted
    assert main(["sweep", "demo", *local, *straight]) == 0
    a = json.loads(_read(f"{run_dir}/eval/synth_shapes/metrics.json"))
    b = json.loads(_read(f"{tmp_path}/straight/demo/*/eval/synth_shapes/metrics.json"))
    assert a["pair_accuracy"] == b["pair_accuracy"] and a["per_category"] == b["per_category"]


def test_an_ensemble_sweep_runs_its_members_first_then_the_ensembles_on_their_output(workdir, tmp_path, capsys):
    """The ensembles experiment through SLURM: the members' array, then the ensembles' array held by a dependency
    on it, each ensemble reading the members this sweep trained (named by their signatures)."""
    overrides = [*workdir, *FAST, "ensemble.val_pairs=40", "+variant/ensembles=qwen2_5_vl,internvl3,qwen3_text,route"]
    assert main(["sweep", "ensembles", "--launcher", "slurm", "--wait", *overrides]) == 0
    assert "4/4 done" in capsys.readouterr().out
    statuses = {
        Path(p).parent.name: json.loads(Path(p).read_text())
        for p in glob.glob(f"{tmp_path / 'runs'}/ensembles/*/status.json")
    }
    assert [s["state"] for s in statuses.values()] == ["done"] * 4
    [ensemble] = [name for name in statuses if Path(tmp_path / "runs" / "ensembles" / name / "ensemble.json").exists()]
    members = json.loads((tmp_path / "runs" / "ensembles" / ensemble / "ensemble.json").read_text())
    trained = set(statuses) - {ensemble}
    assert {*members["text"], *members["other"]} == trained
    arrays = {s["slurm_job_id"].split("_")[0] for s in statuses.values()}
    assert len(arrays) == 2  # the ensemble in its own array, after the members'
    started = {name: s["started"] for name, s in statuses.items()}
    finished = [statuses[m]["finished"] for m in trained]
    assert started[ensemble] >= max(finished)
