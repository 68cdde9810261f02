"""One lifecycle for every stage: Ctrl-C in a reward-model, a policy, a self-compare and an ensemble run is recorded
as `interrupted` with its wandb run finished; a second process meeting a run's lock leaves it alone; the next
attempt finishes it."""

import json
import subprocess
import sys

import pytest
from conftest import SMOKE

from rmlab.config.compose import compose
from rmlab.launch.job import run_config
from rmlab.launch.signature import run_dir
from rmlab.tracking.logger import RunLogger
from rmlab.tracking.runs import read_offline

TEXT = ["backbone=qwen2_5", "data_mix=synth_text", "eval.benchmarks=[]", "eval.bootstrap=0"]


@pytest.fixture()
def stages(workdir):
    """Each stage's config at its smallest, with the runs it reads already done."""
    base = [*workdir, *SMOKE, *TEXT]
    policy = run_config(compose([*base, "paradigm=sft"])).path
    members = [run_config(compose([*base, f"run.seed={seed}"])).path for seed in (0, 1)]
    watched = [*base, "tracking=offline", "run.seed=7"]  # seed 7: none of these is one of the runs above
    return {
        "reward_model": compose(watched),
        "rl": compose(
            [
                *watched,
                "stage=rl",
                "rl.steps=2",
                "rl.prompts_per_step=2",
                "rl.group_size=2",
                "rl.max_new_tokens=4",
                "rl.eval_prompts=4",
            ]
        ),  # fmt: skip
        "selfcompare": compose(
            [
                *watched,
                "stage=selfcompare",
                f"selfcompare.policy={policy}",
                "selfcompare.max_questions=8",
                "selfcompare.include_correct=true",
            ]
        ),  # fmt: skip
        "ensemble": compose(
            [*watched, "ensemble=average", f"ensemble.members=[{members[0]},{members[1]}]", "ensemble.val_pairs=20"]
        ),  # fmt: skip
    }


def _hold_lock(path):
    """Another process holding a run's lock (as a second job of the same signature would)."""
    code = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
        " time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_every_stage_is_interrupted_left_alone_under_a_lock_and_finished_after(stages, monkeypatch, capsys):
    real_log, real_summary = RunLogger.log, RunLogger.summary

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt  # the user's Ctrl-C, the first time the stage reports anything

    for stage, cfg in stages.items():
        run = run_dir(cfg)
        monkeypatch.setattr(RunLogger, "log", ctrl_c)
        monkeypatch.setattr(RunLogger, "summary", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            run_config(cfg)
        status = run.status()
        assert (status["state"], status["stage"], status["attempts"]) == ("interrupted", stage, 1), stage
        assert status["error"] == "interrupted (KeyboardInterrupt)"
        record = read_offline(run.path.parent)[run.signature]
        assert (record.job_type, record.exit_code) == (stage, 1), stage  # wandb was finished, as a failure

        monkeypatch.setattr(RunLogger, "log", real_log)
        monkeypatch.setattr(RunLogger, "summary", real_summary)
        holder = _hold_lock(run.path / ".lock")
        try:
            capsys.readouterr()
            run_config(cfg)
            assert "already being run by another process" in capsys.readouterr().out
            assert run.status() == status, stage  # left alone: same state, same attempt
        finally:
            holder.kill()
            holder.wait()

        run_config(cfg)
        status = run.status()
        assert (status["state"], status["attempts"]) == ("done", 2), stage
        assert read_offline(run.path.parent)[run.signature].exit_code == 0
        summary = json.loads((run.path / "summary.json").read_text())
        assert summary["run/state"] == "done" and any(k.startswith("eval/") for k in summary), stage
