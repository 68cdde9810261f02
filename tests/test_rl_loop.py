"""The policy stage's loop on a real tiny policy: rollouts, dynamic sampling, an update's direction, the run end to
end, and resumption."""

import json

import pytest
import torch
from conftest import interrupt_after_checkpoint

from rmlab.config.compose import compose
from rmlab.launch.job import run_config
from rmlab.rl.recipe import Batch, PolicyRun, overlong_penalty
from rmlab.runtime.optim import make_optimizer


@pytest.fixture()
def rl_overrides(workdir):
    return [
        *workdir,
        "tracking=disabled",
        "stage=rl",
        "backbone=qwen2_5",
        "data_mix=synth_text",
        "rl.prompts_per_step=4",
        "rl.group_size=4",
        "rl.max_new_tokens=6",
        "rl.eval_prompts=16",
    ]


def test_overlong_penalty_by_hand():
    # max 16, buffer 4: free up to 12 tokens, then -1/4 per token, -1 at 16
    assert [overlong_penalty(n, 16, 4, 1.0) for n in (10, 12, 13, 16)] == [0.0, 0.0, -0.25, -1.0]
    assert overlong_penalty(16, 16, 0, 1.0) == 0.0  # no buffer, no shaping


def test_an_update_raises_the_rollouts_with_positive_advantage(rl_overrides):
    run = PolicyRun(compose(rl_overrides))
    batch = run.collect(0)
    g = 4
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0] * (len(batch.seqs) // g))  # the first of each group is "right"
    batch = Batch(batch.seqs, batch.texts, rewards, batch.group, batch.lengths, 4, 0)
    with torch.no_grad():
        run.policy.eval()
        before, _, mask = run.token_stats(run.policy, batch.seqs)
    optimizer = make_optimizer([p for p in run.policy.parameters() if p.requires_grad], 1e-3, 0.0)
    metrics = run.update(batch, optimizer)
    assert metrics["reward_mean"] == pytest.approx(0.25) and metrics["groups"] == 4.0
    with torch.no_grad():
        run.policy.eval()
        after, _, _ = run.token_stats(run.policy, batch.seqs)
    change = ((after - before) * mask).sum(1)
    assert change[rewards == 1].mean() > 0 > change[rewards == 0].mean()


def test_dynamic_sampling_drops_groups_without_signal(rl_overrides):
    # a random policy almost never answers right: most groups' rewards are all 0. GRPO keeps every group; DAPO keeps
    # only groups whose rewards differ, drawing up to 3 batches of 4 prompts to find them
    kept = PolicyRun(compose(rl_overrides)).collect(0)
    assert (
        len(kept.seqs) == 16
        and kept.groups_dropped == 0
        and kept.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    )
    dapo = PolicyRun(compose([*rl_overrides, "rl=dapo", "rl.max_gen_batches=3"])).collect(0)
    groups = {int(g): {float(r) for r, h in zip(dapo.rewards, dapo.group, strict=True) if h == g} for g in dapo.group}
    assert all(len(rewards) > 1 for rewards in groups.values())  # what is kept carries signal
    assert dapo.groups_dropped >= 8 and dapo.groups_dropped + len(groups) == dapo.prompts_used == 12
    assert len(dapo.seqs) == 4 * len(groups)


def test_a_policy_run_end_to_end_and_resumed_equals_uninterrupted(rl_overrides, tmp_path, monkeypatch):
    common = [*rl_overrides, "rl.steps=4", "run.save_every=2", "rl.lr=1e-3"]
    straight = run_config(compose([*common, f"paths.runs={tmp_path / 'straight'}"]))
    assert straight.status()["state"] == "done"
    metrics = json.loads((straight.eval_dir("synth_text") / "metrics.json").read_text())
    assert metrics["n"] == 16 and {"exact_match", "initial_exact_match", "sampled_exact_match"} <= set(metrics)
    history = [json.loads(line) for line in straight.history.read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4] and all("rl/entropy" in h for h in history)
    assert any(straight.model.iterdir())

    cfg = compose(common)
    restore = interrupt_after_checkpoint(monkeypatch, step=2)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg)
    restore()
    resumed = run_config(cfg)
    assert resumed.status()["state"] == "done" and resumed.status()["attempts"] == 2
    a = (straight.eval_dir("synth_text") / "predictions.jsonl").read_text()
    b = (resumed.eval_dir("synth_text") / "predictions.jsonl").read_text()
    assert a == b
    rows = [json.loads(line) for line in resumed.history.read_text().splitlines()]
    assert [r["rl/loss"] for r in rows] == [h["rl/loss"] for h in history]


# A policy fine-tuned on the text pairs (testbed 2: 67.5% greedy exact match; copy and fact 100, sum 63, compare 7),
# then 200 GRPO steps with the rule reward, 32 prompts a step (8 rollouts each), lr 3e-4. Measured on the 200 held-out
# prompts x 8 samples: the sampled rule reward goes from 50.4 to 58.9% (RL seed 0) and to 57.9% (seed 1); greedy exact
# match falls a little meanwhile (66.0, 65.5): RL sharpens what the policy samples, not its mode, on this testbed.
# Fewer prompts a step gain less (16: +5.5 and +3.6; 8, the first testbed's recipe: +0.8, and -7.2 at lr 1e-3). The
# run is seeded and deterministic on CPU; the threshold, +3 points, is under half the smallest gain measured at 32
# prompts (7.5).
# About 100 s on 2 cores (SFT included): in `make test-slow`; the policy loop's correctness is in `make test` (the
# one-step and resume tests above and below).
@pytest.mark.slow
def test_grpo_raises_the_held_out_rule_reward(full_synth_dir, tmp_path):
    where = [f"paths.runs={tmp_path}", f"data_mix.synth.dir={full_synth_dir}", "run.progress=false",
             "tracking=disabled", "backbone=qwen2_5", "data_mix=synth_text"]  # fmt: skip
    sft = run_config(compose([*where, "paradigm=sft", "train.lr=1e-3", "eval.benchmarks=[]"]))
    run = run_config(
        compose([*where, "stage=rl", f"rl.policy={sft.path}", "rl.steps=200", "rl.lr=3e-4", "rl.prompts_per_step=32"])
    )
    m = json.loads((run.eval_dir("synth_text") / "metrics.json").read_text())
    assert m["sampled_exact_match"] >= m["initial_sampled_exact_match"] + 3.0


def test_a_sweep_links_each_policy_run_to_the_runs_it_reads():
    from rmlab.launch.grid import grid_runs

    jobs = {j.value("label"): j for j in grid_runs("rl_rewards")}
    sft, rm, judge = jobs["Policy (SFT)"], jobs["BaseReward RM"], jobs["GRM judge"]
    hybrid, pairwise = jobs["+ BaseReward + Rule"], jobs["+ R1-Reward (pairwise judge)"]
    assert hybrid.value("rl.policy") == sft.signature and hybrid.value("rl.reward_model") == rm.signature
    assert pairwise.value("rl.reward_model") == judge.signature
    assert [j.is_downstream for j in (sft, rm, judge, hybrid, pairwise)] == [False, False, False, True, True]


@pytest.fixture(scope="module")
def reward_model_run(tmp_path_factory, synth_dir):
    """A naive reward model on the text pairs (a few steps: what the policy runs below score with)."""
    where = tmp_path_factory.mktemp("rm")
    cfg = compose([f"paths.runs={where}", f"data_mix.synth.dir={synth_dir}", "run.progress=false", "tracking=disabled",
                   "backbone=qwen2_5", "data_mix=synth_text", "train.max_steps=2", "eval.benchmarks=[]",
                   "data_mix.val_pairs=0"])  # fmt: skip
    return run_config(cfg).path


ONE_STEP = ["rl.steps=1", "rl.prompts_per_step=2", "rl.group_size=2", "rl.eval_prompts=4", "run.save_every=0"]


@pytest.mark.parametrize(
    "choice",
    [
        ["rl=grpo"],
        ["rl=dapo", "rl.max_gen_batches=1"],
        ["rl=gtpo"],
        ["rl=grpo_s"],
        ["rl.reward=model"],
        ["rl.reward=hybrid"],
        ["rl.reward=pairwise"],
    ],
    ids=["grpo", "dapo", "gtpo", "grpo_s", "model", "hybrid", "pairwise"],
)
def test_every_algorithm_and_reward_kind_runs_a_policy_step(choice, rl_overrides, reward_model_run):
    rm = [f"rl.reward_model={reward_model_run}"] if any("reward=" in c for c in choice) else []
    run = run_config(compose([*rl_overrides, *ONE_STEP, *choice, *rm]))
    assert run.status()["state"] == "done"
    (row,) = [json.loads(line) for line in run.history.read_text().splitlines()]
    assert row["step"] == 1 and all(torch.isfinite(torch.tensor(v)) for k, v in row.items() if k.startswith("rl/"))


def test_a_multimodal_policy_takes_a_step(workdir):
    run = run_config(compose([*workdir, "tracking=disabled", "stage=rl", "backbone=qwen2_5_vl", "data_mix=synth_mm",
                              "rl.max_new_tokens=4", *ONE_STEP]))  # fmt: skip
    assert run.status()["state"] == "done"
    (row,) = [json.loads(line) for line in run.history.read_text().splitlines()]
    assert row["step"] == 1 and "rl/entropy" in row
