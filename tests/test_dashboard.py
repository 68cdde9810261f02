"""Dashboards and `-m`: every experiment's dashboard is accepted by wandb-workspaces' own models; the dry run is
deterministic; `rmlab train -m` is a sweep that tables, status and dashboard read back; the dashboard's filter keeps
exactly the sweep's runs of a runs frame holding others, and its grouping keys are in every run's logged config; the
online path makes the library's own requests, here to a local HTTP endpoint that records them."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rmlab.cli import main
from rmlab.config.compose import compose, experiment_table, experiments
from rmlab.launch.grid import grid_runs
from rmlab.launch.signature import run_dir
from rmlab.results.dashboard import DashboardUnavailable, dashboard_spec, save_dashboard, select_runs, validate
from rmlab.tracking.logger import RunLogger
from rmlab.tracking.runs import config_value, read_offline, runs_frame

NUMBER = re.compile(r"^-?\d+\.\d(?: ± \d+\.\d)? \(n=\d+\)$")
# the job types of the runs each experiment's table rows are (an SFT policy is `sft`: never among reward models)
JOB_TYPES = {"ensembles": ["reward_model", "ensemble"], "rl_rewards": ["rl"], "rl_algorithms": ["rl"]}


def _sections(view) -> dict[str, list[dict]]:
    spec = view.model_dump(by_alias=True, exclude_none=True)["spec"]["section"]
    return {s["name"]: s["panels"] for s in spec["panelBankConfig"]["sections"]}


@pytest.mark.parametrize("name", experiments())
def test_every_experiments_dashboard_is_built_and_accepted_by_wandb_workspaces(name, experiment_grids):
    jobs = experiment_grids[name]
    spec = dashboard_spec(name, jobs=jobs, records={})
    table = experiment_table(name)
    view, report = validate(spec)  # wandb-workspaces' pydantic models, as a save builds them (no server)

    runset = view.model_dump(by_alias=True, exclude_none=True)["spec"]["section"]["runSets"][0]
    axes = list(dict.fromkeys(k for j in jobs for k in j.sweep if k != "run/seed"))  # the seed is averaged
    assert axes and spec["runs"]["groupby"] == [f"sweep.{a}" for a in axes]
    assert sorted(g["name"] for g in runset["grouping"]) == sorted(f"sweep.value.{a}" for a in axes)
    leaves = {(f["key"]["name"], f["op"], json.dumps(f["value"])) for f in runset["filters"]["filters"]}
    types = JOB_TYPES.get(name, ["reward_model"])
    assert leaves == {("group", "=", json.dumps(name)), ("jobType", "IN", json.dumps(types))}
    assert all(j.sweep.get(a.removeprefix("sweep.")) is not None for j in jobs for a in spec["runs"]["groupby"])

    sections = _sections(view)
    bars = sections[f"Table: {table.title}"]
    assert [b["config"]["chartTitle"].split(" (mean of")[0] for b in bars] == [c.name for c in table.columns]
    assert all(b["config"]["groupAgg"] == "mean" and b["config"]["groupArea"] == "minmax" for b in bars)
    (parallel,) = sections["Swept axes -> headline"]
    accessors = [c["accessor"] for c in parallel["config"]["columns"]]
    headline = next(c for c in table.columns if c.get("metric"))
    assert accessors == [*(f"config:sweep.value.{a}" for a in axes), f"summary:eval/{headline.metric}"]
    lines = sections.get("Training curves", [])
    assert ("train/loss" in spec["curves"]) == (types != ["rl"]) and len(lines) == len(spec["curves"])

    blocks = report.model_dump(by_alias=True, exclude_none=True)["spec"]["blocks"]
    (markdown,) = [b["content"] for b in blocks if b["type"] == "markdown-block"]
    assert markdown == spec["table"]["markdown"] and markdown.startswith(f"### {table.title}")
    if table.get("paper"):  # the paper's numbers beside ours
        assert "(paper)" in markdown.splitlines()[2]
    assert report.display_name == view.display_name == f"rmlab: {name}" and spec["workspace"]["view"] == f"rmlab_{name}"


def test_dashboard_dry_run_is_the_same_twice_with_a_stable_view_name(workdir, tmp_path, capsys):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["dashboard", "demo", "--dry-run", "--out", str(out), *workdir]) == 0
    first, second = ((out / "demo.dashboard.json").read_text() for out in outs)
    assert first == second
    spec = json.loads(first)
    assert spec["workspace"] == {"name": "rmlab: demo", "view": "rmlab_demo"}
    assert spec["runs"]["groupby"] == ["sweep.head"] and spec["runs"]["seeds"] == "run.seed"
    assert "missing 9" in spec["table"]["markdown"]  # no run yet: every job said missing, the table still written
    assert "(no server)" in capsys.readouterr().out


def _log(cfg) -> str:
    """A run logged offline through the real wandb package, without training (what a job logs first)."""
    run = run_dir(cfg)
    with RunLogger(cfg, run) as log:
        log.log({"train/loss": 1.0}, step=1)
    return run.signature


def test_train_m_is_a_sweep_that_tables_status_and_the_dashboard_read(workdir, tmp_path, capsys):
    overrides = [*workdir, "tracking=offline", "backbone=qwen2_5", "data_mix=synth_text"]  # text pairs: quicker
    argv = ["train", "-m", "head=linear,mlp2_silu", "train.max_steps=20", *overrides]
    assert main(argv) == 0
    assert "adhoc: 2 job(s), 2 to run, launcher inline" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "adhoc: 2 job(s), 0 to run" in out and "2 already done" in out

    assert main(["tables", "adhoc", "--out", str(tmp_path / "results"), *overrides]) == 0
    md = capsys.readouterr().out
    table = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]
    assert table[0] == ["head", "synth_text/pair_accuracy"]
    assert sorted(r[0] for r in table[1:]) == ["linear", "mlp2_silu"]
    assert all(NUMBER.match(r[1]) for r in table[1:]), md
    assert "done 2" in md and "missing 0" in md
    assert main(["status", "adhoc", *overrides]) == 0
    status = capsys.readouterr().out.splitlines()[1:]
    assert sorted(re.search(r" (head=\S+)", line).group(1) for line in status) == ["head=linear", "head=mlp2_silu"]
    assert all(re.search(r"\bdone\s+1\s+20/20\b", line) for line in status), status

    # The runs frame of the sweep and of runs it must not show: a policy's warm start logged in the same group (job
    # type sft), a run of another group.
    intruders = [
        _log(compose([*overrides, "experiment=adhoc", "paradigm=sft"])),
        _log(compose([*overrides, "experiment=elsewhere", "head=linear"])),
    ]
    runs = tmp_path / "runs"
    records = {**read_offline(runs / "adhoc"), **read_offline(runs / "elsewhere")}
    assert records[intruders[0]].job_type == "sft" and records[intruders[0]].group == "adhoc"
    jobs = grid_runs("adhoc", overrides)
    spec = dashboard_spec("adhoc", overrides, jobs=jobs, records=records)
    frame = runs_frame(records)
    assert len(frame) == 4
    assert sorted(select_runs(frame, spec)["id"]) == sorted(j.signature for j in jobs)
    for job in jobs:  # each key the dashboard groups by is in the run's logged config, with the job's value
        for key in spec["runs"]["groupby"]:
            assert config_value(records[job.signature].config, key) == job.value(key) is not None
    assert {config_value(records[j.signature].config, "sweep.head") for j in jobs} == {"linear", "mlp2_silu"}
    assert "| linear | " in spec["table"]["markdown"] and "| mlp2_silu | " in spec["table"]["markdown"]
    validate(spec)

    assert main(["train", "-m", "experiment=demo", "head=linear,mlp2_silu", *overrides]) == 2
    assert "experiments/demo.yaml" in capsys.readouterr().err
    assert main(["train", "head=linear,mlp2_silu", *overrides]) == 2  # a sweep without -m
    assert "add -m" in capsys.readouterr().err
    assert main(["train", "-m", "head=linear,mlp2_silu", "train.seed=0,1", "experiment=typo", *overrides]) == 2
    assert "train.seed: Key 'seed' not in 'TrainConfig'" in capsys.readouterr().err
    assert not (runs / "typo").exists()  # a sweep that does not compose records nothing


class FakeWandb:
    """A local HTTP endpoint standing in for wandb's GraphQL API: records every request's body and keeps the views
    (workspaces and reports) it is sent, answering each query with the least valid JSON wandb's clients parse."""

    def __init__(self):
        self.requests: list[dict] = []
        self.views: dict[str, dict] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out = json.dumps(fake.answer(self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ops(self, name: str) -> list[dict]:
        return [r for r in self.requests if r["op"] == name]

    def answer(self, path: str, body: bytes) -> dict:
        if path != "/graphql":  # wandb-core's telemetry
            return {}
        request = json.loads(body)
        query, v = request["query"], request.get("variables") or {}
        found = re.search(r"(?:query|mutation)\s+(\w+)", query)
        op = found.group(1) if found else ""
        with self.lock:
            self.requests.append({"op": op, "variables": v})
            if op in ("Viewer", "GetDefaultEntity"):
                return {"data": {"viewer": {"id": "VXNlcjox", "entity": "team", "username": "me", "flags": "{}"}}}
            if op == "View":  # a workspace view by name
                hits = [x for x in self.views.values() if (x["type"], x["name"]) == (v["viewType"], v["viewName"])]
                edges = [{"node": {k: x[k] for k in ("id", "displayName", "spec")}} for x in hits]
                return {"data": {"project": {"allViews": {"edges": edges}}}}
            if op == "ProjectViews":  # a project's reports
                hits = [x for x in self.views.values() if x["type"] == "runs"]
                edges = [
                    {
                        "node": {**x, "user": None, "updatedAt": "2026-01-01T00:00:00", "createdAt": "2026-01-01"},
                        "cursor": x["id"],
                    }
                    for x in hits
                ]
                return {"data": {"project": {"allViews": {"edges": edges, "pageInfo": {"hasNextPage": False}}}}}
            if op in ("UpsertView2", "upsertView"):
                view_id = v.get("id") or f"view{len(self.views) + 1}"
                self.views[view_id] = view = {
                    "id": view_id,
                    "name": v["name"],
                    "type": v["type"],
                    "displayName": v["displayName"],
                    "description": v.get("description") or "",
                    "spec": v["spec"],
                }
                project = {"id": "p1", "name": v["projectName"], "entityName": v["entityName"]}
                return {"data": {"upsertView": {"view": {**view, "project": project, "updatedAt": "2026-01-01"}}}}
            if op == "GetProjects":
                node = {"__typename": "Project", "id": "p1", "name": "rmlab", "entityName": v["entity"],
                        "createdAt": "2026-01-01", "isBenchmark": False, "user": None}  # fmt: skip
                page = {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False}
                return {"data": {"models": {"pageInfo": page, "edges": [{"node": node}]}}}
            if op == "ProjectInternalId":
                return {"data": {"project": {"id": "p1", "internalId": "internal-p1"}}}
            return {"data": {}}


@pytest.fixture()
def fake_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setenv("WANDB_BASE_URL", fake.url)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    yield fake
    fake.server.shutdown()


def test_the_online_path_saves_through_wandb_workspaces_and_updates_the_same_view(fake_wandb, workdir, tmp_path):
    spec = dashboard_spec("demo", workdir, records={})
    urls = save_dashboard(spec, timeout=30)
    saved = {v["type"]: v for v in fake_wandb.views.values()}
    assert sorted(saved) == ["project-view", "runs"]  # one workspace view, one report
    (first,) = fake_wandb.ops("UpsertView2")
    body = first["variables"]
    assert (body["entityName"], body["projectName"], body["type"]) == ("team", "rmlab", "project-view")
    assert (body["name"], body["displayName"], "id" not in body) == ("nw-rmlab_demo-v", "rmlab: demo", True)
    section = json.loads(body["spec"])["section"]
    assert section["runSets"][0]["grouping"] == [{"section": "config", "name": "sweep.value.head"}]
    assert {
        f["value"] if f["op"] == "=" else tuple(f["value"]) for f in section["runSets"][0]["filters"]["filters"]
    } == {
        "demo",
        ("reward_model",),
    }
    names = [s["name"] for s in section["panelBankConfig"]["sections"]]
    assert names == ["Training curves", f"Table: {experiment_table('demo').title}", "Swept axes -> headline"]
    (report,) = fake_wandb.ops("upsertView")
    blocks = json.loads(report["variables"]["spec"])["blocks"]
    assert report["variables"]["type"] == "runs" and report["variables"]["displayName"] == "rmlab: demo"
    assert [b["content"] for b in blocks if b["type"] == "markdown-block"] == [spec["table"]["markdown"]]
    grids = [b for b in blocks if b["type"] == "panel-grid"]
    assert all(g["metadata"]["runSets"][0]["project"]["id"] == "internal-p1" for g in grids)
    assert urls["workspace"].endswith("/team/rmlab?nw=rmlab_demo")

    save_dashboard(spec, timeout=30)  # again: found by name, updated in place
    assert len(fake_wandb.views) == 2
    again = fake_wandb.ops("UpsertView2")[1]["variables"]
    assert again["id"] == next(k for k, v in fake_wandb.views.items() if v["type"] == "project-view")
    assert fake_wandb.ops("upsertView")[1]["variables"]["id"] == saved["runs"]["id"]


def test_without_credentials_or_a_server_the_dashboard_says_so_in_one_line(workdir, tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    assert main(["dashboard", "demo", "--out", str(tmp_path / "results"), *workdir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no credentials" in err
    assert "rmlab dashboard demo --dry-run" in err and "results/demo_curves.png" in err

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # credentials, but no server
    spec = json.loads((tmp_path / "results" / "demo.dashboard.json").read_text())  # written before trying
    with pytest.raises(DashboardUnavailable) as e:
        save_dashboard(spec, timeout=2)
    assert "did not answer" in str(e.value) and "\n" not in str(e.value) and "--dry-run" in str(e.value)
