"""Rebuilding an experiment's table from its logged runs, with the paper's numbers beside ours.

The table spec comes from the experiment's file (`table:`); the grid says which runs it needs; the logs say what
each run measured: the offline wandb files (default), the wandb project online, or the run directories' own files.
A grid job's run is the logged run with its signature (its wandb id); failing that, the logged run whose own
recorded config has the job's row values and seed (a run made before conf/ or the experiment changed what it
computes: shown, marked †), so a finished run is never shown missing. Cells reduce seeds to a mean and the
half-width of a 95% t-interval, and say why when they have no number (missing, running, failed; `n/a`: the run is
done but does not measure that column); the paper's number and our difference stand beside them. Rows in the spec's
`exclude_rows` (a sweep's upstream runs, such as the reward models a policy is trained with) are left out. Written:
results/<experiment>.md, .tex, .csv, and a .png where the rows have a numeric axis (head depth, regularization
weight, model size).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rmlab.config.compose import experiment_table
from rmlab.errors import ConfigError
from rmlab.launch.grid import Job, grid_runs
from rmlab.results.curves import row_curves, to_curves_png
from rmlab.tracking.logger import flatten, job_type, numeric_leaves
from rmlab.tracking.offline import RunRecord
from rmlab.tracking.runs import cache_path, config_value, read_offline, read_online, runs_dir

# Two-sided 95% Student-t quantiles by degrees of freedom (beyond 30, the normal 1.96).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}  # fmt: skip
SOURCES = ("offline", "online", "files")


def t95(df: int) -> float:
    if df <= 0:
        return float("nan")
    if df > 30:
        return 1.96
    return _T95[max(k for k in _T95 if k <= df)]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan with one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


# ------------------------------------------------------------------------------------------------ reading runs


def record_from_files(run_dir: Path) -> RunRecord | None:
    """A run read from its directory's own files (status.json, config.yaml, summary.json, eval/*/metrics.json)."""
    status_file = run_dir / "status.json"
    if not status_file.exists():
        return None
    status = json.loads(status_file.read_text())
    config_file = run_dir / "config.yaml"
    tree = (yaml.safe_load(config_file.read_text()) or {}) if config_file.exists() else {}
    config = flatten(tree)
    summary: dict = {}
    if (run_dir / "summary.json").exists():
        summary.update(json.loads((run_dir / "summary.json").read_text()))
    for f in sorted(run_dir.glob("eval/*/metrics.json")):
        summary.update(numeric_leaves(json.loads(f.read_text()), f"eval/{f.parent.name}/"))
    state = status.get("state")
    exit_code = 0 if state == "done" else 1 if state in ("failed", "interrupted") else None
    return RunRecord(
        id=status.get("signature", run_dir.name),
        group=status.get("experiment", ""),
        job_type=job_type(tree) if tree else status.get("stage", ""),
        config=config,
        summary=summary,
        exit_code=exit_code,
        files=[str(status_file)],
    )


def load_records(source: str, cfg) -> dict[str, RunRecord]:
    """{run id: record} of every logged run of the experiment (in the grid or not), from the chosen source."""
    if source == "offline":
        return read_offline(runs_dir(cfg), cache_path(cfg))
    if source == "online":
        return read_online(cfg.tracking.project, cfg.experiment, cfg.tracking.entity)
    if source == "files":
        found = {}
        for run_dir in sorted(p for p in runs_dir(cfg).glob("*") if p.is_dir() and not p.name.startswith(".")):
            rec = record_from_files(run_dir)
            if rec is not None:
                found[rec.id] = rec
        return found
    raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def match_runs(jobs: list[Job], records: dict[str, RunRecord], keys: list[str]) -> dict[str, tuple[RunRecord, bool]]:
    """{job signature: (its run's record, stale)}: the record with the job's signature, else (stale) the one record
    of a run not in the grid whose recorded `keys` values (rows and seed) equal the job's, done ones first. A job
    whose keys other jobs share is matched by signature only."""
    found = {j.signature: (records[j.signature], False) for j in jobs if j.signature in records}
    grid = {j.signature for j in jobs}
    by_key: dict[tuple, list[Job]] = {}
    for job in jobs:
        by_key.setdefault(tuple(_fmt(job.value(k)) for k in keys), []).append(job)
    order = {"done": 0, "running": 1, "failed": 2}
    for rec in sorted(records.values(), key=lambda r: order.get(r.state, 3)):
        if rec.id in grid:
            continue
        owners = by_key.get(tuple(_fmt(config_value(rec.config, k)) for k in keys), [])
        if len(owners) == 1 and owners[0].signature not in found:
            found[owners[0].signature] = (rec, True)
    return found


# ------------------------------------------------------------------------------------------------ cells


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)  # jobs without a value, by why
    paper: float | None = None
    stale: int = 0  # values from runs matched by their recorded config, not their signature

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def half_width(self) -> float | None:
        return mean_ci(self.values)[1] if self.values else None

    @property
    def delta(self) -> float | None:
        return None if self.mean is None or self.paper is None else self.mean - self.paper

    def text(self) -> str:
        """`mean ± half-width (n=k)`, plus what is not finished; or only why there is no number."""
        missing = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()))
        if not self.values:
            return missing or "missing"
        h = self.half_width
        text = f"{self.mean:.1f}" + ("" if h is None or math.isnan(h) else f" ± {h:.1f}") + f" (n={len(self.values)})"
        return text + ("†" if self.stale else "") + (f" [{missing}]" if missing else "")


@dataclass
class Table:
    title: str
    row_keys: list[str]
    columns: list[str]
    rows: list[tuple[tuple, dict[str, Cell]]]
    footer: dict[str, int]
    warnings: list[str]
    has_paper: bool
    plot: dict | None
    stale: int = 0
    histories: list = field(default_factory=list)  # (row, the history.jsonl of one of its runs)


def _state(rec: RunRecord | None) -> str:
    return "missing" if rec is None else rec.state


def column_value(summary: dict, col, by_name: dict) -> float | None:
    """A run's number for a column: its `metric` from the run's summary, or with `mean_of: [column names]` the mean
    of those columns' numbers (None unless the run has all of them), so seeds reduce the run's own average."""
    if col.get("mean_of"):
        parts = [column_value(summary, by_name[name], by_name) for name in col.mean_of]
        return None if any(p is None for p in parts) else statistics.fmean(parts)
    value = summary.get(f"eval/{col.metric}")
    return float(value) if isinstance(value, int | float) else None


def build_table(spec, jobs: list[Job], records: dict[str, RunRecord]) -> Table:
    row_keys = list(spec.rows)
    by_name = {c.name: c for c in spec.columns}
    for col in spec.columns:
        unknown = [n for n in (col.get("mean_of") or []) if n not in by_name]
        if unknown:
            raise ConfigError(f"table column {col.name}: mean_of names {unknown}; columns: {', '.join(by_name)}")
    paper = {str(k): dict(v) for k, v in (spec.get("paper") or {}).items()}
    excluded = {str(r) for r in (spec.get("exclude_rows") or [])}
    matched = match_runs(jobs, records, [*row_keys, *([spec.seeds] if spec.get("seeds") else [])])
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.value(k) for k in row_keys), []).append(job)
    rows = []
    for key, members in groups.items():
        label = row_label(key)
        if label in excluded:
            continue
        cells = {}
        paper_row = paper.get(label, {})
        for col in spec.columns:
            cell = Cell(paper=paper_row.get(col.name))
            for job in members:
                rec, stale = matched.get(job.signature, (None, False))
                value = column_value(rec.summary, col, by_name) if rec is not None and rec.state == "done" else None
                if value is not None:
                    cell.values.append(value)
                    cell.stale += stale
                else:
                    state = _state(rec) if _state(rec) != "done" else "n/a"
                    cell.states[state] = cell.states.get(state, 0) + 1
            cells[col.name] = cell
        rows.append((key, cells))
    states = [_state(matched.get(j.signature, (None,))[0]) for j in jobs]
    used = {rec.id for rec, _ in matched.values()}
    footer = {
        "runs in the grid": len(jobs),
        "done": states.count("done"),
        "failed": states.count("failed"),
        "running": states.count("running"),
        "missing": states.count("missing"),
        "logged runs not in the grid": sum(1 for i in records if i not in used),
    }
    if excluded:
        footer["rows left out"] = len(groups) - len(rows)
    warnings = [w for rec in records.values() for w in rec.warnings]
    plot = dict(spec.plot) if spec.get("plot") else None
    stale = sum(1 for _, is_stale in matched.values() if is_stale)
    histories = [  # each job's history.jsonl: its own run's, or the matched earlier run's (same folder of runs)
        (tuple(job.value(k) for k in row_keys), job.run.path.parent / matched[job.signature][0].id / "history.jsonl")
        if job.signature in matched else (tuple(job.value(k) for k in row_keys), job.run.history)
        for job in jobs
    ]  # fmt: skip
    columns = [c.name for c in spec.columns]
    return Table(spec.title, row_keys, columns, rows, footer, warnings, bool(paper), plot, stale, histories)


def row_label(values) -> str:
    """A row's values as `exclude_rows` and the paper mapping name it: "2|silu"."""
    return "|".join(_fmt(v) for v in values)


def _fmt(value) -> str:
    """A row value as the table (and the paper mapping's keys) write it: 2, 0.01, silu, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ------------------------------------------------------------------------------------------------ writing


def _header(table: Table) -> list[str]:
    head = [k.split(".")[-1] for k in table.row_keys]
    for name in table.columns:
        head += [name, f"{name} (paper)", "Δ"] if table.has_paper else [name]
    return head


def _cells(table: Table) -> list[list[str]]:
    out = []
    for key, cells in table.rows:
        line = [_fmt(v) for v in key]
        for name in table.columns:
            cell = cells[name]
            line.append(cell.text())
            if table.has_paper:
                line.append("" if cell.paper is None else f"{cell.paper:.1f}")
                line.append("" if cell.delta is None else f"{cell.delta:+.1f}")
        out.append(line)
    return out


def _footer_text(table: Table) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in table.footer.items())
    text = (
        f"Runs: {counts}. Cells: mean ± half-width of the 95% t-interval over seeds (n = runs with a number); "
        "a cell without a number says why."
    )
    if table.stale:
        text += (
            f" †: {table.stale} run(s) matched by their recorded row and seed values, not their signature: made under"
            " an earlier config (conf/ or the experiment changed what they compute); `rmlab sweep` reruns them."
        )
    if table.has_paper:
        text += " Paper: the number the paper prints for the cell; Δ = ours - paper."
    if table.warnings:
        text += f" Log files read in part: {len(table.warnings)} (see the warnings above)."
    return text


def to_markdown(table: Table) -> str:
    head = _header(table)
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in _cells(table)]
    return "\n".join([*lines, "", _footer_text(table)]) + "\n"


def _tex_escape(text: str) -> str:
    text = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        text = text.replace(ch, "\\" + ch)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("~", r"\textasciitilde{}")


def to_latex(table: Table) -> str:
    head = _header(table)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{_tex_escape(table.title)}}}",
        r"\begin{tabular}{" + "l" * len(table.row_keys) + "r" * (len(head) - len(table.row_keys)) + "}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in head) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex_escape(c) for c in row) + r" \\" for row in _cells(table)]
    lines += [r"\bottomrule", r"\end{tabular}", "", "% " + _footer_text(table), r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    head = list(table.row_keys)
    for name in table.columns:
        head += [name, f"{name} ci95", f"{name} n", f"{name} not done", f"{name} paper", f"{name} delta"]
    w.writerow(head)
    for key, cells in table.rows:
        line = [_fmt(v) for v in key]
        for name in table.columns:
            c = cells[name]
            states = ";".join(f"{s}:{n}" for s, n in sorted(c.states.items()))
            line += [
                "" if c.mean is None else f"{c.mean:.4f}",
                "" if c.half_width is None or math.isnan(c.half_width) else f"{c.half_width:.4f}",
                len(c.values),
                states,
                "" if c.paper is None else c.paper,
                "" if c.delta is None else f"{c.delta:.4f}",
            ]
        w.writerow(line)
    return buf.getvalue()


def _number(value) -> float | None:
    """A row value as a number for a plot's x axis: 3, 0.01, or a model size like `7b`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bm]?)", str(value).lower())
    if not match:
        return None
    return float(match.group(1)) * (1e-3 if match.group(2) == "m" else 1.0)


def plot_axis(table: Table) -> int | None:
    """Which row key is the x axis: the spec's `plot.x`, else the first whose values are all numbers."""
    if table.plot and table.plot.get("x") in table.row_keys:
        return table.row_keys.index(table.plot["x"])
    for i in range(len(table.row_keys)):
        if all(_number(key[i]) is not None for key, _ in table.rows):
            return i
    return None


def to_png(table: Table, path: Path) -> bool:
    """One panel per column: ours (mean, 95% interval) against the x row key, a line per value of the other row
    keys; the paper's numbers as hollow markers. False when the rows have no numeric axis."""
    axis = plot_axis(table)
    has_values = any(c.mean is not None or c.paper is not None for _, cells in table.rows for c in cells.values())
    if axis is None or len(table.rows) < 2 or not has_values:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table.columns)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    lines: dict[tuple, list] = {}
    for key, cells in table.rows:
        lines.setdefault(tuple(v for i, v in enumerate(key) if i != axis), []).append((_number(key[axis]), cells))
    for ax, name in zip(axes.flat, table.columns, strict=False):
        for label, points in lines.items():
            points.sort(key=lambda p: p[0])
            xs = [x for x, c in points if c[name].mean is not None]
            ys = [c[name].mean for _, c in points if c[name].mean is not None]
            err = [
                0 if math.isnan(c[name].half_width) else c[name].half_width
                for _, c in points
                if c[name].mean is not None
            ]
            shown = " ".join(_fmt(v) for v in label) or "ours"
            if xs:
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=shown)
            paper = [(x, c[name].paper) for x, c in points if c[name].paper is not None]
            if paper:
                ax.plot(
                    *zip(*paper, strict=True), linestyle="--", marker="o", fillstyle="none", label=f"{shown} (paper)"
                )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(table.row_keys[axis].split(".")[-1])
        if table.plot and table.plot.get("log_x"):
            ax.set_xscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0), min(high, 100))  # percentages: an interval past 0 or 100 is cut at the edge
    axes[0][0].legend(fontsize=7)
    fig.suptitle(table.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_tables(
    experiment: str, out_dir: str | Path = "results", overrides: list[str] = (), source: str = "offline"
) -> tuple[str, list[Path]]:
    """Build the experiment's table from its logged runs; write .md, .tex, .csv (and .png), and the training curves
    per row from the runs' histories (`_curves.png`); return the markdown and the files written."""
    import sys

    spec = experiment_table(experiment, overrides)
    jobs = grid_runs(experiment, overrides)
    if not jobs:
        raise ConfigError(f"experiment {experiment} has no jobs")
    table = build_table(spec, jobs, load_records(source, jobs[0].cfg))
    for w in table.warnings:
        print(f"[rmlab] warning: {w}", file=sys.stderr)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(table)
    written = []
    for suffix, text in ((".md", md), (".tex", to_latex(table)), (".csv", to_csv(table))):
        (out / f"{experiment}{suffix}").write_text(text)
        written.append(out / f"{experiment}{suffix}")
    if to_png(table, out / f"{experiment}.png"):
        written.append(out / f"{experiment}.png")
    if to_curves_png(table.title, row_curves(table.histories), out / f"{experiment}_curves.png"):
        written.append(out / f"{experiment}_curves.png")
    return md, written
