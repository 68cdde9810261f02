"""Shared fixtures: an offline, quiet environment; a small synthetic testbed; tiny models built once per session."""

from __future__ import annotations

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="rmlab tests ")  # a space in the path on purpose: paths must be quoted right
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": os.path.join(_TMP, "hf"),
        "WANDB_DIR": os.path.join(_TMP, "wandb"),
    }
)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _work_in_a_temporary_folder():
    """Relative defaults (runs/, data/, data/.cache) land in a temporary folder, never in the checkout."""
    previous = os.getcwd()
    os.chdir(_TMP)
    yield
    os.chdir(previous)


SMALL_SYNTH = {"mm_train": 240, "mm_test": 80, "text_train": 240, "text_test": 80, "mm_val": 80, "text_val": 80}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small testbed in both schemas (written once per session)."""
    from rmlab.testbed import SynthSpec, write_testbed

    out = tmp_path_factory.mktemp("synth data")
    write_testbed(out, SynthSpec(**SMALL_SYNTH))
    return out


@pytest.fixture()
def workdir(tmp_path, synth_dir):
    """Overrides that keep a run's files under tmp_path and point the synthetic mixes at the session's testbed."""
    return [
        f"paths.runs={tmp_path / 'runs'}",
        f"data_mix.synth.dir={synth_dir}",
        *(f"data_mix.synth.{k}={v}" for k, v in SMALL_SYNTH.items()),
        "run.progress=false",
    ]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A `paths.data` folder holding the testbed at its default size in `synth/` (what `make demo` trains on), so
    configs that do not override the synthetic mix (real-data experiments scored on the synthetic benchmarks) find
    it where the defaults look."""
    from rmlab.testbed import SynthSpec, write_testbed

    root = tmp_path_factory.mktemp("data root")
    write_testbed(root / "synth", SynthSpec())
    return root


@pytest.fixture(scope="session")
def full_synth_dir(data_root):
    return data_root / "synth"


@pytest.fixture(scope="session")
def experiment_grids():
    """Every experiment's grid (its jobs, composed once per session: a few seconds per experiment)."""
    from rmlab.config.compose import experiments
    from rmlab.launch.grid import grid_runs

    return {name: grid_runs(name) for name in experiments()}


# Key overrides (not a `train=` group choice) so they also win over an experiment file's own train settings.
SMOKE = ["train.max_steps=2", "train.eval_every=0", "run.save_every=0", "tracking=disabled"]


def interrupt_after_checkpoint(monkeypatch, step: int):
    """Make training stop (KeyboardInterrupt) right after the checkpoint of `step` is in place, as a preempted job
    would; returns a function that puts the real checkpoint writer back."""
    from rmlab.runtime.checkpoint import CheckpointWriter

    real_save = CheckpointWriter.save

    def save_then_die(self, at, *args, **kwargs):
        path = real_save(self, at, *args, **kwargs)
        if at == step:
            self.finish()
            raise KeyboardInterrupt("preempted")
        return path

    monkeypatch.setattr(CheckpointWriter, "save", save_then_die)
    return lambda: monkeypatch.setattr(CheckpointWriter, "save", real_save)


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
# Every dataset's `datasets.*` location pointed at its fixture, as a user points rmlab at local copies.
FIXTURE_DATASETS = [
    f"datasets.rlaif_v.path={FIXTURES}/rlaif_v/RLAIF-V-Dataset_000.parquet",
    f"datasets.mmpr.path={FIXTURES}/mmpr/MMPR-v1.2/annotations/"
    "scienceqa_multi_choice_en_20240402_extracted_pairs_vqa_format_rules.jsonl",
    f"datasets.mmpr.image_root={FIXTURES}/mmpr/images.zip",
    "+datasets.mmpr.options.root=MMPR-v1.2/images/ScienceQA",
    f"datasets.r1_reward.path={FIXTURES}/r1_reward/data/train-00000-of-00001.parquet",
    f"datasets.r1_reward.image_root={FIXTURES}/r1_reward",
    "+datasets.r1_reward.options.strip_prefix=/mmu_mllm_hdd/yfzhang/data/",
    f"datasets.mm_rlhf.path={FIXTURES}/mm_rlhf/dpo_pairs.jsonl",
    f"datasets.vlfeedback.path={FIXTURES}/vlfeedback/vlfeedback_80k.jsonl",
    f"datasets.vlfeedback.image_root={FIXTURES}/vlfeedback/merged_images.zip",
    f"datasets.rlhf_v.path={FIXTURES}/rlhf_v/RLHF-V-Dataset.parquet",
    f"datasets.povid.path={FIXTURES}/povid/POVID_preference_data_for_VLLMs_version_1.json",
    f"datasets.mmif.path={FIXTURES}/mmif/mmif_dpo.json",
    f"datasets.omnialign_v.path={FIXTURES}/omnialign_v/knowledge.jsonl",
    f"datasets.ultrafeedback.path={FIXTURES}/ultrafeedback/evol_instruct.jsonl",
    f"datasets.shp.path={FIXTURES}/shp/askculinary/train.jsonl",
    f"datasets.tulu3.path={FIXTURES}/tulu3/data/train-00000-of-00001.parquet",
    f"datasets.olmo2.path={FIXTURES}/olmo2/data/train-00000-of-00001.parquet",
    f"datasets.others.path={FIXTURES}/preference/mixed.jsonl",
    f"datasets.arena.path={FIXTURES}/arena/data/train-00000-of-00001.parquet",
]


def image_or_text(text: str) -> list[dict]:
    """The content parts a prompt with at most one `<image>` placeholder becomes: the image where the placeholder is
    (the text around it kept), or first when there is none (how the adapters and loaders place one image)."""
    before, marker, after = text.partition("<image>")
    if not marker:
        return [{"type": "image"}, {"type": "text", "text": text}]
    pieces = [before.strip("\n"), None, after.strip("\n")]
    return [{"type": "image"} if p is None else {"type": "text", "text": p} for p in pieces if p is None or p.strip()]


def pytest_terminal_summary(terminalreporter):
    """One line naming the skipped SLURM tests and why (a user without root cannot start the local cluster); one
    line for the skipped vLLM tests (no vLLM environment: `make vllm`)."""
    vllm = [r for r in terminalreporter.stats.get("skipped", []) if "test_vllm.py" in r.nodeid]
    if vllm:
        reason = vllm[0].longrepr[2] if isinstance(vllm[0].longrepr, tuple) else "skipped"
        terminalreporter.write_line(f"skipped the vLLM tests (tests/test_vllm.py): {reason.removeprefix('Skipped: ')}")
    slurm = [r for r in terminalreporter.stats.get("skipped", []) if "test_slurm.py" in r.nodeid]
    if slurm:
        reason = slurm[0].longrepr[2] if isinstance(slurm[0].longrepr, tuple) else "skipped"
        names = ", ".join(r.nodeid.split("::")[-1] for r in slurm)
        terminalreporter.write_line(f"skipped {len(slurm)} SLURM test(s): {reason.removeprefix('Skipped: ')}: {names}")
