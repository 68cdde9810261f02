"""Aggregator speed: `rmlab tables` over 1,000 offline wandb runs, cold (every file parsed) against warm (parsed files
cached by size and time), measured in one run and printed as a ratio with both times. The target is under 10 s.

The runs are made with the real wandb package (offline), one per job of the demo grid widened to 334 seeds (1,002
jobs), each with 50 logged steps and the demo's eval metrics in its summary, exactly as a training job logs them.
Making them takes a few minutes (wandb starts a service per run); `--runs-dir` reuses a folder made before.

Run from the repo root: `python bench/aggregate_offline.py [--seeds 334] [--runs-dir DIR]`.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def _overrides(runs: Path, seeds: int) -> list[str]:
    return [f"paths.runs={runs}", f"paths.cache={runs / '.cache'}", "tracking=offline", f"run.seed=range(0,{seeds})"]


def _make(args) -> None:
    """Log one job's run (in a worker process): 50 curve points and the demo table's metrics."""
    index, cfg, run = args
    from rmlab.config.compose import experiment_table
    from rmlab.tracking.logger import RunLogger

    rng = random.Random(index)
    with RunLogger(cfg, run) as log:
        for step in range(1, 51):
            log.log({"train/loss": 0.7 / step, "train/pair_accuracy": rng.random()}, step=step)
        log.summary({f"eval/{col.metric}": rng.uniform(50, 100) for col in experiment_table("demo").columns})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=334, help="seeds per head (3 heads): 334 gives 1,002 runs")
    p.add_argument("--runs-dir", help="where the runs are (made there if empty); default: a temporary folder")
    args = p.parse_args()

    from rmlab.config.schema import register
    from rmlab.launch.grid import grid_runs
    from rmlab.results.table import write_tables

    register()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="rmlab-bench-"))
    overrides = _overrides(runs, args.seeds)
    jobs = grid_runs("demo", overrides)
    n = len(jobs)
    made = len(list(runs.glob("demo/*/wandb/offline-run-*/run-*.wandb")))
    if made < n:
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
            pool.map(_make, [(i, job.cfg, job.run) for i, job in enumerate(jobs)], chunksize=16)
        print(f"made {n} offline runs in {time.perf_counter() - start:.0f} s under {runs}")
    out = runs / "results"
    shutil.rmtree(runs / ".cache", ignore_errors=True)
    timings = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        md, _ = write_tables("demo", out, overrides)
        timings[label] = time.perf_counter() - start
    read = next(line for line in md.splitlines() if line.startswith("Runs:"))
    print(read.split(". Cells")[0])
    print(
        f"tables from {n} offline runs: cold {timings['cold']:.2f} s (every file parsed), warm {timings['warm']:.2f} s "
        f"(cached by size and time); cold/warm ratio {timings['cold'] / timings['warm']:.1f}; target < 10 s"
    )


if __name__ == "__main__":
    main()
