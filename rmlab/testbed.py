"""The synthetic testbed: preference pairs with real, learnable signal, written in real datasets' on-disk schemas.

Multimodal pairs are images of shapes drawn with Pillow and a question about colour, shape, count or position; the
chosen answer is right for the image and the rejected one is a plausible hallucination (another value of the same
kind). They are written as RLAIF-V parquet (image bytes inside). Text pairs (object colours, digit comparison,
one-digit sums, copying a phrase) are written as raw UltraFeedback jsonl: one instruction with rated completions.
The evidence separating chosen from rejected is always visible to a small model: a colour, a count, a side, a word.

Every example also carries templated critiques that say what is right or wrong about each answer ("Right: the shape
is red." / "Wrong: the shape is red, not blue."), as MM-RLHF's human reasons and UltraFeedback's critiques do: the
multimodal pairs are written a second time in MM-RLHF's `dpo_pairs.jsonl` schema with them (Critic-RM and
LongCoT-GRM train on those), and the text pairs carry them in UltraFeedback's `critique` field. A `val` split, drawn
after every other split and benchmark, holds pairs for choices made after training (ensemble weights).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import fields
from pathlib import Path

from rmlab.config.schema import SynthSpec
from rmlab.eval.benchmarks import BENCHMARKS, SynthExamples
from rmlab.util.atomic import file_lock

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")
OBJECT_COLOURS = {
    **dict.fromkeys(("banana", "lemon", "sun", "corn", "canary", "daffodil", "sunflower", "egg yolk"), "yellow"),
    **dict.fromkeys(("grass", "leaf", "frog", "lime", "cucumber", "broccoli", "pea", "emerald"), "green"),
    **dict.fromkeys(("sky", "sea", "sapphire", "blueberry", "bluebird", "cornflower", "ocean", "denim"), "blue"),
    **dict.fromkeys(("tomato", "strawberry", "cherry", "ruby", "ladybird", "raspberry", "fire engine", "poppy"), "red"),
}
FACT_TEMPLATES = (
    "What colour is a {}?",
    "Which colour does a {} have?",
    "Name the colour of a {}.",
    "A {} is which colour?",
    "Tell me the colour of a {}.",
    "What is the colour of a {}?",
    "Say which colour a {} is.",
    "Of which colour is a {}?",
)
SUM_TEMPLATES = ("What is {}+{}?", "{} plus {} is?", "Add {} and {}.", "Compute {}+{}.")
COPY_WORDS = (
    *("cat", "dog", "sun", "tree", "book", "fish", "star", "moon", "house", "car", "water", "fire"),
    *("apple", "bird", "door", "hand", "road", "ship", "rain", "snow", "milk", "bread", "chair", "table"),
)
COPY_TEMPLATES = ("Repeat the word: {}", "Say the word {}.", "Write back this word: {}", "Echo: {}")

# What the generator writes for a given spec: raised whenever the pairs it draws change, so a testbed on disk
# from another version is written again and runs trained on the synthetic mixes get new signatures.
# 2: balanced tasks in every split; the text answers alone say nothing ("Which is smaller?" beside "larger").
GENERATOR_VERSION = 2

MM_TASKS = ("colour", "shape", "count", "position")
TEXT_TASKS = ("fact", "compare", "sum", "copy")

RLAIF_V_DIR = "rlaif_v"
MM_RLHF_DIR = "mm_rlhf"
BENCHMARKS_DIR = "benchmarks"
ULTRAFEEDBACK_DIR = "ultrafeedback"


def _draw_shape(draw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _other(rng: random.Random, options, right):
    return rng.choice([o for o in options if o != right])


def _image_png(size: int, items: list[tuple[str, str, tuple[int, int, int, int]]]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    for shape, colour, box in items:
        _draw_shape(draw, shape, box, COLOURS[colour])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _box(rng: random.Random, size: int, region: tuple[int, int, int, int], side: int) -> tuple[int, int, int, int]:
    rx0, ry0, rx1, ry1 = region
    x = rng.randint(rx0, max(rx0, rx1 - side))
    y = rng.randint(ry0, max(ry0, ry1 - side))
    return (x, y, x + side - 1, y + side - 1)


def multimodal_example(rng: random.Random, task: str, size: int) -> dict:
    """One image + question + (right answer, hallucinated answer)."""
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    big = max(8, size * 4 // 5)  # large shapes: the evidence fills most of the image tokens
    if task == "colour":
        items = [(shape, colour, _box(rng, size, (0, 0, size, size), big))]
        question, right, wrong = "What colour is the shape?", colour, _other(rng, COLOURS, colour)
        evidence = f"the shape is {colour}"
    elif task == "shape":
        items = [(shape, colour, _box(rng, size, (0, 0, size, size), big))]
        question, right, wrong = "What shape is in the image?", shape, _other(rng, SHAPES, shape)
        evidence = f"the shape is a {shape}"
    elif task == "count":
        n = rng.randint(1, 4)
        cell = size // 2
        cells = rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], n)  # one shape per quadrant: countable, no overlap
        small = max(6, cell * 7 // 8)
        items = [
            (shape, colour, _box(rng, size, (cx * cell, cy * cell, (cx + 1) * cell, (cy + 1) * cell), small))
            for cx, cy in cells
        ]
        question, right = "How many shapes are there?", str(n)
        wrong = _other(rng, [str(k) for k in range(1, 5)], right)
        evidence = f"there {'is one shape' if n == 1 else f'are {n} shapes'}"
    elif task == "position":
        side = rng.choice(SIDES)
        half = (0, 0, size // 2, size) if side == "left" else (size // 2, 0, size, size)
        items = [(shape, colour, _box(rng, size, half, max(6, size * 7 // 16)))]
        question, right, wrong = "Is the shape on the left or on the right?", side, _other(rng, SIDES, side)
        evidence = f"the shape is on the {side}"
    else:
        raise ValueError(f"unknown multimodal task {task!r}; known: {', '.join(MM_TASKS)}")
    values = {"colour": list(COLOURS), "shape": list(SHAPES), "count": ["1", "2", "3", "4"], "position": list(SIDES)}
    others = [v for v in values[task] if v != right]  # every plausible wrong answer (for multi-pair benchmarks)
    return {
        "task": task,
        "png": _image_png(size, items),
        "question": question,
        "right": right,
        "wrong": wrong,
        "others": others,
        "evidence": evidence,
    }


def text_example(rng: random.Random, task: str) -> dict:
    """One instruction + (right answer, wrong answer) where a small model can see the difference. No property of
    the answers alone tells them apart: the right answer is as often the larger number as the smaller one, the
    longer as the shorter, and every answer is right about as often as it is wrong (tests/shortcuts.py measures
    what each such answer-only shortcut scores on the held-out split). Telling them apart takes the prompt."""
    if task == "fact":
        obj = rng.choice(list(OBJECT_COLOURS))
        right = OBJECT_COLOURS[obj]
        question, wrong = rng.choice(FACT_TEMPLATES).format(obj), _other(rng, COLOURS, right)
        evidence = f"a {obj} is {right}"
    elif task == "compare":
        a, b = rng.sample(range(100), 2)
        which, pick = rng.choice((("larger", max), ("smaller", min)))
        question, right = f"Which is {which}, {a} or {b}?", str(pick(a, b))
        wrong = str(a + b - int(right))
        evidence = f"{right} is {which}"
    elif task == "sum":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        question, right = rng.choice(SUM_TEMPLATES).format(a, b), str(a + b)
        wrong = str(a + b + rng.choice([-2, -1, 1, 2]) if a + b >= 2 else a + b + rng.choice([1, 2]))
        evidence = f"{a}+{b} is {right}"
    elif task == "copy":
        word = rng.choice(COPY_WORDS)
        question, right, wrong = rng.choice(COPY_TEMPLATES).format(word), word, _other(rng, COPY_WORDS, word)
        evidence = f"the word is {word}"
    else:
        raise ValueError(f"unknown text task {task!r}; known: {', '.join(TEXT_TASKS)}")
    return {"task": task, "question": question, "right": right, "wrong": wrong, "evidence": evidence}


def critiques(ex: dict) -> tuple[str, str]:
    """(critique of the right answer, critique of the wrong one): what is right or wrong, and why."""
    return f"Right: {ex['evidence']}.", f"Wrong: {ex['evidence']}, not {ex['wrong']}."


def _unique(rng: random.Random, n: int, tasks: tuple[str, ...], make, seen: set) -> list[dict]:
    """n examples, the tasks taking turns, none equal to another or to one in `seen` (which also holds the other
    splits', so the held-out split never repeats a training pair). A task is drawn again until it gives an unseen
    example, so every split holds the tasks in the same proportions; only a task whose space has run out (1,000
    draws in a row already seen) yields its turns to the others."""
    out: list[dict] = []
    live = list(tasks)
    while len(out) < n:
        if not live:
            raise RuntimeError(f"cannot draw {n} distinct examples from tasks {tasks}")
        task = live[len(out) % len(live)]
        for _ in range(1000):
            ex = make(rng, task)
            key = (ex["question"], ex.get("png"), ex["right"], ex["wrong"])
            if key not in seen:
                seen.add(key)
                out.append(ex)
                break
        else:
            live.remove(task)
    return out


def _rlaif_v_rows(examples: list[dict], split: str) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        rows.append(
            {
                "ds_name": f"rmlab-synth-{ex['task']}",
                "image": {"bytes": ex["png"], "path": ""},
                "question": ex["question"],
                "chosen": ex["right"],
                "rejected": ex["wrong"],
                "origin_dataset": "rmlab-synth",
                "origin_split": json.dumps({"model": "rmlab-synth", "type": ex["task"], "split": split}),
                "idx": f"{split}-{i}",
                "image_path": f"synth/{split}/{ex['task']}/{i:06d}.png",
            }
        )
    return rows


def _ultrafeedback_row(ex: dict, i: int, split: str) -> dict:
    right_critique, wrong_critique = critiques(ex)

    def completion(model: str, text: str, score: float, critique: str) -> dict:
        rating = max(1, min(5, round(score / 2)))
        aspect = {"Rating": str(rating), "Rationale": "synthetic"}
        return {
            "annotations": {
                "helpfulness": {**aspect, "Rationale For Rating": "synthetic", "Type": ["1"]},
                "honesty": aspect,
                "instruction_following": aspect,
                "truthfulness": {**aspect, "Rationale For Rating": "synthetic", "Type": ["0"]},
            },
            "critique": critique,
            "custom_system_prompt": "",
            "fine-grained_score": float(rating),
            "model": model,
            "overall_score": score,
            "principle": "helpfulness",
            "response": text,
        }

    return {
        "source": f"rmlab-synth-{ex['task']}",
        "instruction": ex["question"],
        "models": ["synth-right", "synth-wrong"],
        "completions": [
            completion("synth-right", ex["right"], 9.0, right_critique),
            completion("synth-wrong", ex["wrong"], 2.0, wrong_critique),
        ],
        "correct_answers": [ex["right"]],
        "incorrect_answers": [ex["wrong"]],
        "id": f"{split}-{i}",
    }


def write_mm_rlhf(examples: list[dict], folder: Path) -> None:
    """MM-RLHF's `dpo_pairs.jsonl` with the images as files beside it (`<task>/<n>.png`: the top folder is the
    pairs' category, as the release's subsets are) and the critiques as `chosen_reason` / `rejected_reason`."""
    rows = []
    for i, ex in enumerate(examples):
        image = f"{ex['task']}/{i:06d}.png"
        (folder / image).parent.mkdir(parents=True, exist_ok=True)
        (folder / image).write_bytes(ex["png"])
        chosen_reason, rejected_reason = critiques(ex)
        rows.append(
            {
                "id": f"{folder.name}-{i}",
                "image": image,
                "prompt": f"<image>\n{ex['question']}",
                "chosen": ex["right"],
                "rejected": ex["wrong"],
                "chosen_reason": chosen_reason,
                "rejected_reason": rejected_reason,
            }
        )
    _write_jsonl(rows, folder / "dpo_pairs.jsonl")


def write_rlaif_v_parquet(rows: list[dict], path: Path) -> None:
    """RLAIF-V's hub parquet: image as an embedded {bytes, path} struct under datasets' Image feature."""
    import datasets
    from datasets import Dataset, Features, Image, Value

    datasets.disable_progress_bars()

    features = Features(
        {
            "ds_name": Value("string"),
            "image": Image(),
            "question": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "origin_dataset": Value("string"),
            "origin_split": Value("string"),
            "idx": Value("string"),
            "image_path": Value("string"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Dataset.from_list(rows, features=features).to_parquet(str(tmp))
    tmp.replace(path)


def _write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def write_benchmarks(out: Path, spec: SynthSpec, seen_mm: set, seen_text: set) -> None:
    """Each benchmark's file in its official schema (rmlab.eval.benchmarks), from examples no split contains."""

    def fresh(make, seen, tasks):
        def draw(rng, task):  # the task asked for, else (its examples all used) the next one that has some left
            for candidate in [task, *(t for t in tasks if t != task)]:
                for _ in range(500):
                    ex = make(rng, candidate)
                    key = (ex["question"], ex.get("png"), ex["right"], ex["wrong"])
                    if key not in seen:
                        seen.add(key)
                        return ex
            raise RuntimeError("no unseen example left for a benchmark")

        return draw

    examples = SynthExamples(
        mm=fresh(lambda r, t: multimodal_example(r, t, spec.image_size), seen_mm, MM_TASKS),
        text=fresh(text_example, seen_text, TEXT_TASKS),
        mm_tasks=MM_TASKS,
        text_tasks=TEXT_TASKS,
    )
    for name, bench in sorted(BENCHMARKS.items()):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        bench.synth(folder, random.Random(f"{spec.seed}-bench-{name}"), examples)


def write_testbed(out: str | Path, spec: SynthSpec | None = None) -> dict:
    """Write every schema, the train, test and val splits, the benchmarks, and a manifest; return the manifest.

    Each split has its own random stream (seeded from spec.seed and the split name). No pair appears twice, in a
    split or across splits and benchmarks.
    """
    spec = spec or SynthSpec()
    out = Path(out)
    counts = {}
    seen_mm: set = set()
    seen_text: set = set()

    def write_split(split: str, n_mm: int, n_text: int) -> None:
        """A split's files; a size of 0 writes none (no empty dataset files)."""
        if n_mm:
            rng = random.Random(f"{spec.seed}-mm-{split}")
            mm = _unique(rng, n_mm, MM_TASKS, lambda r, t: multimodal_example(r, t, spec.image_size), seen_mm)
            write_rlaif_v_parquet(_rlaif_v_rows(mm, split), out / RLAIF_V_DIR / f"{split}.parquet")
            write_mm_rlhf(mm, out / MM_RLHF_DIR / split)
        if n_text:
            rng = random.Random(f"{spec.seed}-text-{split}")
            text = _unique(rng, n_text, TEXT_TASKS, text_example, seen_text)
            rows = [_ultrafeedback_row(ex, i, split) for i, ex in enumerate(text)]
            _write_jsonl(rows, out / ULTRAFEEDBACK_DIR / f"{split}.jsonl")
        counts[split] = {RLAIF_V_DIR: n_mm, MM_RLHF_DIR: n_mm, ULTRAFEEDBACK_DIR: n_text}

    write_split("train", spec.mm_train, spec.text_train)
    write_split("test", spec.mm_test, spec.text_test)
    write_benchmarks(out / BENCHMARKS_DIR, spec, seen_mm, seen_text)
    write_split("val", spec.mm_val, spec.text_val)  # last: adding it changed no other split or benchmark
    manifest = {"generator": "rmlab.testbed", "version": GENERATOR_VERSION, "spec": spec.__dict__, "counts": counts}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def ensure_testbed(synth) -> None:
    """Write the testbed where a synthetic mix expects it (`data_mix.synth`), once: parallel jobs wait on a lock, and
    a testbed written with another spec or generator version is written again."""
    if synth is None:
        return
    spec = SynthSpec(**{f.name: synth[f.name] for f in fields(SynthSpec)})
    out = Path(synth.dir)
    manifest = out / "MANIFEST.json"
    with file_lock(out.parent / f".{out.name}.lock"):
        if manifest.exists():
            written = json.loads(manifest.read_text())
            if written.get("spec") == spec.__dict__ and written.get("version") == GENERATOR_VERSION:
                return
        write_testbed(out, spec)
