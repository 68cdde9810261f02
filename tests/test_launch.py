"""Sweeps without a scheduler: skip what is done, rerun failures only on --retry, and multi-process training
(gloo, two local processes through submitit) that steps exactly as one process on the same global batch."""

import glob
import json
from pathlib import Path

from conftest import SMOKE

from rmlab.cli import main


def _history(run_dir):
    rows = [json.loads(line) for line in Path(glob.glob(f"{run_dir}/*/history.jsonl")[0]).read_text().splitlines()]
    return [(r["step"], r["train/loss"], r["train/grad_norm"]) for r in rows if "train/loss" in r]


def test_relaunch_skips_done_and_reruns_a_failure_only_with_retry(workdir, tmp_path, capsys):
    overrides = [*workdir, *SMOKE, "head=linear", "run.seed=0,1"]
    assert main(["sweep", "demo", *overrides]) == 0
    assert "2 job(s), 2 to run" in capsys.readouterr().out
    status = sorted((tmp_path / "runs" / "demo").glob("*/status.json"))[0]
    data = json.loads(status.read_text())
    status.write_text(json.dumps({**data, "state": "failed", "error": "planted"}))
    assert main(["sweep", "demo", *overrides]) == 1  # not everything is done, and nothing was rerun
    out = capsys.readouterr().out
    assert "2 job(s), 0 to run" in out and "failed: relaunch with --retry" in out
    assert main(["sweep", "demo", "--retry", *overrides]) == 0
    assert "2 job(s), 1 to run" in capsys.readouterr().out
    assert json.loads(status.read_text())["attempts"] == 2


def test_two_processes_step_as_one_on_the_same_global_batch(workdir, tmp_path):
    common = [
        *workdir,
        "head=linear",
        "run.seed=0",
        "train.max_steps=5",
        "train.batch_size=8",
        "tracking=disabled",
        "eval.benchmarks=[]",
    ]
    one = [o.replace(str(tmp_path / "runs"), str(tmp_path / "one")) for o in common]
    assert main(["sweep", "demo", *one]) == 0
    two = [o.replace(str(tmp_path / "runs"), str(tmp_path / "two")) for o in common]
    assert (
        main(["sweep", "demo", "--launcher", "local", "launcher.tasks_per_node=2", "launcher.cpus_per_task=1", *two])
        == 0
    )
    single, distributed = _history(tmp_path / "one" / "demo"), _history(tmp_path / "two" / "demo")
    assert [s for s, _, _ in distributed] == [1, 2, 3, 4, 5]
    for (_, loss_a, norm_a), (_, loss_b, norm_b) in zip(single, distributed, strict=True):
        assert abs(loss_a - loss_b) < 1e-5 and abs(norm_a - norm_b) < 1e-4 * norm_a
    # the held-out scores agree (AdamW turns float noise in near-zero gradients into +-lr steps, so weights are
    # compared through what they score, not bit for bit)
    preds = [
        [
            json.loads(line)
            for line in Path(glob.glob(f"{d}/demo/*/eval/synth_shapes/predictions.jsonl")[0]).read_text().splitlines()
        ]
        for d in (tmp_path / "one", tmp_path / "two")
    ]
    assert max(abs(a["reward_chosen"] - b["reward_chosen"]) for a, b in zip(*preds, strict=True)) < 1e-2
