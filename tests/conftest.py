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


SMALL_SYNTH = {"mm_train": 240, "mm_test": 80, "text_train": 240, "text_test": 80}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small testbed in both schemas (written once per session)."""
    from rmlab.data.synth import SynthSpec, write_testbed

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
        "train.progress=false",
    ]


@pytest.fixture(scope="session")
def full_synth_dir(tmp_path_factory):
    """The testbed at its default size (what `make demo` trains on)."""
    from rmlab.data.synth import SynthSpec, write_testbed

    out = tmp_path_factory.mktemp("synth full")
    write_testbed(out, SynthSpec())
    return out


# Key overrides (not a `train=` group choice) so they also win over an experiment file's own train settings.
SMOKE = ["train.max_steps=2", "train.eval_every=0", "train.save_every=0", "tracking=disabled"]


def interrupt_after_checkpoint(monkeypatch, step: int):
    """Make training stop (KeyboardInterrupt) right after it writes the checkpoint of `step`, as a preempted job
    would; returns a function that puts the real checkpoint writer back."""
    from rmlab.train import recipe

    real_save = recipe.save_checkpoint

    def save_then_die(root, at, *args, **kwargs):
        path = real_save(root, at, *args, **kwargs)
        if at == step:
            raise KeyboardInterrupt("preempted")
        return path

    monkeypatch.setattr(recipe, "save_checkpoint", save_then_die)
    return lambda: monkeypatch.setattr(recipe, "save_checkpoint", real_save)
