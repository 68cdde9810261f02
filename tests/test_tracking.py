"""Tracking and tables: runs logged offline through the real wandb package are read back exactly, a cut file is read
up to the cut, the online reader gives the same frame, and a table reduces seeds and marks failures as worked out by
hand."""

import json
import shutil
from pathlib import Path

import pytest

from rmlab.config.compose import compose
from rmlab.launch.grid import grid_runs
from rmlab.launch.signature import run_dir
from rmlab.results.table import write_tables
from rmlab.runtime.run_dir import RunDir
from rmlab.tracking.logger import RunLogger, flatten, tags
from rmlab.tracking.offline import read_run_file
from rmlab.tracking.runs import read_offline, read_online, runs_frame


def _log_run(cfg, run: RunDir, metrics: dict, history: int = 3, fail: bool = False) -> None:
    """What a training job logs, without the training: curves, eval metrics, a good or a failed ending."""
    try:
        with RunLogger(cfg, run) as log:
            for step in range(1, history + 1):
                log.log({"train/loss": 1.0 / step, "train/lr": 1e-3}, step=step)
            if fail:
                raise RuntimeError("planted failure")
            log.summary(metrics)
    except RuntimeError:
        pass
    for path in run.path.glob("wandb/offline-run-*/run-*.wandb"):
        _ended(path)


def _ended(path: Path, wait_s: float = 60.0):
    """The run file once wandb's service has written its ending (on a loaded machine it can lag run.finish())."""
    import time

    deadline = time.monotonic() + wait_s
    while (rec := read_run_file(path)).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return rec


@pytest.fixture()
def offline(tmp_path):
    return [f"paths.runs={tmp_path / 'runs'}", f"paths.cache={tmp_path / 'cache'}", "tracking=offline"]


def test_a_run_logged_offline_is_read_back_exactly(offline):
    cfg = compose([*offline, "head=mlp3_silu", "experiment=readback"])
    run = run_dir(cfg)
    _log_run(cfg, run, {"eval/set/accuracy": 87.5, "eval/set/per_category/a/accuracy": 75.0, "data/train_pairs": 9})
    records = read_offline(run.path.parent, history=True)
    rec = records[run.signature]
    assert (rec.id, rec.project, rec.group, rec.job_type) == (run.signature, "rmlab", "readback", "reward_model")
    assert rec.tags == tags(cfg) and all(len(t) <= 64 for t in rec.tags)
    logged_config = flatten(__import__("rmlab.config.compose", fromlist=["resolved"]).resolved(cfg))
    assert rec.config == logged_config  # every key, every value
    assert [(r["_step"], r["train/loss"], r["train/lr"]) for r in rec.history] == [
        (1, 1.0, 1e-3),
        (2, 0.5, 1e-3),
        (3, 1 / 3, 1e-3),
    ]
    assert rec.summary["eval/set/accuracy"] == 87.5 and rec.summary["eval/set/per_category/a/accuracy"] == 75.0
    assert rec.summary["data/train_pairs"] == 9 and rec.exit_code == 0 and rec.state == "done"
    # the run's own JSON copy holds the same numbers
    own = json.loads((run.path / "summary.json").read_text())
    assert own["eval/set/accuracy"] == 87.5


def _complete(path: Path):
    rec = _ended(path)
    assert rec.exit_code == 0, rec.warnings
    return rec


def test_a_cut_file_is_read_up_to_the_cut_with_a_warning(offline, tmp_path):
    cfg = compose([*offline, "experiment=cut"])
    run = run_dir(cfg)
    _log_run(cfg, run, {"eval/set/accuracy": 50.0}, history=40)
    original = next(run.path.glob("wandb/offline-run-*/run-*.wandb"))
    full = _complete(original)
    data = original.read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 12):
        damaged = tmp_path / f"cut-{cut}.wandb"
        damaged.write_bytes(data[:cut])
        rec = read_run_file(damaged)
        assert rec.warnings and ("truncated" in rec.warnings[0] or "incomplete" in rec.warnings[0])
        assert rec.exit_code is None and rec.state == "running"  # the ending was cut off
        assert rec.history == full.history[: len(rec.history)]  # what came before the cut, exactly
    assert len(read_run_file(tmp_path / f"cut-{len(data) // 2}.wandb").history) > 5
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.wandb").write_bytes(bytes(flipped))
    rec = read_run_file(tmp_path / "flipped.wandb")
    assert "damaged record" in rec.warnings[0] and rec.history == full.history[: len(rec.history)]
    assert read_run_file(tmp_path / "cut-12.wandb").id == ""  # nothing whole: an empty record, no exception


class _RecordedRun:
    """The attributes of a `wandb.apis.public.Run` that rmlab reads, as the API returns them (recorded shape)."""

    def __init__(self, rec):
        self.id, self.name, self.group, self.job_type, self.tags = rec.id, rec.name, rec.group, rec.job_type, rec.tags
        self.config = {**rec.config, "_wandb": {"cli_version": "0.31.0"}}
        self.summary_metrics = {**rec.summary, "_wandb": {"runtime": 3}}
        self.state = {0: "finished", None: "running"}.get(rec.exit_code, "failed")


class _RecordedApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [r for r in self._runs if r.group == filters["group"]]


def test_the_online_reader_reads_runs_as_wandbs_public_api_gives_them():
    """Runs written by hand in the shape of `wandb.apis.public.Run` (config and summary_metrics as the API returns
    them: `_wandb`, `_runtime`, `_step`, `_timestamp` beside the logged keys; nested dicts for nested metrics;
    states finished, crashed, failed, running), nothing derived from rmlab's own readers."""
    from types import SimpleNamespace

    def api_run(run_id, state, accuracy):
        return SimpleNamespace(
            id=run_id, name=f"name-{run_id}", group="online", job_type="reward_model", tags=["head=linear", "seed=0"],
            config={"head": {"name": "linear"}, "run": {"seed": 0}, "_wandb": {"cli_version": "0.31.0"}},
            summary_metrics={"eval": {"set": {"accuracy": accuracy}}, "_runtime": 41.5, "_step": 12,
                             "_timestamp": 1764633600.0, "_wandb": {"runtime": 41}},
            state=state,
        )  # fmt: skip

    api = _RecordedApi([api_run("a", "finished", 61.0), api_run("b", "crashed", 55.0), api_run("c", "running", 1.0)])
    frame = runs_frame(read_online("rmlab", "online", api=api)).set_index("id")
    assert api.calls == [("rmlab", {"group": "online"})]
    assert frame["state"].to_dict() == {"a": "done", "b": "failed", "c": "running"}
    assert frame.loc["a", "exit_code"] == 0 and frame.loc["b", "exit_code"] == 1
    assert frame.loc["c", "exit_code"] is None or frame.loc["c", "exit_code"] != frame.loc["c", "exit_code"]  # NaN
    assert frame["summary.eval/set/accuracy"].to_dict() == {"a": 61.0, "b": 55.0, "c": 1.0}
    assert frame.loc["a", "config.head/name"] == "linear" and frame.loc["a", "tags"] == "head=linear,seed=0"
    assert not [c for c in frame.columns if "_wandb" in c or c.startswith("summary._")]


def test_the_online_reader_gives_the_same_frame_as_the_offline_one(offline):
    cfg = compose([*offline, "experiment=online"])
    runs = []
    for seed, fail in ((0, False), (1, True)):
        c = compose([*offline, "experiment=online", f"run.seed={seed}"])
        run = run_dir(c)
        _log_run(c, run, {"eval/set/accuracy": 60.0 + seed}, fail=fail)
        runs.append(run)
    offline_records = read_offline(runs[0].path.parent)
    api = _RecordedApi([_RecordedRun(r) for r in offline_records.values()])
    online_records = read_online("rmlab", "online", entity="team", api=api)
    assert api.calls == [("team/rmlab", {"group": "online"})]
    a, b = runs_frame(offline_records), runs_frame(online_records)
    assert list(a.columns) == list(b.columns)
    assert a.equals(b)
    assert sorted(a["state"]) == ["done", "failed"]
    assert cfg.tracking.project == "rmlab"


def test_table_marks_the_failed_cell_and_reduces_seeds_as_worked_out_by_hand(offline, tmp_path):
    # the demo grid narrowed to 3 heads x 2 seeds; every run "logged" with a chosen accuracy
    overrides = [*offline, "run.seed=0,1"]
    accuracy = {
        ("linear", 0): 80.0,
        ("linear", 1): 84.0,  # mean 82, sd 2.83, t(1) = 12.706: +- 25.4
        ("mlp2_silu", 0): 70.0,
        ("mlp2_silu", 1): None,  # one failed: 70.0 (n=1) [1 failed]
        ("mlp3_silu", 0): None,
        ("mlp3_silu", 1): None,
    }  # both failed: no number, "2 failed"
    for job in grid_runs("demo", overrides):
        head = next(p.split("=")[1] for p in job.point if p.startswith("head="))
        seed = job.value("run.seed")
        value = accuracy[(head, seed)]
        _log_run(job.cfg, job.run, {"eval/synth_shapes/pair_accuracy": value or 0.0}, fail=value is None)
    md, written = write_tables("demo", tmp_path / "results", overrides)
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith("| layers")
    }
    assert rows["1"][2] == "82.0 ± 25.4 (n=2)"
    assert rows["2"][2] == "70.0 (n=1) [1 failed]"
    assert rows["3"][2] == "2 failed"
    assert "runs in the grid 6, done 3, failed 3, running 0, missing 0" in md
    csv_rows = (tmp_path / "results" / "demo.csv").read_text().splitlines()
    assert csv_rows[1].startswith("1,none,82.0000,25.4") and ",2,," in csv_rows[1]
    assert r"$\pm$" in (tmp_path / "results" / "demo.tex").read_text()
    assert (tmp_path / "results" / "demo.png").exists()


def test_tables_show_the_papers_numbers_and_our_difference(offline, tmp_path):
    overrides = [*offline, "head=mlp2_silu", "scale=tiny", "benchmarks=synth"]
    for job in grid_runs("head", overrides):
        _log_run(job.cfg, job.run, {"eval/vlrb/overall": 70.0, "eval/vlrb/macro": 75.6, "eval/mmrlhf/acc": 93.9})
    md, _ = write_tables("head", tmp_path / "results", overrides)
    line = next(x for x in md.splitlines() if x.startswith("| 2 | silu"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    at = {h: c for h, c in zip(header, cells, strict=True)}
    assert at["VLRB Overall"] == "70.0 (n=1)" and at["VLRB Overall (paper)"] == "76.5"
    assert header[header.index("VLRB Overall") + 2] == "Δ" and cells[header.index("VLRB Overall") + 2] == "-6.5"
    assert "VLRB Reas" in header and "1 n/a" in md  # a metric the run did not log says so


def test_reading_again_uses_the_cache_and_sees_a_changed_file(offline, tmp_path, monkeypatch):
    from rmlab.tracking import runs as runs_module

    parsed = []
    real = runs_module.read_run_file
    monkeypatch.setattr(runs_module, "read_run_file", lambda f, **kw: parsed.append(f) or real(f, **kw))
    cfg = compose([*offline, "experiment=cached"])
    run = run_dir(cfg)
    _log_run(cfg, run, {"eval/set/accuracy": 1.0})
    cache = tmp_path / "cache.json"
    first = read_offline(run.path.parent, cache)
    assert cache.exists() and first[run.signature].summary["eval/set/accuracy"] == 1.0 and len(parsed) == 1
    assert read_offline(run.path.parent, cache) == first and len(parsed) == 1  # unchanged: not parsed again
    shutil.rmtree(run.path / "wandb")
    _log_run(cfg, run, {"eval/set/accuracy": 2.0})  # a rewritten run: another file, other size and time
    assert read_offline(run.path.parent, cache)[run.signature].summary["eval/set/accuracy"] == 2.0
    assert len(parsed) == 2


def test_an_average_column_averages_each_runs_own_numbers():
    from omegaconf import OmegaConf

    from rmlab.results.table import column_value

    columns = OmegaConf.create(
        [{"name": "A", "metric": "x/a"}, {"name": "B", "metric": "x/b"}, {"name": "Avg", "mean_of": ["A", "B"]}]
    )
    by_name = {c.name: c for c in columns}
    assert column_value({"eval/x/a": 70.0, "eval/x/b": 80.0}, by_name["Avg"], by_name) == 75.0
    assert column_value({"eval/x/a": 70.0}, by_name["Avg"], by_name) is None  # a part missing: no average


def test_a_run_made_under_an_earlier_config_is_shown_marked_never_missing(offline, tmp_path):
    """Runs logged when the grid computed something else (here another learning rate) are found by their own recorded
    row and seed values, marked †; a run with today's signature takes the cell back."""
    grid = [*offline, "head=linear,mlp2_silu", "run.seed=0"]
    for job in grid_runs("demo", [*grid, "train.lr=0.5"]):  # the runs as they were made
        _log_run(job.cfg, job.run, {"eval/synth_shapes/pair_accuracy": 60.0})
    md, _ = write_tables("demo", tmp_path / "results", grid)
    assert "| 1 | none | 60.0 (n=1)† |" in md and "| 2 | silu | 60.0 (n=1)† |" in md
    assert "missing 0" in md and "logged runs not in the grid 0" in md and "†: 2 run(s)" in md
    today = grid_runs("demo", grid)[0]  # rerun under today's config
    _log_run(today.cfg, today.run, {"eval/synth_shapes/pair_accuracy": 80.0})
    md, _ = write_tables("demo", tmp_path / "results", grid)
    assert "| 1 | none | 80.0 (n=1) |" in md and "| 2 | silu | 60.0 (n=1)† |" in md
    assert "logged runs not in the grid 1" in md  # the earlier linear run, superseded
