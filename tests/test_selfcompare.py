"""SkyMath-style self-compare fine-tuning (our reading): the conversations it builds, and the stage end to end."""

import json
from types import SimpleNamespace

from rmlab.config.compose import compose
from rmlab.data.adapters import load_pairs
from rmlab.data.records import PreferencePair
from rmlab.launch.job import run_config
from rmlab.train.selfcompare import self_compare_row

SETTINGS = SimpleNamespace(
    include_correct=False,
    use_reference=True,
    reflection_prompt="Compare with {reference}.",
    reflection_prompt_blind="Check it.",
)
QUESTION = PreferencePair(
    id="q7", prompt=[{"role": "user", "content": "Which is larger, 34 or 44?"}], chosen="44", rejected="34"
)


def test_a_wrong_answer_becomes_a_comparison_and_a_correction():
    row = self_compare_row(QUESTION, "34", SETTINGS)
    assert [m["role"] for m in row["chosen"]] == ["user", "assistant", "user", "assistant"]
    assert row["chosen"][1]["content"] == "34" and row["chosen"][2]["content"] == "Compare with 44."
    assert (
        row["chosen"][3]["content"]
        == "My answer, 34, differs from the reference, 44: it is wrong.\nCorrected answer: 44"
    )
    assert row["rejected"][:3] == row["chosen"][:3] and row["source"] == "selfcompare-wrong"


def test_right_answers_are_kept_only_when_asked_and_the_blind_prompt_hides_the_reference():
    assert self_compare_row(QUESTION, " 44 ", SETTINGS) is None
    kept = self_compare_row(QUESTION, "44", SimpleNamespace(**{**vars(SETTINGS), "include_correct": True}))
    assert kept["chosen"][3]["content"].startswith("My answer, 44, matches the reference, 44: it is right.")
    blind = self_compare_row(QUESTION, "34", SimpleNamespace(**{**vars(SETTINGS), "use_reference": False}))
    assert blind["chosen"][2]["content"] == "Check it." and "44" not in blind["chosen"][2]["content"]


def test_the_stage_builds_its_data_from_the_policys_answers_and_fine_tunes_it(workdir, synth_dir):
    text = [*workdir, "tracking=disabled", "backbone=qwen2_5", "data_mix=synth_text", "eval.benchmarks=[]"]
    policy = run_config(compose([*text, "paradigm=sft", "train.max_steps=20", "train.lr=1e-3"]))
    run = run_config(
        compose(
            [
                *text,
                "stage=selfcompare",
                f"selfcompare.policy={policy.path}",
                "selfcompare.max_questions=40",
                "train.max_steps=3",
            ]
        )  # fmt: skip
    )
    assert run.status()["state"] == "done"
    counts = json.loads((run.path / "selfcompare_counts.json").read_text())
    assert (
        counts["questions"] == 40 and counts["right"] + counts["wrong"] == 40 and counts["examples"] == counts["wrong"]
    )
    pairs = load_pairs("tulu3", str(run.path / "selfcompare.jsonl"))  # read back by the real adapter
    assert len(pairs) == counts["examples"]
    right = {
        p.prompt[0]["content"]: p.chosen
        for p in load_pairs("ultrafeedback", str(synth_dir / "ultrafeedback" / "train.jsonl"))
    }
    for p in pairs:
        question, own = p.prompt[0]["content"], p.prompt[1]["content"]
        assert p.chosen.endswith(f"Corrected answer: {right[question]}") and own != right[question]
    assert len(pairs[0].prompt) == 3  # question, the policy's answer, the reflection turn
    assert json.loads((run.eval_dir("synth_text") / "metrics.json").read_text())["n"] == 80
    assert any(run.model.iterdir())
