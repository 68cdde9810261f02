"""`rmlab sweep X && rmlab tables X` on tiny versions of the grids whose rows mix stages (ensembles after their
members, policies after the runs they read, judges beside reward models): every cell of the table has a number,
read back from the offline wandb logs."""

import re

import pytest

from rmlab.cli import main

TINY = [
    "train.max_steps=2",
    "train.eval_every=0",
    "run.save_every=0",
    "eval.bootstrap=0",
    "tracking=offline",
    "scale.tiny.hidden_size=64",  # the experiments widen some models; the smallest one is enough here
    "scale.tiny.num_layers=2",
    "scale.tiny.intermediate_size=128",
    "paradigm.max_new_tokens=8",  # what an untrained judge or critic writes before it is cut
    "ensemble.val_pairs=40",
    "rl.steps=1",
    "rl.prompts_per_step=2",
    "rl.group_size=2",
    "rl.max_new_tokens=4",
    "rl.eval_prompts=8",
]
NUMBER = re.compile(r"^-?\d+\.\d(?: ± \d+\.\d)? \(n=\d+\)$")


# confidence weights need a member above chance on the validation pairs: a few more steps
STEPS = {"ensembles": ["train.max_steps=60", "train.lr=1e-3"]}


@pytest.mark.parametrize(("experiment", "rows"), [("ensembles", 6), ("paradigms", 5), ("rl_rewards", 4)])
def test_every_cell_of_the_table_has_a_number(experiment, rows, workdir, tmp_path, capsys):
    overrides = [*workdir, *TINY, *STEPS.get(experiment, [])]
    assert main(["sweep", experiment, *overrides]) == 0
    capsys.readouterr()
    assert main(["tables", experiment, "--out", str(tmp_path / "results"), *overrides]) == 0
    md = capsys.readouterr().out
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    assert len(table) == rows, md
    ours = [h for h in header if h != "label" and "(paper)" not in h and h != "Δ"]
    assert len(ours) >= 4
    for row in table:
        cells = dict(zip(header, row, strict=True))
        assert all(NUMBER.match(cells[h]) for h in ours), f"{row[0]}: {[cells[h] for h in ours]}"
    assert "missing 0" in md and "failed 0" in md
