"""`rmlab eval` on a finished run, and the demo experiment end to end: sweep, run directories, table."""

import json

import pytest
from conftest import SMOKE

from rmlab.cli import main
from rmlab.config.compose import compose
from rmlab.eval.score import metrics_for, pair_accuracy
from rmlab.launch.job import run_config


class _P:
    def __init__(self, category):
        self.category = category


def test_accuracy_is_strict_and_matches_a_hand_count():
    scores = [(1.0, 0.0), (0.5, 0.5), (0.0, 2.0), (3.0, -1.0)]  # right, tie (wrong), wrong, right
    verdicts = [{"scores": s} for s in scores]
    assert pair_accuracy(verdicts) == 0.5
    m = metrics_for([_P("a"), _P("a"), _P("b"), _P("b")], verdicts, {"overlong": 0})
    assert m["pair_accuracy"] == 50.0 and m["ties"] == 1 and m["unreadable"] == 0
    assert m["per_category"] == {"a": {"pair_accuracy": 50.0, "n": 2}, "b": {"pair_accuracy": 50.0, "n": 2}}


def test_a_judges_choice_counts_only_when_it_names_the_chosen_response():
    verdicts = [{"choice": 0}, {"choice": 1}, {"choice": None}, {"choice": 0}]  # right, wrong, unreadable, right
    m = metrics_for([_P("a")] * 4, verdicts, {})
    assert m["pair_accuracy"] == 50.0 and m["unreadable"] == 1 and m["ties"] == 0


def test_rmlab_eval_rescores_a_run_and_writes_predictions(workdir, tmp_path, synth_dir, capsys):
    run = run_config(compose([*workdir, "train.max_steps=3", "tracking=disabled"]))
    trained = json.loads((run.eval_dir("synth_shapes") / "metrics.json").read_text())

    out = tmp_path / "rescored"
    data = synth_dir / "rlaif_v" / "test.parquet"
    assert (
        main(
            [
                "eval",
                f"eval.model={run.path}",
                f"eval.data={data}",
                "eval.adapter=rlaif_v",
                f"eval.out={out}",
                "run.progress=false",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "eval" / "test" / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert len(rows) == metrics["n"] == 80
    assert rows[0]["id"] == "test-0" and {"reward_chosen", "reward_rejected"} <= set(rows[0])
    hand = 100.0 * sum(r["reward_chosen"] > r["reward_rejected"] for r in rows) / len(rows)
    assert metrics["pair_accuracy"] == pytest.approx(hand)
    assert metrics["pair_accuracy"] == pytest.approx(
        trained["pair_accuracy"]
    )  # the saved model scores as it did in training
    assert "pair accuracy" in capsys.readouterr().out


def test_rmlab_eval_without_a_model_is_a_one_line_error(capsys):
    assert main(["eval"]) == 2
    assert capsys.readouterr().err.strip().startswith("rmlab: error: eval.model is required")


def test_demo_sweep_trains_every_grid_point_and_builds_the_table(workdir, tmp_path, capsys):
    overrides = [*workdir, *SMOKE, "tracking=offline"]  # the table is rebuilt from the offline wandb logs
    assert main(["sweep", "demo", *overrides]) == 0
    out = capsys.readouterr().out
    assert "demo: 9 job(s)" in out and "demo: 9/9 done" in out
    runs = sorted((tmp_path / "runs" / "demo").glob("*/status.json"))
    assert len(runs) == 9 and all(json.loads(p.read_text())["state"] == "done" for p in runs)

    assert main(["tables", "demo", "--out", str(tmp_path / "results"), *overrides]) == 0
    md = (tmp_path / "results" / "demo.md").read_text()
    assert capsys.readouterr().out == md
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0] == "| layers | activation | Acc | Colour | Shape | Count | Position | MM-RLHF Acc | VL-RB | MMRB |"
    assert [line.split(" | ")[:2] for line in lines[1:]] == [["| 1", "none"], ["| 2", "silu"], ["| 3", "silu"]]
    assert all("(n=3)" in line for line in lines[1:])
    assert "runs in the grid 9, done 9, failed 0, running 0, missing 0" in md
    assert {p.suffix for p in (tmp_path / "results").iterdir()} == {".md", ".tex", ".csv", ".png"}

    # a second launch finds every run done and trains nothing
    assert main(["sweep", "demo", *overrides]) == 0
    out = capsys.readouterr().out
    assert "9 job(s), 0 to run" in out and "9 already done" in out


def test_table_cells_say_missing_when_nothing_ran(workdir, tmp_path):
    from rmlab.results.table import write_tables

    md, _ = write_tables("demo", tmp_path / "results", [*workdir, *SMOKE])
    assert md.count("3 missing") == 3 * 8 and "runs in the grid 9, done 0, failed 0, running 0, missing 9" in md


def test_rmlab_eval_scores_all_five_benchmarks_synthetic_files(workdir, tmp_path, capsys):
    from rmlab.eval.benchmarks import BENCHMARKS

    run = run_config(compose([*workdir, "train.max_steps=3", "tracking=disabled"]))
    names = ["mmrlhf", "vlrb", "mmrb", "rewardbench", "rmbench"]
    assert (
        main(["eval", f"eval.model={run.path}", f"eval.benchmarks=[{','.join(names)}]", "eval.bootstrap=20", *workdir])
        == 0
    )
    printed = capsys.readouterr().out
    for name in names:
        out = run.eval_dir(name)
        items = BENCHMARKS[name].load(json.loads((out / "metrics.json").read_text())["data"])
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [it.id for it in items]  # one row per benchmark row, in file order
        assert all(len(r["scores"]) == len(it.responses) for r, it in zip(rows, items, strict=True))
        metrics = json.loads((out / "metrics.json").read_text())
        for key in BENCHMARKS[name].headline:
            assert 0 <= metrics[key] <= 100 and len(metrics["ci95"][key]) == 2
        assert printed.count(f"{name}: ") == 1
