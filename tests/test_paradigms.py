"""Critic-RM, GRM and LongCoT-GRM: their encodings, losses and verdicts checked against hand-worked values and plain
transformers calls, and each one learning the synthetic pairs."""

import json

import pytest
import torch
from shortcuts import threshold_for

from rmlab.config.compose import compose
from rmlab.data.adapters import load_pairs
from rmlab.errors import DataError
from rmlab.launch.job import run_config
from rmlab.paradigms import get_paradigm
from rmlab.paradigms.grm import LABELS, chosen_first, parse_answer, tally


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>both look fine</think><answer>2</answer>", 1),
        ("<answer>1</answer>", 0),
        ("<think>x</think><answer>Response 2</answer>", 1),
        ("<answer> **1** </answer>", 0),
        ("<answer>1</answer> then <answer>2</answer>", 1),  # the last answer decides
        ("<think>Response 1 is worse than 2</think> 2", 1),  # no tag: read after </think>
        ("<answer>1 or 2</answer>", None),  # both numbers: undecided
        ("<answer>12</answer>", None),  # part of another number
        ("<answer>1.5</answer>", None),
        ("<answer>3</answer>", None),
        ("<think>never finished", None),
        ("", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_votes_undo_the_order_and_a_tie_is_no_verdict():
    # (position named, position the chosen response was shown at)
    assert tally([(0, 0), (0, 1), (1, 1)]) == (0, [2, 1, 0])  # 2nd: "1" while chosen was second -> rejected
    assert tally([(1, 0), (None, 0), (0, 1)]) == (1, [0, 2, 1])
    assert tally([(0, 0), (0, 1)]) == (None, [1, 1, 0])
    assert tally([(None, 0), (None, 1)]) == (None, [0, 0, 2])


def test_single_order_reading_puts_the_chosen_response_first_for_about_half_the_pairs():
    ids = [f"pair-{i}" for i in range(400)]
    share = sum(chosen_first(i) for i in ids) / len(ids)
    assert 0.4 < share < 0.6
    assert [chosen_first(i) for i in ids] == [chosen_first(i) for i in ids]  # fixed by the id, not by chance


def _text_setup(synth_dir, name, *overrides, n=4):
    cfg = compose(["backbone=qwen2_5", "data_mix=synth_text", "tracking=disabled", f"paradigm={name}", *overrides])
    paradigm = get_paradigm(name)
    torch.manual_seed(0)
    model, processor = paradigm.build(cfg)
    encoder = paradigm.encoder(processor, cfg)
    pairs = load_pairs("ultrafeedback", str(synth_dir / "ultrafeedback" / "train.jsonl"), limit=n)
    return cfg, paradigm, model.eval(), encoder, pairs


def test_judge_shows_both_orders_with_the_right_label(synth_dir):
    cfg, grm, _, encoder, pairs = _text_setup(synth_dir, "grm")
    pair = pairs[0]
    item = encoder.encode(pair)
    tok = encoder.tokenizer
    for at, seq in enumerate(item.orders):
        shown = tok.decode(seq.prompt_ids)
        first, second = (pair.chosen, pair.rejected) if at == 0 else (pair.rejected, pair.chosen)
        assert shown.index(first) < shown.index(second)  # the chosen response at position `at`
        assert tok.decode(seq.completion) == LABELS[at]
    batch = grm.collate([item], tok.pad_token_id, cfg)
    # the label token is the one target of each row, and the input holds it where the loss reads it
    ids = batch["inputs"]["input_ids"]
    assert batch["lm_tokens"].tolist() == [encoder.label_ids[0], encoder.label_ids[1]]
    assert ids[batch["lm_rows"], batch["lm_cols"] + 1].tolist() == batch["lm_tokens"].tolist()


def test_grm_score_is_the_label_probability_averaged_over_both_orders(synth_dir):
    cfg, grm, model, encoder, pairs = _text_setup(synth_dir, "grm")
    items = [encoder.encode(p) for p in pairs]
    verdicts = grm.score(model, items, encoder, cfg)
    hf = model.generative_model()
    for item, verdict in zip(items, verdicts, strict=True):
        by_hand = []
        for at, seq in enumerate(item.orders):
            ids = torch.tensor([seq.prompt_ids + seq.before])
            logits = hf(input_ids=ids).logits[0, -1, encoder.label_ids].float()
            by_hand.append(logits.softmax(-1)[at].item())  # P(the chosen response's number)
            assert verdict["by_position"][at] == pytest.approx(by_hand[-1], abs=1e-5)
        p = sum(by_hand) / 2
        assert verdict["scores"] == pytest.approx([p, 1 - p], abs=1e-5)


def test_grm_reads_one_order_per_pair_when_asked(synth_dir):
    cfg, grm, model, encoder, pairs = _text_setup(synth_dir, "grm", "paradigm.both_orders=false", n=8)
    verdicts = grm.score(model, [encoder.encode(p) for p in pairs], encoder, cfg)
    assert [list(v["by_position"]) for v in verdicts] == [[0 if chosen_first(p.id) else 1] for p in pairs]


def test_longcot_trains_on_reasoning_then_answer_in_the_order_shown(synth_dir):
    cfg, _, _, encoder, pairs = _text_setup(synth_dir, "longcot")
    pair = pairs[0]
    reasons = (pair.meta["chosen_reason"], pair.meta["rejected_reason"])
    for at, seq in enumerate(encoder.encode(pair).orders):
        text = encoder.tokenizer.decode(seq.completion)
        first, second = reasons if at == 0 else reasons[::-1]
        assert text == f"<think>Response 1: {first} Response 2: {second}</think><answer>{LABELS[at]}</answer>"
        assert parse_answer(text) == at
        assert seq.completion[seq.meta["answer_at"]] == encoder.label_ids[at]


@pytest.mark.parametrize("layout", ["concat", "shared_prefix"])
def test_critic_targets_are_the_critique_tokens_of_each_response(synth_dir, layout):
    cfg, critic, _, encoder, pairs = _text_setup(synth_dir, "critic", f"train.pair_layout={layout}")
    items = [encoder.encode(p) for p in pairs]
    batch = critic.collate(items, encoder.tokenizer.pad_token_id, cfg)
    ids = batch["inputs"]["input_ids"]
    assert ids[batch["lm_rows"], batch["lm_cols"] + 1].tolist() == batch["lm_tokens"].tolist()
    text = encoder.tokenizer.decode(batch["lm_tokens"])
    for p in pairs:  # every critique is a target, in order
        assert p.meta["chosen_reason"] in text and p.meta["rejected_reason"] in text
    assert text.index(pairs[0].meta["chosen_reason"]) < text.index(pairs[0].meta["rejected_reason"])


def test_critic_loss_is_the_weighted_sum_of_its_two_parts(synth_dir):
    cfg, critic, model, encoder, pairs = _text_setup(synth_dir, "critic")
    batch = critic.collate([encoder.encode(p) for p in pairs], encoder.tokenizer.pad_token_id, cfg)
    losses = {}
    for bt, lm in ((1.0, 0.0), (0.0, 1.0), (0.5, 2.0)):
        cfg.paradigm.bt_weight, cfg.paradigm.lm_weight = bt, lm
        losses[bt, lm], metrics = critic.loss(model, batch, cfg)
    assert losses[0.0, 1.0].item() == pytest.approx(metrics["lm_loss"], rel=1e-5)
    expected = 0.5 * losses[1.0, 0.0] + 2.0 * losses[0.0, 1.0]
    assert losses[0.5, 2.0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_critic_without_critiques_in_the_data_names_the_pair_and_the_way_out(synth_dir):
    cfg = compose(["data_mix=synth_mm", "tracking=disabled", "paradigm=critic"])
    critic = get_paradigm("critic")
    _, processor = critic.build(cfg)
    pairs = load_pairs("rlaif_v", str(synth_dir / "rlaif_v" / "train.parquet"), limit=2)  # RLAIF-V has no critiques
    encoder = critic.encoder(processor, cfg)
    with pytest.raises(DataError, match=rf"pair {pairs[0].id} .* paradigm.critique=none"):
        critic.collate([encoder.encode(p) for p in pairs], 0, cfg)
    cfg.paradigm.critique = "none"
    encoder = critic.encoder(processor, cfg)
    batch = critic.collate([encoder.encode(p) for p in pairs], 0, cfg)
    assert batch["lm_tokens"].numel() == 0


@pytest.mark.parametrize("backbone", ["qwen2_5", "qwen2_5_vl"])
def test_batched_generation_equals_one_at_a_time(synth_dir, backbone):
    """Left padding must not change what a sequence generates (greedy)."""
    from rmlab.paradigms.tokens import generate, stop_ids

    mix, adapter, path = (
        ("synth_text", "ultrafeedback", "ultrafeedback/train.jsonl")
        if backbone == "qwen2_5"
        else ("synth_critic", "mm_rlhf", "mm_rlhf/train/dpo_pairs.jsonl")
    )
    cfg = compose([f"backbone={backbone}", f"data_mix={mix}", "tracking=disabled", "paradigm=longcot"])
    paradigm = get_paradigm("longcot")
    torch.manual_seed(0)
    model, processor = paradigm.build(cfg)
    encoder = paradigm.encoder(processor, cfg)
    seqs = [encoder.encode(p).orders[0] for p in load_pairs(adapter, str(synth_dir / path), limit=3)]
    assert len({s.length for s in seqs}) > 1  # different lengths: the batch is padded
    tok = encoder.tokenizer
    together = generate(model.eval(), seqs, tok.pad_token_id, stop_ids(tok), 12)
    alone = [generate(model, [s], tok.pad_token_id, stop_ids(tok), 12)[0] for s in seqs]
    assert together == alone


def test_a_judge_scores_two_response_benchmarks_and_refuses_best_of_n(synth_dir, tmp_path):
    """Pairwise benchmarks work with a judge; a benchmark that ranks more than two responses needs a scalar RM."""
    from rmlab.eval.benchmarks import get_benchmark
    from rmlab.eval.benchmarks.run import score_items
    from rmlab.eval.score import Scorer

    cfg, grm, model, encoder, _ = _text_setup(synth_dir, "grm")
    scorer = Scorer(model, encoder, grm, cfg, 4, False)
    rewardbench = get_benchmark("rewardbench").load(str(synth_dir / "benchmarks" / "rewardbench" / "filtered.jsonl"))
    predictions = score_items(scorer, rewardbench[:6])
    assert all(len(p["scores"]) == 2 and sum(p["scores"]) == pytest.approx(1.0) for p in predictions)
    rmbench = get_benchmark("rmbench").load(str(synth_dir / "benchmarks" / "rmbench" / "total_dataset.json"))
    with pytest.raises(DataError, match="score it with a scalar reward model"):
        score_items(scorer, rmbench[:2])


# Learning: 1000 steps on the default testbed (400 held-out pairs: chance is 50 +- 2.5). Each test passes only 4
# standard errors clear of chance and of the best answer-only shortcut on its split (tests/shortcuts.py: the longer
# answer, 52.1 on the text pairs, so >= 62.1; 53.25 on the multimodal ones, so >= 63.25); a judge read in both orders
# has a "first response" shortcut of exactly 50. The fixed seed makes each run deterministic on
# CPU. On the text pairs the judges learn nothing at this size (GRM 50.0 and Critic-RM 49.5 at lr 3e-4, 48.5 and
# 53.5 at 1e-3; GRM 128 wide and 4 layers still at chance loss after 580 steps): what they scored on the first
# testbed, 90.5 and 66.75, was its larger-number shortcut. They learn the multimodal pairs (`make test-slow`).
def _learned(tmp_path, full_synth_dir, *overrides):
    cfg = compose(
        [
            f"paths.runs={tmp_path}",
            f"data_mix.synth.dir={full_synth_dir}",
            "run.progress=false",
            "tracking=disabled",
            *overrides,
        ]
    )
    run = run_config(cfg)
    name = cfg.data_mix.test[0].name
    metrics = json.loads((run.eval_dir(name) / "metrics.json").read_text())
    best, score, needed = threshold_for(full_synth_dir, name)
    accuracy = metrics["pair_accuracy"]
    print(f"{name}: pair accuracy {accuracy}; needed {needed:.2f} (best shortcut: {best}, {score})")
    assert accuracy >= needed, f"{name}: {accuracy} is not 4 standard errors clear of chance and {best} ({score})"
    return metrics


# The shapes testbed needs a little more than the smallest tiny Qwen2.5-VL for the judges (at 64 wide and 2 layers
# the GRM stays at chance); still seconds per 100 steps.
WIDER_MM = [
    "data_mix=synth_critic",
    "scale.tiny.hidden_size=128",
    "scale.tiny.num_layers=4",
    "scale.tiny.intermediate_size=256",
]


# Measured (seed 0, 1000 steps, testbed 2): Critic-RM 88.0, GRM 82.25 (its two orders read alone: 74.25 and 87.0),
# LongCoT-GRM 80.75; all clear of 63.25. On the first testbed: 87.25, 75.75 (74.25 and 75.25 by order) and 61.25.
# A GRM holds each order read alone clear of the threshold too: a judge that had learned a position ("the first is
# better") would score about 100 in one order and 0 in the other, however its two orders average.
@pytest.mark.slow
@pytest.mark.parametrize(("paradigm", "lr"), [("critic", 3e-4), ("grm", 3e-4), ("longcot", 1e-3)])
def test_each_paradigm_learns_the_multimodal_pairs(tmp_path, full_synth_dir, paradigm, lr):
    m = _learned(tmp_path, full_synth_dir, f"paradigm={paradigm}", f"train.lr={lr}", *WIDER_MM)
    if paradigm == "grm":
        _, _, needed = threshold_for(full_synth_dir, "synth_shapes")
        position = m["pair_accuracy_by_position"]
        assert min(position.values()) >= needed, position
