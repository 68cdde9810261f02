"""Training curves per table row, from the runs' own `history.jsonl` (written with or without wandb): the mean over
the row's runs (its seeds) at each step, with the min-max band. `rmlab tables` writes them beside the table as
`results/<experiment>_curves.png`, so an offline cluster still shows how each ablation trained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# the curves shown first, in this order, when logged; any other train/, val/ or rl/ number follows
FIRST = ("train/loss", "train/pair_accuracy", "train/margin", "train/lr", "train/grad_norm", "train/pairs_per_s")
PREFIXES = ("train/", "val/", "rl/")


def _history(path: Path) -> dict[str, dict[int, float]]:
    """{metric: {step: value}} of one run (a row cut by a crash is skipped; a step logged twice keeps the last)."""
    series: dict[str, dict[int, float]] = {}
    if not path.exists():
        return series
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for key, value in row.items():
            if key.startswith(PREFIXES) and isinstance(value, int | float) and math.isfinite(value):
                series.setdefault(key, {})[int(row["step"])] = float(value)
    return series


def row_curves(histories: list[tuple[tuple, Path]]) -> dict[tuple, dict[str, list[tuple[int, float, float, float]]]]:
    """{row: {metric: [(step, mean, low, high)]}} from (row, a run's history.jsonl) pairs: over each row's runs that
    logged the metric at that step."""
    by_row: dict[tuple, list] = {}
    for row, path in histories:
        by_row.setdefault(row, []).append(_history(Path(path)))
    curves = {}
    for row, histories in by_row.items():
        metrics: dict[str, dict[int, list[float]]] = {}
        for history in histories:
            for metric, points in history.items():
                for step, value in points.items():
                    metrics.setdefault(metric, {}).setdefault(step, []).append(value)
        curves[row] = {
            m: [(s, sum(v) / len(v), min(v), max(v)) for s, v in sorted(points.items())]
            for m, points in metrics.items()
        }
    return curves


def to_curves_png(title: str, curves: dict, path: Path) -> bool:
    """One panel per metric, a line per row with its band; False when no run has logged a curve."""
    names = {m for per_row in curves.values() for m in per_row}
    order = [m for m in FIRST if m in names] + sorted(names - set(FIRST))
    if not order:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(order))
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(order) :]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, order, strict=False):
        for row, per_row in curves.items():
            points = per_row.get(metric)
            if not points:
                continue
            steps, mean, low, high = zip(*points, strict=True)
            label = " ".join(str(v) for v in row) or "runs"
            ax.plot(steps, mean, label=label, linewidth=1.2)
            ax.fill_between(steps, low, high, alpha=0.2)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}: mean over seeds, min-max band", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
