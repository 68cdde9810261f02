"""Rebuilding an experiment's table from its runs: one row per setting, seeds reduced to mean and 95% interval.

Every cell says what it stands on: `mean ± half-width (n)` over finished seeds, or why it is empty (missing, running,
failed). Nothing is dropped silently: the footer counts the runs read and the runs not finished.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from rmlab.config.compose import resolved
from rmlab.launch.grid import grid_runs

# Two-sided 95% Student-t quantiles by degrees of freedom (beyond 30, the normal 1.96).
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    25: 2.060,
    30: 2.042,
}


def t95(df: int) -> float:
    if df <= 0:
        return float("nan")
    key = max(k for k in _T95 if k <= df) if df <= 30 else None
    return _T95[key] if key else 1.96


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan with one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _get(tree, dotted: str):
    node = tree
    for part in dotted.split("/") if "/" in dotted else dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def collect_runs(experiment: str, overrides: list[str] = ()) -> list[dict]:
    """One record per grid job: its run dir, state, config and per-set metrics (if finished)."""
    records = []
    for point, cfg, run in grid_runs(experiment, overrides):
        metrics = {}
        for f in sorted((run.path / "eval").glob("*/metrics.json")):
            metrics[f.parent.name] = json.loads(f.read_text())
        records.append(
            {
                "point": point,
                "path": str(run.path),
                "state": run.status().get("state", "pending"),
                "config": resolved(cfg),
                "metrics": metrics,
            }
        )
    return records


def build_table(spec, records: list[dict]) -> tuple[list[str], list[list[str]], dict]:
    """(header, rows, footer counts) for a table spec: rows by the spec's config keys, cells per column metric."""
    row_keys = list(spec.rows)
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        key = tuple(str(_get(rec["config"], k)) for k in row_keys)
        groups.setdefault(key, []).append(rec)
    header = [k.split(".")[-1] for k in row_keys] + [c.name for c in spec.columns]
    rows = []
    for key, recs in groups.items():
        done = [r for r in recs if r["state"] == "done"]
        cells = list(key)
        for col in spec.columns:
            values = [v for r in done if (v := _get(r["metrics"], col.metric)) is not None]
            cells.append(_cell(values, recs))
        rows.append(cells)
    footer = {"runs": len(records), "done": sum(r["state"] == "done" for r in records)}
    footer["not finished"] = footer["runs"] - footer["done"]
    return header, rows, footer


def _cell(values: list[float], recs: list[dict]) -> str:
    if not values:
        states = sorted({r["state"] for r in recs})
        return "/".join("missing" if s == "pending" else s for s in states)
    m, h = mean_ci(values)
    text = f"{m:.1f}" if math.isnan(h) else f"{m:.1f} ± {h:.1f}"
    text += f" (n={len(values)})"
    unfinished = len(recs) - len(values)
    return text + (f" [{unfinished} not done]" if unfinished else "")


def to_markdown(title: str, header: list[str], rows: list[list[str]], footer: dict) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Runs read: " + ", ".join(f"{k} {v}" for k, v in footer.items()) + ". Cells: mean ± 95% t-interval "
        "half-width over seeds (n = seeds finished).",
    ]
    return "\n".join(lines) + "\n"


def write_tables(experiment: str, out_dir: str | Path = "results", overrides: list[str] = ()) -> str:
    """Build the experiment's table from its runs, write results/<experiment>.{md,csv}; return the markdown."""
    import csv

    from rmlab.config.compose import compose

    spec = compose([*overrides], experiment=experiment).table
    if spec is None:
        from rmlab.errors import ConfigError

        raise ConfigError(f"experiment {experiment} has no table: spec")
    records = collect_runs(experiment, overrides)
    header, rows, footer = build_table(spec, records)
    md = to_markdown(spec.title, header, rows, footer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{experiment}.md").write_text(md)
    with open(out / f"{experiment}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return md
