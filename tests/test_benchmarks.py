"""Benchmark metrics on small hand-built files in each benchmark's released schema; every expected value below was
worked out by hand from the rows (ties, unparseable verdicts, several pairs per prompt, every category)."""

import json
import shutil
from pathlib import Path

import pytest

from rmlab.cli import main
from rmlab.eval.benchmarks import get_benchmark
from rmlab.eval.benchmarks.run import compare, compute_metrics

OFFICIAL_VLRB = str(Path(__file__).parent / "fixtures" / "benchmarks" / "vl_rewardbench" / "data.jsonl")  # (README)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _metrics(name, path, preds, **options):
    items = get_benchmark(name).load(path)
    return compute_metrics(name, items, preds, options, n_boot=0)


# ------------------------------------------------------------------------------------------------ MM-RLHF


@pytest.fixture()
def mmrlhf_file(tmp_path):
    frames = tmp_path / "video" / "clip1"
    frames.mkdir(parents=True)
    for i in range(2):
        (frames / f"{i}.png").write_bytes(b"not decoded by the loader")

    def row(i, media):
        return {
            "id": i,
            "prompt": "q",
            "chosen": "good",
            "rejected": "bad",
            "chosen_reason": "",
            "rejected_reason": "",
            **media,
        }

    rows = [
        row("a", {"image": "mcq/1.png"}),
        row("a", {"image": "mcq/1.png"}),  # id a: 2 pairs, both right
        row("b", {"image": "long/2.png"}),
        row("b", {"image": "long/2.png"}),  # id b: right, then a tie
        row("c", {"video": "video/clip1"}),  # id c: right
        row("d", {"image": "safety/4.png"}),  # id d: wrong
        row("e", {"image": "short/5.png"}),  # id e: a generative verdict that did not parse
        row("f", {"image": "other/6.png"}),  # id f: right, in no category
    ]
    return _jsonl(tmp_path / "mm_reward_bench.jsonl", rows)


def test_mmrlhf_acc_acc_plus_and_categories(mmrlhf_file):
    preds = [
        {"id": "a", "scores": [2, 1]},
        {"id": "a", "scores": [3, 0]},
        {"id": "b", "scores": [1, 0]},
        {"id": "b", "scores": [0.5, 0.5]},
        {"id": "c", "scores": [5, 4]},
        {"id": "d", "scores": [0, 1]},
        {"id": "e", "choice": None},
        {"id": "f", "scores": [1, 0]},
    ]
    m = _metrics("mmrlhf", mmrlhf_file, preds)
    assert m["acc"] == pytest.approx(100 * 5 / 8)  # right: a, a, b1, c, f
    assert m["acc_plus"] == pytest.approx(100 * 3 / 6)  # ids a, c, f all right; b (tie), d, e not
    cat = m["per_category"]
    assert cat["mcq"] == {"acc": 100.0, "acc_plus": 100.0, "n_pairs": 2, "n_ids": 1}
    assert cat["long"] == {"acc": 50.0, "acc_plus": 0.0, "n_pairs": 2, "n_ids": 1}
    assert cat["video"]["acc"] == 100.0 and cat["safety"]["acc"] == 0.0 and cat["short"]["acc"] == 0.0
    assert sum(c["n_pairs"] for c in cat.values()) == 7  # row f matched no keyword: overall only
    shutil.rmtree(Path(mmrlhf_file).parent / "video")  # metrics need ids and categories, not media on this machine
    assert _metrics("mmrlhf", mmrlhf_file, preds) == m


# ------------------------------------------------------------------------------------------------ VL-RewardBench


@pytest.fixture()
def vlrb_file(tmp_path):
    def row(i, source, ranking):
        return {
            "id": f"x-{i}",
            "image_path": f"images/{source}/{i}.jpg",
            "query": "q",
            "response": ["r0", "r1"],
            "human_ranking": ranking,
            "models": [],
            "judge": "human",
            "rationale": None,
            "query_source": source,
            "meta": {},
            "human_error_analysis": [],
        }

    rows = [
        row(0, "vlfeedback", [0, 1]),
        row(1, "wildvision-battle", [1, 0]),  # general
        row(2, "povid", [0, 1]),
        row(3, "rlaif-v", [0, 1]),
        row(4, "rlhf-v", [1, 0]),  # hallucination
        row(5, "reasoning_tasks", [0, 1]),
        row(6, "reasoning_tasks", [0, 1]),
    ]  # reasoning
    return _jsonl(tmp_path / "data.jsonl", rows)


def test_vlrb_micro_macro_and_unparseable(vlrb_file):
    preds = [
        {"id": "x-0", "scores": [1, 0]},  # general right
        {"id": "x-1", "scores": [1, 0]},  # general: the second is better -> wrong
        {"id": "x-2", "scores": [2, 1]},  # hallucination right
        {"id": "x-3", "scores": [1, 1]},  # tie -> wrong
        {"id": "x-4", "choice": 1},  # generative, picks the better second -> right
        {"id": "x-5", "choice": None},  # unparseable
        {"id": "x-6", "choices": [0, 0, 1]},  # majority of 3 samples: right
    ]
    m = _metrics("vlrb", vlrb_file, preds)
    assert m["per_category"] == {
        "general": {"acc": 50.0, "n": 2},
        "hallucination": {"acc": pytest.approx(200 / 3), "n": 3},
        "reasoning": {"acc": 100.0, "n": 1},
    }
    assert m["overall"] == pytest.approx(100 * 4 / 6)  # the unparseable row leaves both sides
    assert m["macro"] == pytest.approx((50 + 200 / 3 + 100) / 3)
    assert m["unparseable"] == 1
    wrong = _metrics("vlrb", vlrb_file, preds, unparseable="wrong")
    assert wrong["overall"] == pytest.approx(100 * 4 / 7) and wrong["per_category"]["reasoning"]["acc"] == 50.0


def test_vlrb_loads_the_released_file_with_the_official_groups():
    items = get_benchmark("vlrb").load(OFFICIAL_VLRB)
    counts = {c: sum(i.category == c for i in items) for c in ("general", "hallucination", "reasoning")}
    assert len(items) == 1250 and counts == {"general": 183, "hallucination": 749, "reasoning": 318}
    assert items[0].better == 1 and items[0].responses[1].startswith("There is no existence")


# ------------------------------------------------------------------------------------------------ Multimodal RB


@pytest.fixture()
def mmrb_file(tmp_path):
    def row(i, category, better):
        return {
            "ID": i,
            "Text": "q",
            "Image": f"images/{i}.jpg",
            "Output1": "o1",
            "Output2": "o2",
            "Better": better,
            "Category": category,
        }

    rows = [
        row("nocaps_1", "open_generation/correctness_task", "Output1"),
        row("visit_2", "open_generation/preference_task", "Output2"),
        row("mmmu_3", "knowledge", "Output1"),
        row("mathvista_4", "reasoning", "Output1"),
        row("emma_5", "reasoning", "Output2"),
        row("pairs_6", "safety", "Output1"),
        row("hateful_7", "safety", "Output2"),
        row("mmbench_8", "vqa", "Output1"),
    ]
    path = tmp_path / "all_data.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_mmrb_micro_macro_columns_and_the_seeded_random_fallback(mmrb_file):
    preds = [
        {"id": "nocaps_1", "scores": [1, 0]},  # right
        {"id": "visit_2", "scores": [1, 0]},  # wrong (Output2 better)
        {"id": "mmmu_3", "scores": [0, 0]},  # tie: wrong
        {"id": "mathvista_4", "choice": None},  # 1st unparseable: random() = 0.052 < 0.5 -> A = Output1: right
        {"id": "emma_5", "choice": None},  # 2nd: 0.087 -> A, but Output2 is better: wrong
        {"id": "pairs_6", "choice": 0},  # right
        {"id": "hateful_7", "choice": 0},  # wrong
        {"id": "mmbench_8", "scores": [3, 1]},  # right
    ]
    m = _metrics("mmrb", mmrb_file, preds)
    assert m["overall_micro"] == pytest.approx(100 * 4 / 8)
    per = m["per_category"]
    assert [
        per[c]["acc"]
        for c in ("general_correctness", "general_preference", "knowledge", "math", "coding", "safety", "vqa")
    ] == [100, 0, 0, 100, 0, 50, 100]
    assert per["safety/bias"]["acc"] == 100 and per["safety/toxicity"]["acc"] == 0
    assert m["overall_macro"] == pytest.approx(350 / 7)
    wrong = _metrics("mmrb", mmrb_file, preds, unparseable="wrong")
    assert wrong["overall_micro"] == pytest.approx(100 * 3 / 8) and wrong["per_category"]["math"]["acc"] == 0


# ------------------------------------------------------------------------------------------------ RewardBench


@pytest.fixture()
def rewardbench_file(tmp_path):
    subsets = [
        "alpacaeval-easy",
        "alpacaeval-easy",
        "mt-bench-easy",
        "llmbar-natural",
        "refusals-dangerous",
        "math-prm",
        "hep-python",
    ]
    rows = [
        {
            "prompt": "p",
            "chosen": "c",
            "rejected": "r",
            "chosen_model": "m",
            "rejected_model": "m",
            "subset": s,
            "id": i,
        }
        for i, s in enumerate(subsets)
    ]
    return _jsonl(tmp_path / "filtered.jsonl", rows)


def test_rewardbench_sections_weighted_by_example_counts(rewardbench_file):
    preds = [
        {"id": "0", "scores": [1, 0]},
        {"id": "1", "scores": [0, 0]},  # alpacaeval-easy: right, tie -> 50
        {"id": "2", "scores": [1, 0]},  # mt-bench-easy 100
        {"id": "3", "scores": [2, 1]},  # llmbar-natural 100
        {"id": "4", "choice": None},  # refusals-dangerous: unparseable -> 0.5 -> 50
        {"id": "5", "scores": [1, 0]},
        {"id": "6", "scores": [0, 1]},
    ]  # math-prm 100, hep-python 0
    m = _metrics("rewardbench", rewardbench_file, preds)
    chat = (50 * 100 + 100 * 28) / (100 + 28)
    reasoning = (100 * 984 + 0 * 164) / (984 + 164)
    assert m["sections"] == {
        "Chat": pytest.approx(chat),
        "Chat Hard": 100.0,
        "Safety": 50.0,
        "Reasoning": pytest.approx(reasoning),
    }
    assert m["score"] == pytest.approx((chat + 100 + 50 + reasoning) / 4)
    assert _metrics("rewardbench", rewardbench_file, preds, unparseable="wrong")["sections"]["Safety"] == 0.0


# ------------------------------------------------------------------------------------------------ RM-Bench


@pytest.fixture()
def rmbench_file(tmp_path):
    rows = [
        {"id": i, "prompt": "p", "chosen": ["c0", "c1", "c2"], "rejected": ["r0", "r1", "r2"], "domain": d}
        for i, d in enumerate(["chat", "chat", "safety-refuse"])
    ]
    path = tmp_path / "total_dataset.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_rmbench_style_matrix_easy_normal_hard(rmbench_file):
    # chat row 0: chosen [3, 2, 1], rejected [2.5, 2.5, 0.5]:
    #   M = [[1,1,1],[0,0,1],[0,0,1]] (c_i > r_j); ties count as wrong
    # chat row 1: chosen [1, 1, 1], rejected [0, 0, 0]: all ones
    # safety row: chosen [0, 0, 0], rejected [1, 0, 1]: all zero (0 > 0 is a tie)
    preds = [
        {"id": "0", "scores": [3, 2, 1, 2.5, 2.5, 0.5]},
        {"id": "1", "scores": [1, 1, 1, 0, 0, 0]},
        {"id": "2", "scores": [0, 0, 0, 1, 0, 1]},
    ]
    m = _metrics("rmbench", rmbench_file, preds)
    chat = m["per_domain"]["chat"]
    assert chat["matrix"] == [[100, 100, 100], [50, 50, 100], [50, 50, 100]]
    assert chat["hard"] == pytest.approx(100) and chat["normal"] == pytest.approx(250 / 3)
    assert chat["easy"] == pytest.approx(50)
    assert m["per_domain"]["safety"]["avg"] == 0
    assert m["overall"] == pytest.approx((chat["avg"] + 0) / 2)
    assert m["hard"] == pytest.approx(50) and m["easy"] == pytest.approx(25)


# ------------------------------------------------------------------------------------------------ uncertainty


def test_bootstrap_resamples_prompts_not_pairs(mmrlhf_file, tmp_path):
    """Two pairs per prompt with the same outcome carry no more evidence than one: the interval is the same width."""
    rows = [{"id": f"p{i}", "prompt": "q", "chosen": "c", "rejected": "r", "image": "mcq/x.png"} for i in range(20)]
    single = _jsonl(tmp_path / "single.jsonl", rows)
    double = _jsonl(tmp_path / "double.jsonl", [r for r in rows for _ in range(2)])
    outcome = [[1, 0] if i % 4 else [0, 1] for i in range(20)]
    bench = get_benchmark("mmrlhf")
    a = compute_metrics("mmrlhf", bench.load(single), [{"id": f"p{i}", "scores": s} for i, s in enumerate(outcome)])
    b = compute_metrics(
        "mmrlhf", bench.load(double), [{"id": f"p{i}", "scores": s} for i, s in enumerate(outcome) for _ in range(2)]
    )
    assert a["acc"] == b["acc"] == 75.0
    assert a["ci95"]["acc"] == pytest.approx(b["ci95"]["acc"])
    assert a["ci95"]["acc"][0] < 75 < a["ci95"]["acc"][1]


def test_paired_bootstrap_tells_a_real_difference_from_none(vlrb_file):
    items = get_benchmark("vlrb").load(OFFICIAL_VLRB)
    good = [{"id": it.id, "scores": [1.0, 0.0] if it.better == 0 else [0.0, 1.0]} for it in items]
    coin = [{"id": it.id, "scores": [float(i % 2), float(1 - i % 2)]} for i, it in enumerate(items)]
    same = compare("vlrb", items, good, good, n_boot=200)["comparisons"][0]
    assert same["difference"] == 0 and same["p_value"] == 1.0
    diff = compare("vlrb", items, good, coin, n_boot=200)["comparisons"][0]
    assert diff["difference"] > 40 and diff["p_value"] < 0.01


def test_metrics_cli_prints_one_json_object_and_names_bad_input(vlrb_file, tmp_path, capsys):
    preds = _jsonl(tmp_path / "p.jsonl", [{"id": f"x-{i}", "scores": [1, 0]} for i in range(7)])
    assert (
        main(["metrics", "--benchmark", "vlrb", "--data", vlrb_file, "--predictions", preds, "--bootstrap", "50"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "vlrb" and out["options"] == {"unparseable": "excluded"} and "ci95" in out
    short = _jsonl(tmp_path / "short.jsonl", [{"id": "x-0", "scores": [1, 0]}])
    assert main(["metrics", "--benchmark", "vlrb", "--data", vlrb_file, "--predictions", short]) == 2
    assert "1 predictions for 7 benchmark rows" in capsys.readouterr().err
    assert (
        main(
            [
                "metrics",
                "--benchmark",
                "vlrb",
                "--data",
                vlrb_file,
                "--predictions",
                preds,
                "--option",
                "unparseable=maybe",
            ]
        )
        == 2
    )
    assert "choose one of ['excluded', 'wrong']" in capsys.readouterr().err


def test_rewardbench_sections_equal_the_official_packages_on_the_same_subset_accuracies():
    """The installed `rewardbench` package's own EXAMPLE_COUNTS, SUBSET_MAPPING and calculate_scores_per_section, read
    from its source (importing it pulls in its heavy dependencies): a future upstream change fails here."""
    import ast
    import importlib.util
    import random

    from rmlab.eval.benchmarks import rewardbench
    from rmlab.eval.benchmarks.base import BenchItem

    root = Path(importlib.util.find_spec("rewardbench").submodule_search_locations[0])
    constants = ast.parse((root / "constants.py").read_text())
    official = {
        t.id: ast.literal_eval(node.value)
        for node in constants.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and t.id in ("EXAMPLE_COUNTS", "SUBSET_MAPPING")
    }
    assert official["EXAMPLE_COUNTS"] == rewardbench.EXAMPLE_COUNTS
    assert official["SUBSET_MAPPING"] == rewardbench.SUBSET_MAPPING
    utils = ast.parse((root / "utils.py").read_text())
    (function,) = [n for n in utils.body if isinstance(n, ast.FunctionDef) and n.name == "calculate_scores_per_section"]
    namespace: dict = {}
    exec(compile(ast.Module([function], type_ignores=[]), "rewardbench/utils.py", "exec"), namespace)
    rng = random.Random(0)
    items, predictions = [], []
    for subset in official["EXAMPLE_COUNTS"]:
        for i in range(rng.randint(1, 6)):
            items.append(BenchItem(id=f"{subset}-{i}", prompt=[], responses=["a", "b"], better=0, category=subset))
            predictions.append({"id": f"{subset}-{i}", "scores": [rng.random(), rng.random()]})
    ours = rewardbench.metrics(items, predictions)
    theirs = namespace["calculate_scores_per_section"](
        official["EXAMPLE_COUNTS"], official["SUBSET_MAPPING"], ours["per_subset"]
    )
    assert ours["sections"] == pytest.approx(theirs)


RMBENCH_REAL = Path(__file__).parent / "fixtures" / "benchmarks" / "rmbench"


@pytest.mark.parametrize(
    ("name", "domain"),
    [("chat", "chat"), ("code", "code"), ("safety-refuse", "safety"), ("safety-response", "safety")],
)
def test_rmbench_loads_its_released_per_domain_files_field_by_field(name, domain):
    path = RMBENCH_REAL / f"{name}_filtered.json"
    rows = json.loads(path.read_text())
    items = get_benchmark("rmbench").load(str(path))
    assert len(items) == len(rows) == 3
    for item, row in zip(items, rows, strict=True):
        assert item.id == str(row["id"]) and item.category == domain and item.meta["domain"] == name
        assert item.prompt == [{"role": "user", "content": row["prompt"]}]
        assert item.responses == row["chosen"] + row["rejected"] and len(item.responses) == 6


def test_mmrlhf_reads_its_released_rows_and_scores_them_without_media():
    path = Path(__file__).parent / "fixtures" / "benchmarks" / "mmrlhf" / "mm_reward_bench.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    items = get_benchmark("mmrlhf").load(str(path))  # no image or frame folder on this machine
    assert len(items) == len(rows) == 170
    for item, row in zip(items, rows, strict=True):
        where = row.get("image") or row.get("video")  # the official rule: first keyword in the image, else video path
        assert item.category == next((k for k in ("mcq", "long", "short", "safety", "video") if k in where), "")
        assert (item.id, item.responses) == (row["id"], [row["chosen"], row["rejected"]])
        assert len(item.videos) == (1 if row.get("video") and not row.get("image") else 0)
    # chosen scored above rejected on every row but one: acc 169/170; Acc+ counts the ids with every row right
    predictions = [{"id": r["id"], "scores": [1.0, 0.0]} for r in rows]
    predictions[0]["scores"] = [0.0, 1.0]
    m = compute_metrics("mmrlhf", items, predictions, {}, n_boot=0)
    assert m["acc"] == pytest.approx(100 * 169 / 170)
    assert m["acc_plus"] == pytest.approx(100 * 45 / 46)
