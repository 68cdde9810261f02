"""Scale on the proof bench: FSDP2 over 2 real processes (gloo, submitit's local executor) steps as one process on the
same global batch, fp32 master weights keep updates a bf16 model would round away, and DCP checkpoints written by 2
processes resume on 1 and on 2."""

import glob
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SMOKE

from rmlab.cli import main
from rmlab.config.compose import compose
from rmlab.data.adapters import load_pairs
from rmlab.data.encode import PairEncoder
from rmlab.models.reward_model import load_reward_model
from rmlab.paradigms import get_paradigm
from rmlab.runtime.distributed import SINGLE
from rmlab.runtime.optim import make_optimizer, make_scheduler
from rmlab.runtime.strategy import Strategy
from rmlab.train.batches import HeldPairs
from rmlab.train.recipe import build_model, train_step


def _history(runs: Path) -> list[dict]:
    (path,) = glob.glob(f"{runs}/demo/*/history.jsonl")
    return [json.loads(line) for line in Path(path).read_text().splitlines() if "/loss" in line]


def _predictions(runs: Path) -> list[dict]:
    (path,) = glob.glob(f"{runs}/demo/*/eval/synth_shapes/predictions.jsonl")
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _common(workdir, tmp_path, runs: str, steps: int) -> list[str]:
    return [
        *[o.replace(str(tmp_path / "runs"), str(tmp_path / runs)) for o in workdir],
        "head=linear",
        "run.seed=0",
        f"train.max_steps={steps}",
        "train.batch_size=8",
        "train.eval_every=0",
        "tracking=disabled",
        "eval.benchmarks=[]",
        "run.strategy=fsdp",
    ]


TWO_PROCESSES = ["--launcher", "local", "launcher.tasks_per_node=2", "launcher.cpus_per_task=1"]


def test_fsdp_over_two_processes_steps_as_one_process(workdir, tmp_path):
    one, two = _common(workdir, tmp_path, "one", 50), _common(workdir, tmp_path, "two", 50)
    assert main(["sweep", "demo", *one]) == 0
    assert main(["sweep", "demo", *TWO_PROCESSES, *two]) == 0
    single, sharded = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert [h["step"] for h in sharded] == list(range(1, 51))
    # measured: losses within 5e-7 relative, gradient norms within 1.2e-5 (they start at 1e-7: the half batches sum in
    # another order, and AdamW turns that noise in near-zero gradients into weight differences step by step)
    for a, b in zip(single, sharded, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5), a["step"]
        assert a["train/grad_norm"] == pytest.approx(b["train/grad_norm"], rel=5e-5), a["step"]
    a, b = _predictions(tmp_path / "one"), _predictions(tmp_path / "two")
    assert [r["id"] for r in a] == [r["id"] for r in b]  # rank 0 gathered every pair, in file order
    assert max(abs(x["reward_chosen"] - y["reward_chosen"]) for x, y in zip(a, b, strict=True)) < 1e-3


def test_fsdp_over_two_processes_on_batches_with_and_without_images(workdir, tmp_path):
    """A mix of image and text pairs: a process whose share of a batch has no image runs its sharded vision tower on
    a stand-in image (else its collectives would not meet the other's, and the job hang), and the steps equal one
    process's."""
    mixed = ["data_mix=synth_all", "run.save_every=0"]
    one, two = _common(workdir, tmp_path, "one", 12), _common(workdir, tmp_path, "two", 12)
    assert main(["sweep", "demo", *one, *mixed]) == 0
    assert main(["sweep", "demo", *TWO_PROCESSES, *two, *mixed]) == 0
    single, sharded = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert [h["step"] for h in sharded] == list(range(1, 13))
    for a, b in zip(single, sharded, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5), a["step"]


@pytest.mark.parametrize("strategy", ["single", "fsdp"])
def test_fp32_master_weights_keep_a_small_update_that_bf16_weights_round_away(synth_dir, strategy):
    """One step at BaseReward's lr 3e-6 on a model computing in bf16 moves (almost) every backbone weight (the
    embeddings aside: the rows of tokens the batch lacks get no gradient); the same step on the weights held in bf16
    moves few of them (the reason for fp32 masters)."""
    cfg = compose(["backbone=qwen2_5", "backbone.dtype=bfloat16", "tracking=disabled"])
    data = load_pairs("ultrafeedback", str(synth_dir / "ultrafeedback" / "train.jsonl"), limit=8)

    def moved(model, strategy):
        encoder = PairEncoder(build_model(cfg)[1], 256)
        batches = HeldPairs([encoder.encode(p) for p in data], 8, 1, seed=0, dist=strategy.dist).batches(0)
        names = [
            n for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad and "embed" not in n
        ]
        before = {n: _full(p).clone() for n, p in model.named_parameters() if n in names}
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, 3e-6, 0.0)
        train_step(model, optimizer, make_scheduler(optimizer, "constant", 1, 0.0), batches, 0, cfg, strategy)
        after = {n: _full(p) for n, p in model.named_parameters() if n in names}
        changed = sum(int((after[n].float() != before[n].float()).sum()) for n in names)
        return changed / sum(before[n].numel() for n in names)

    model, _ = build_model(cfg)
    chosen = Strategy("fsdp" if strategy == "fsdp" else "single", SINGLE, torch.bfloat16)
    assert moved(chosen.wrap(model), chosen) > 0.9
    rounded, _ = build_model(cfg)
    fp32_compute = Strategy("single", SINGLE, torch.float32)
    rounded.backbone.to(torch.bfloat16)  # the backbone's weights held in bf16 (the head stays fp32, as before)
    assert moved(rounded, fp32_compute) < 0.2  # most of its updates round away


def _full(p: torch.Tensor) -> torch.Tensor:
    return p.full_tensor() if hasattr(p, "full_tensor") else p.detach()


def _weights(runs: Path) -> dict[str, torch.Tensor]:
    (path,) = glob.glob(f"{runs}/demo/*/model")
    return load_reward_model(path)[0].state_dict()


def _resume_copy(src: Path, dst: Path, step: int) -> None:
    """The run as a job stopped right after its checkpoint of `step` would have left it."""
    shutil.copytree(src, dst)
    (run,) = glob.glob(f"{dst}/demo/*/")
    for later in glob.glob(f"{run}/checkpoints/step_*"):
        if int(later.rsplit("_", 1)[1]) > step:
            shutil.rmtree(later)
    history = Path(f"{run}/history.jsonl")
    kept = [line for line in history.read_text().splitlines() if json.loads(line)["step"] <= step]
    history.write_text("".join(line + "\n" for line in kept))
    shutil.rmtree(f"{run}/model")
    shutil.rmtree(f"{run}/eval")
    status = json.loads(Path(f"{run}/status.json").read_text())
    Path(f"{run}/status.json").write_text(json.dumps({**status, "state": "interrupted", "step": step}))
    (Path(run) / "checkpoints" / f".step_{step + 10:08d}.tmp").mkdir()  # one cut mid-write: ignored
    (Path(run) / "checkpoints" / f".step_{step + 10:08d}.tmp" / "__0_0.distcp").write_bytes(b"\0" * 10)


def test_a_checkpoint_of_two_processes_resumes_on_two_and_on_one(workdir, tmp_path):
    straight = _common(workdir, tmp_path, "straight", 30)
    keep = ["run.save_every=10", "run.keep_checkpoints=5"]
    assert main(["sweep", "demo", *TWO_PROCESSES, *straight, *keep]) == 0
    for world, runs in ((2, "on_two"), (1, "on_one")):
        _resume_copy(tmp_path / "straight", tmp_path / runs, step=20)
        resumed = _common(workdir, tmp_path, runs, 30)
        launcher = TWO_PROCESSES if world == 2 else []
        assert main(["sweep", "demo", "--retry", *launcher, *resumed, *keep]) == 0
        (log,) = glob.glob(f"{tmp_path / runs}/demo/*/status.json")
        assert json.loads(Path(log).read_text())["attempts"] == 2
        history = _history(tmp_path / runs)
        assert [h["step"] for h in history if h["step"] > 20] == list(range(21, 31))
        a, b = _weights(tmp_path / "straight"), _weights(tmp_path / runs)
        # on 2: the same weights, bit for bit; on 1: summed in another order (measured: 1.1e-5 at most; AdamW bounds the
        # drift by 2 lr per step, 6e-3 over these 10)
        for name in a:
            assert torch.allclose(a[name], b[name], atol=0 if world == 2 else 1e-4, rtol=0), (world, name)


def test_smoke_fsdp_in_one_process_with_a_bf16_compute(workdir):
    """The single-process fsdp path (a group of one) trains and saves a model that loads in bf16."""
    from rmlab.launch.job import run_config

    run = run_config(compose([*workdir, *SMOKE, "run.strategy=fsdp", "backbone.dtype=bfloat16"]))
    model, _ = load_reward_model(run.model, dtype=torch.bfloat16)
    assert next(model.backbone.parameters()).dtype == torch.bfloat16
    assert model.head.net[0].weight.dtype == torch.float32


def test_rmlab_eval_over_two_processes_writes_what_one_process_writes(workdir, tmp_path, synth_dir):
    """`torchrun --nproc_per_node 2 rmlab eval`: each process scores its share of every set and benchmark, rank 0
    writes the same predictions files, byte for byte, as one process."""
    import subprocess
    import sys

    from rmlab.launch.job import run_config

    run = run_config(compose([*workdir, *SMOKE, "head=linear"]))
    args = ["eval", f"eval.model={run.path}", "eval.benchmarks=[vlrb,rmbench]", "eval.bootstrap=0",
            f"eval.data={synth_dir / 'rlaif_v' / 'test.parquet'}", "eval.adapter=rlaif_v",
            *[o for o in workdir if o.startswith("data_mix.synth")]]  # fmt: skip
    assert main([*args, f"eval.out={tmp_path / 'one'}"]) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "rmlab.cli", *args, f"eval.out={tmp_path / 'two'}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("predictions.jsonl"))
    assert [str(p.parent) for p in written] == ["eval/rmbench", "eval/test", "eval/vlrb"]
    for path in written:
        assert (tmp_path / "two" / path).read_bytes() == (tmp_path / "one" / path).read_bytes(), path


def test_a_policy_step_on_two_processes_equals_one_process(workdir, tmp_path):
    """GRPO under fsdp on 2 processes (each rolls out half the prompts, samples seeded per prompt) against 1: the
    same rollouts, rewards and update, so the same policy after two steps."""
    from rmlab.launch.job import run_config

    text = ["backbone=qwen2_5", "data_mix=synth_text", "eval.benchmarks=[]", "tracking=disabled", "run.progress=false"]
    rm = run_config(compose([*workdir, *SMOKE, *text]))
    policy = [
        *text, "stage=rl", "rl.reward=model", f"rl.reward_model={rm.path}", "rl.reward_transform=raw", "rl.steps=2",
        "rl.prompts_per_step=4", "rl.group_size=4", "rl.max_new_tokens=6", "rl.eval_prompts=8", "rl.lr=1e-3",
        "run.strategy=fsdp", "run.save_every=0", "head=linear", "run.seed=0",
    ]  # fmt: skip
    for runs, launcher in (("one", []), ("two", TWO_PROCESSES)):
        where = [o.replace(str(tmp_path / "runs"), str(tmp_path / runs)) for o in workdir]
        assert main(["sweep", "demo", *launcher, *where, *policy]) == 0
    one, two = (_history(tmp_path / r) for r in ("one", "two"))
    assert [h["step"] for h in two] == [1, 2] and one[0]["rl/reward_mean"] == two[0]["rl/reward_mean"]
    for a, b in zip(one, two, strict=True):  # (the loss itself is ~0 at a step's start: advantages sum to zero)
        assert a["rl/grad_norm"] == pytest.approx(b["rl/grad_norm"], rel=1e-5) and a["rl/grad_norm"] > 0.1
        assert a["rl/entropy"] == pytest.approx(b["rl/entropy"], rel=1e-5)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    preds = [
        Path(glob.glob(f"{tmp_path / r}/demo/*/eval/synth_text/predictions.jsonl")[0]).read_text()
        for r in ("one", "two")
    ]
    assert preds[0] == preds[1]


@pytest.mark.parametrize(
    "overrides",
    [["backbone=qwen2_5"], ["paradigm=grm"], ["backbone.lora.enabled=true", "backbone.freeze_vision=true"]],
)
def test_the_memory_plan_counts_the_real_tensors_of_a_tiny_model(overrides, synth_dir):
    """Weights, gradients and optimizer state as planned (one process, fp32) equal the bytes of the real tensors
    after an optimizer step, for a scalar reward model, a judge, and LoRA with a frozen vision tower."""
    from rmlab.runtime.memory import footprint, plan_memory

    cfg = compose(["tracking=disabled", *overrides])
    plan = plan_memory(cfg, footprint(cfg))
    model, processor = build_model(cfg)
    encoder = get_paradigm(cfg.paradigm.name).encoder(processor, cfg)
    pairs = load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet"), limit=4)
    if cfg.backbone.family == "qwen2_5":
        pairs = load_pairs("ultrafeedback", str(synth_dir / "ultrafeedback" / "train.jsonl"), limit=4)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, 1e-3, 0.0)
    batches = HeldPairs([encoder.encode(p) for p in pairs], 4, 1, seed=0).batches(0)
    train_step(model, optimizer, make_scheduler(optimizer, "constant", 1, 0.0), batches, 0, cfg)
    assert plan.weights == sum(p.numel() * p.element_size() for p in model.parameters())
    assert plan.gradients == sum(p.grad.numel() * p.grad.element_size() for p in params)
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    assert plan.optimizer == sum(t.numel() * t.element_size() for t in state)


def test_rmlab_plan_says_which_grid_points_fit_and_sweep_refuses_the_others(capsys):
    assert main(["plan", "head"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("head=")]
    assert len(rows) == 7 and all("qwen2_5_vl 7b" in r and " fsdp " in r and "yes (80.0 GiB)" in r for r in rows)
    assert main(["plan", "head", "run.strategy=ddp"]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run.strategy=ddp")]
    assert len(rows) == 7 and all("NO: shard it: run.strategy=fsdp" in r for r in rows)
    assert main(["sweep", "head", "run.strategy=ddp"]) == 2  # refused before anything is submitted
    err = capsys.readouterr().err
    assert "7 grid point(s) do not fit on a GPU" in err and "--force" in err
    assert main(["plan", "rl_algorithms", "hardware=8xh100"]) == 0  # policy runs are said, not planned
    out = capsys.readouterr().out
    assert out.count("- a policy run") == 8 and out.count("yes (80.0 GiB)") == 2
