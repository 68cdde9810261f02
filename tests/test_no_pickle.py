"""Nothing rmlab reads can run code: a planted pickle, whose unpickling would create a marker file, in the tables'
parse cache, in the encoding cache and in a checkpoint is met by rmlab's normal commands; the marker never appears,
the command says what it ignored, and the result is the one without the planted file."""

import pathlib
import pickle
import re
from pathlib import Path

import pytest
import torch
from conftest import SMOKE, interrupt_after_checkpoint

from rmlab.config.compose import compose
from rmlab.launch.job import run_config
from rmlab.launch.signature import run_dir
from rmlab.models.reward_model import load_reward_model
from rmlab.results.table import write_tables

ROOT = Path(__file__).resolve().parents[1]


class Planted:
    """Unpickling this creates `marker`: what a tampered file on a shared filesystem would do, worse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Planted(marker)))
    assert not marker.exists()


def test_the_tables_parse_cache(workdir, tmp_path, capsys):
    from test_tracking import _log_run

    from rmlab.launch.grid import grid_runs

    overrides = [*workdir, f"paths.cache={tmp_path / 'cache'}", "tracking=offline", "head=linear,mlp2_silu"]
    for job in grid_runs("demo", [*overrides, "run.seed=0"]):
        _log_run(job.cfg, job.run, {"eval/synth_shapes/pair_accuracy": 70.0})
    clean, _ = write_tables("demo", tmp_path / "results", [*overrides, "run.seed=0"])
    cache = tmp_path / "cache" / "wandb_runs" / "demo.json"
    assert cache.exists()
    marker = tmp_path / "owned"
    _plant(cache, marker)
    capsys.readouterr()
    again, _ = write_tables("demo", tmp_path / "results", [*overrides, "run.seed=0"])
    assert not marker.exists() and again == clean
    assert "ignored the parse cache" in capsys.readouterr().err


def test_the_encoding_cache(workdir, tmp_path, capsys):
    cache = tmp_path / "shared cache"
    first = run_config(compose([*workdir, *SMOKE, f"paths.cache={cache}"]))
    entries = sorted((cache / "encoded").glob("*.safetensors"))
    assert entries and first.status()["state"] == "done"
    marker = tmp_path / "owned"
    for entry in entries:
        _plant(entry, marker)
    capsys.readouterr()
    planted = run_config(compose([*workdir, *SMOKE, f"paths.cache={cache}", "run.seed=1"]))
    assert not marker.exists() and "ignored the encoding cache entry" in capsys.readouterr().err
    other = [o.replace(str(tmp_path / "runs"), str(tmp_path / "clean")) for o in workdir]
    clean = run_config(compose([*other, *SMOKE, f"paths.cache={tmp_path / 'fresh cache'}", "run.seed=1"]))
    a = (planted.eval_dir("synth_shapes") / "predictions.jsonl").read_text()
    assert a == (clean.eval_dir("synth_shapes") / "predictions.jsonl").read_text()


def test_a_checkpoint(workdir, tmp_path, monkeypatch, capsys):
    short = ["train.max_steps=6", "run.save_every=2", "run.keep_checkpoints=3", "tracking=disabled"]
    straight = run_config(compose([*workdir, *short]))
    other = [o.replace(str(tmp_path / "runs"), str(tmp_path / "runs2")) for o in workdir]
    cfg = compose([*other, *short])
    restore = interrupt_after_checkpoint(monkeypatch, step=4)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg)
    restore()
    run = run_dir(cfg)
    marker = tmp_path / "owned"
    _plant(run.checkpoints / "step_00000004" / ".metadata", marker)
    capsys.readouterr()
    resumed = run_config(cfg)
    out = capsys.readouterr().out
    assert not marker.exists()
    assert "checkpoint step_00000004 does not read" in out and "resumed from step_00000002" in out
    a, b = (load_reward_model(r.model)[0].state_dict() for r in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run as without the planted file


def test_no_pickle_is_read_anywhere_in_rmlab():
    """A rule over the source: no pickle.load(s), no torch.load that may unpickle. (The checkpoint reader's
    Unpickler subclass builds DCP's metadata classes only; submitit's own job pickles are submitit's.)"""
    found = []
    for f in sorted((ROOT / "rmlab").rglob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"pickle\.loads?\(|weights_only\s*=\s*False", code):
                found.append(f"{f.relative_to(ROOT)}:{n}")
            if "torch.load(" in code and "weights_only=True" not in code:
                found.append(f"{f.relative_to(ROOT)}:{n}")
    assert not found, f"code that may unpickle what it reads: {found}"
