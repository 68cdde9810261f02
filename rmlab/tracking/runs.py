"""An experiment's runs as logged, from the offline files on disk or from a wandb project online, as one DataFrame.

Offline: every `run-<id>.wandb` under the experiment's run directories, parsed once and cached by (path, size,
mtime) so re-reading 1,000 runs costs a stat each (the cache is JSON: reading it back runs no code; one that does not
parse is said in one line and rebuilt); the attempts of a resumed run (same id, one file each) are
merged. Online: `wandb.Api().runs(project, filters={"group": experiment})`. Either way a run becomes a RunRecord,
and `runs_frame` turns records into the same columns: id, project, group, job_type, name, tags, state, exit_code,
`config.<key>` and `summary.<key>` (nested keys joined with "/").
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from rmlab.tracking.offline import RunRecord, merge_attempts, read_run_file
from rmlab.util.atomic import atomic_write_text, file_lock

CACHE_VERSION = 2


def offline_files(experiment_dir: Path) -> list[Path]:
    """The offline run files of an experiment's runs (wandb writes them under each run directory)."""
    return sorted(Path(experiment_dir).glob("*/wandb/offline-run-*/run-*.wandb"))


def read_offline(experiment_dir: Path, cache_file: Path | None = None, history: bool = False) -> dict[str, RunRecord]:
    """{run id: RunRecord} for every offline run of the experiment, attempts merged; parsed files cached."""
    files = offline_files(experiment_dir)
    cache: dict = {}
    if cache_file is not None and Path(cache_file).exists():
        try:
            cache = json.loads(Path(cache_file).read_text())
            if cache.get("version") != CACHE_VERSION or cache.get("history") != history:
                cache = {}
        except (ValueError, UnicodeDecodeError, AttributeError) as e:
            print(f"[rmlab] ignored the parse cache {cache_file} ({type(e).__name__}): rebuilding it", file=sys.stderr)
            cache = {}  # a damaged cache is rebuilt, never trusted
    entries = cache.get("files", {})
    fresh, changed = {}, False
    by_id: dict[str, list[RunRecord]] = {}
    for f in files:
        st = f.stat()
        key = [st.st_size, st.st_mtime_ns]
        hit = entries.get(str(f))
        if hit and hit[0] == key:
            rec = RunRecord(**hit[1])
        else:
            rec = read_run_file(f, history=history)
            changed = True
        fresh[str(f)] = (key, asdict(rec))
        by_id.setdefault(rec.id or f.stem.removeprefix("run-"), []).append(rec)
    if cache_file is not None and (changed or len(fresh) != len(entries)):
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        with file_lock(str(cache_file) + ".lock"):
            atomic_write_text(cache_file, json.dumps({"version": CACHE_VERSION, "history": history, "files": fresh}))
    return {run_id: merge_attempts(recs) for run_id, recs in by_id.items()}


WANDB_STATES = {"finished": 0, "failed": 1, "crashed": 1, "killed": 1, "preempted": 1}


def read_online(project: str, group: str, entity: str | None = None, api=None) -> dict[str, RunRecord]:
    """{run id: RunRecord} for the runs of one group of a wandb project (the API key comes from wandb's own
    environment, never from rmlab's config). `api` stands in for `wandb.Api()` in tests."""
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    records = {}
    for run in api.runs(path, filters={"group": group}):
        summary = dict(getattr(run, "summary_metrics", None) or {})
        records[run.id] = RunRecord(
            id=run.id,
            project=project,
            group=run.group or "",
            job_type=run.job_type or "",
            name=run.name or "",
            tags=list(run.tags or []),
            config={k: v for k, v in dict(run.config).items() if k != "_wandb"},
            summary={k: v for k, v in summary.items() if k != "_wandb"},
            exit_code=WANDB_STATES.get(run.state) if run.state != "running" else None,
        )
    return records


def config_value(config: dict, key: str):
    """A run's recorded value of a dotted config key, logged flat (`head.layers`: rmlab's config) or nested (the
    `sweep` node: `sweep.head` is config["sweep"]["head"]); None if the run has none."""
    if key in config:
        return config[key]
    head, sep, rest = key.partition(".")
    node = config.get(head) if sep else None
    return config_value(node, rest) if isinstance(node, dict) else None


def _flat(tree: dict, prefix: str) -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def runs_frame(records: dict[str, RunRecord]):
    """One row per run: identity, state, then `config.<key>` and `summary.<key>` columns."""
    import pandas as pd

    rows = []
    for rec in records.values():
        row = {
            "id": rec.id,
            "project": rec.project,
            "group": rec.group,
            "job_type": rec.job_type,
            "name": rec.name,
            "tags": ",".join(rec.tags),
            "state": rec.state,
            "exit_code": rec.exit_code,
        }
        row.update({f"config.{k}": v for k, v in _flat(rec.config, "").items()})
        row.update({f"summary.{k}": v for k, v in _flat(rec.summary, "").items() if not k.startswith("_")})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("id").reset_index(drop=True) if len(frame) else frame


def cache_path(cfg) -> Path:
    return Path(cfg.paths.cache) / "wandb_runs" / f"{cfg.experiment}.json"


def runs_dir(cfg) -> Path:
    return Path(os.path.abspath(cfg.paths.runs)) / cfg.experiment
