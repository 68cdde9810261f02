"""The ensemble axis: weights worked out by hand from given member predictions, routing by input type, and an
ensemble of trained tiny reward models evaluated with `rmlab eval`."""

import json
import math

import pytest
from conftest import SMOKE

from rmlab.cli import main
from rmlab.config.compose import compose
from rmlab.data.records import PreferencePair
from rmlab.errors import ConfigError
from rmlab.eval.ensemble import EnsembleScorer, Route, Standardizer, member_scores, weights
from rmlab.launch.job import run_config

# Two members' (chosen, rejected) scores on four validation pairs.
M1 = [(2.0, 1.0), (0.0, 1.0), (3.0, 0.0), (1.0, 1.0)]  # right, wrong, right, tie (wrong): accuracy 0.5
M2 = [(1.0, 0.0), (2.0, 1.0), (0.0, 1.0), (5.0, 1.0)]  # right, right, wrong, right: accuracy 0.75
# Margins: M1 (1 - 1 + 3 + 0) / 4 = 0.75, M2 (1 + 1 - 1 + 4) / 4 = 1.25.
# Standardized over all 8 scores: M1 mean 9/8, sum of squared deviations 6.875; M2 mean 11/8, 17.875.
STD1, STD2 = math.sqrt(6.875 / 8), math.sqrt(17.875 / 8)


def test_weights_by_hand():
    assert weights("average", [M1, M2]) == [0.5, 0.5]
    assert weights("accuracy", [M1, M2]) == pytest.approx([0.5 / 1.25, 0.75 / 1.25])  # 0.4, 0.6
    assert weights("confidence", [M1, M2]) == pytest.approx([0.75 / 2.0, 1.25 / 2.0])  # 0.375, 0.625


def test_standardizer_is_the_population_z_score_of_all_scores():
    s = Standardizer.fit(M1)
    assert (s.mean, s.std) == pytest.approx((9 / 8, STD1))
    assert s(3.0) == pytest.approx((3.0 - 9 / 8) / STD1)
    assert Standardizer.fit([(1.0, 1.0)]).std == 1.0  # a constant member is shifted, not divided by zero


def test_a_member_below_chance_weighs_nothing_and_all_below_is_an_error():
    worse = [(0.0, 1.0), (0.0, 2.0)]
    assert weights("confidence", [M2, worse]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="at or below chance"):
        weights("accuracy", [worse, worse])


def test_a_judge_that_only_chooses_counts_as_one_and_zero():
    assert member_scores({"choice": 0}) == (1.0, 0.0)
    assert member_scores({"choice": 1}) == (0.0, 1.0)
    assert member_scores({"choice": None}) == (0.5, 0.5)
    assert member_scores({"scores": [0.7, 0.3]}) == (0.7, 0.3)


class _Given:
    """A member whose predictions are given: pair id -> (chosen, rejected)."""

    def __init__(self, by_id):
        self.by_id = by_id
        self.seen = []

    def score_pairs(self, pairs, desc=""):
        self.seen += [p.id for p in pairs]
        kept = [p for p in pairs if p.id in self.by_id]
        return [{"scores": list(self.by_id[p.id])} for p in kept], kept, {}


def _pair(pid, image=False):
    images = ["x.png"] if image else []
    return PreferencePair(id=pid, prompt=[{"role": "user", "content": "q"}], chosen="a", rejected="b", images=images)


def test_the_combined_score_is_the_weighted_sum_of_standardized_scores():
    val = [_pair(f"v{i}", image=True) for i in range(4)]
    m1 = _Given({p.id: s for p, s in zip(val, M1, strict=True)} | {"t": (4.0, 2.0)})
    m2 = _Given({p.id: s for p, s in zip(val, M2, strict=True)} | {"t": (3.0, 3.0)})
    route = Route.fit(["m1", "m2"], [m1, m2], "confidence", True, val, "all")
    w1 = (0.75 / STD1) / (0.75 / STD1 + 1.25 / STD2)  # margins in standardized units
    assert route.weights == pytest.approx([w1, 1 - w1])
    [verdict], _ = route.score([_pair("t", image=True)], "test")
    chosen = w1 * (4.0 - 9 / 8) / STD1 + (1 - w1) * (3.0 - 11 / 8) / STD2
    rejected = w1 * (2.0 - 9 / 8) / STD1 + (1 - w1) * (3.0 - 11 / 8) / STD2
    assert verdict["scores"] == pytest.approx([chosen, rejected])
    assert verdict["members"] == {"m1": [4.0, 2.0], "m2": [3.0, 3.0]}
    raw = Route.fit(["m1", "m2"], [m1, m2], "confidence", False, val, "all")
    assert raw.weights == pytest.approx([0.375, 0.625])  # standardize=false: the raw margins


def test_routing_sends_text_only_pairs_to_the_text_member_alone():
    text = [_pair("t0"), _pair("t1")]
    mm = [_pair("i0", image=True), _pair("i1", image=True)]
    scores = {p.id: (1.0, 0.0) for p in text + mm}
    text_member, mm_member = _Given(scores), _Given(scores)
    ensemble = EnsembleScorer(
        {
            "text": Route(["text"], [text_member], [1.0], [Standardizer()]),
            "other": Route(["mm"], [mm_member], [1.0], [Standardizer()]),
        }
    )
    verdicts, kept, _ = ensemble.score_pairs([mm[0], text[0], mm[1], text[1]])
    assert [p.id for p in kept] == ["i0", "t0", "i1", "t1"]  # the input's order
    assert [v["route"] for v in verdicts] == ["other", "text", "other", "text"]
    assert text_member.seen == ["t0", "t1"] and mm_member.seen == ["i0", "i1"]


def test_an_ensemble_of_trained_models_through_rmlab_eval(workdir, tmp_path, capsys, monkeypatch):
    """Two tiny multimodal members and a tiny text member, routed: text pairs are scored by the text member alone,
    with its standardized score; the weights written down are the ones the validation pairs give; the members are
    loaded one at a time, never two in memory together."""
    import gc
    import weakref

    from rmlab.eval import ensemble as ensemble_module

    real_load, loaded = ensemble_module.load_scorer, []

    def load_alone(*args, **kwargs):
        gc.collect()
        assert not [m for m in loaded if m() is not None], "a member loaded while another is in memory"
        scorer, run_dir = real_load(*args, **kwargs)
        loaded.append(weakref.ref(scorer.model))
        return scorer, run_dir

    monkeypatch.setattr(ensemble_module, "load_scorer", load_alone)
    mm = [run_config(compose([*workdir, *SMOKE, f"run.seed={seed}", "data_mix=synth_mm"])).path for seed in (0, 1)]
    text = run_config(compose([*workdir, *SMOKE, "backbone=qwen2_5", "data_mix=synth_text"])).path
    out = [
        *workdir,
        "data_mix=synth_all",
        "ensemble=route",
        "ensemble.combine=accuracy",
        f"ensemble.members=[{mm[0]},{mm[1]}]",
        f"ensemble.text_member={text}",
        "ensemble.val_pairs=60",
        "tracking=disabled",
    ]
    assert main(["eval", *out]) == 0
    assert len(loaded) == 3  # each member once
    monkeypatch.setattr(ensemble_module, "load_scorer", real_load)  # a policy's reward (below) keeps them loaded
    cfg = compose(out)
    run = next((tmp_path / "runs").glob(f"*/{_signature(cfg)}"))
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    summary = json.loads((run / "ensemble.json").read_text())
    assert set(summary["text"]) == {text.name} and set(summary["other"]) == {mm[0].name, mm[1].name}
    assert sum(m["weight"] for m in summary["other"].values()) == pytest.approx(1.0)

    text_rows = [json.loads(line) for line in (run / "eval" / "synth_text" / "predictions.jsonl").open()]
    own = {
        r["id"]: r for r in map(json.loads, (text / "eval" / "synth_text" / "predictions.jsonl").open())
    }  # the text member's own scores, from its training run's evaluation
    z = summary["text"][text.name]
    for row in text_rows:
        assert row["route"] == "text" and list(row["members"]) == [text.name]
        expected = (own[row["id"]]["reward_chosen"] - z["mean"]) / z["std"]
        assert row["reward_chosen"] == pytest.approx(expected, abs=1e-4)
    mm_rows = [json.loads(line) for line in (run / "eval" / "synth_shapes" / "predictions.jsonl").open()]
    assert mm_rows and all(r["route"] == "other" and len(r["members"]) == 2 for r in mm_rows)

    # the ensemble run serves as a policy's reward model: text prompts get the text member's standardized score
    from rmlab.eval.score import load_scorer
    from rmlab.eval.standalone import load_reward_scorer
    from rmlab.rl.rewards import Prompt, compute_rewards, model_scores

    prompt = Prompt("q", [{"role": "user", "content": "Which is larger, 34 or 44?"}], "44")
    rewards = compute_rewards("model", [prompt], [["44", "34"]], load_reward_scorer(run, cfg), "raw")[0]
    own = model_scores(load_scorer(text, cfg)[0], [prompt], [["44", "34"]])[0]
    assert rewards == pytest.approx([(o - z["mean"]) / z["std"] for o in own], abs=1e-4)

    # a done ensemble is skipped; a member that does not resolve is named
    capsys.readouterr()
    assert main(["eval", *out]) == 0
    assert "already done, skipped" in capsys.readouterr().out
    assert main(["eval", *[o for o in out if not o.startswith("ensemble.members=")], "ensemble.members=[nope]"]) == 2
    assert "ensemble member 'nope'" in capsys.readouterr().err


def _signature(cfg):
    from rmlab.launch.signature import signature

    return signature(cfg)
