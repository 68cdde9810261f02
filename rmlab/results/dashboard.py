"""`rmlab dashboard EXPERIMENT`: the experiment's ablations compared in wandb, built from what its file already says.

One saved workspace view and one report per experiment, made with wandb-workspaces (the maintained API for wandb's
UI: its models and its save calls, no hand-written GraphQL):

- runs: the experiment's group, of the job types its table's rows are (rmlab.tracking.logger.job_type: the RL rows
  of `rl_rewards` are shown without the SFT policy and reward models they read), grouped by the swept axes but the
  seed (`sweep.<axis>`, which every job of a sweep logs), so each line or bar is one grid point over its seeds: the
  mean, with a min-max band;
- a line panel per training curve its runs log (loss, accuracy, margin, lr, grad norm, pairs/s; a policy's reward,
  entropy, ...), a bar panel per table column (a `mean_of` column: its parts side by side), and a
  parallel-coordinates panel from the swept axes to the headline column (the table's first logged metric);
- the report: the same panels, and the table rebuilt from the runs (the paper's numbers beside ours) as markdown.

`dashboard_spec` builds the specification as plain JSON, deterministic (a stable view name `rmlab_<experiment>`, no
time, no random id): `rmlab dashboard --dry-run` writes it to results/<experiment>.dashboard.json and stops there.
`to_wandb` turns it into wandb-workspaces objects, `validate` builds their models without a server, and
`save_dashboard` saves them: the view found by its name and the report by its title, updated in place, never
duplicated. Without credentials or a reachable server it says so in one line (DashboardUnavailable).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

from rmlab.config.compose import experiment_table, experiments
from rmlab.errors import ConfigError, RmlabError
from rmlab.launch.grid import Job, grid_runs, sweep_key
from rmlab.results.table import build_table, load_records, row_label, to_markdown
from rmlab.tracking.logger import job_type
from rmlab.tracking.offline import RunRecord

VERSION = 1
# The training curves each job type logs (rmlab.train.recipe, rmlab.rl.recipe), in the order shown; an ensemble
# trains nothing.
_SFT = ("train/loss", "train/token_accuracy", "train/lr", "train/grad_norm", "train/pairs_per_s", "val/exact_match")
CURVES = {
    "reward_model": (
        "train/loss",
        "train/pair_accuracy",
        "train/margin",
        "train/lr",
        "train/grad_norm",
        "train/pairs_per_s",
        "val/pair_accuracy",
    ),
    "sft": _SFT,
    "selfcompare": _SFT,
    "rl": (
        "rl/reward_mean",
        "rl/loss",
        "rl/entropy",
        "rl/response_length",
        "rl/kl_ref",
        "rl/grad_norm",
        "rl/clip_fraction",
        "rl/seconds",
    ),
    "ensemble": (),
}
# The specification's filter fields: the runs frame's columns (rmlab.tracking.runs.runs_frame) -> wandb's run
# attributes as wandb-workspaces names them.
FIELDS = {"group": "Group", "job_type": "JobType"}
API_TIMEOUT_S = 20


class DashboardUnavailable(RmlabError):
    """No wandb credentials, no reachable server, or a save the server refused: one line, with the offline way out."""


def view_name(experiment: str) -> str:
    """The view's stable name (its `?nw=` in the workspace URL): `rmlab_<experiment>`, letters, digits and `_` only
    (a hash of the name is added when other characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", experiment)
    if safe != experiment:
        safe += "_" + hashlib.sha1(experiment.encode()).hexdigest()[:6]
    return f"rmlab_{safe}"


def _column_metrics(col, by_name: dict) -> list[str]:
    """The logged metrics a table column shows: its own, or (mean_of) those of the columns it averages."""
    if col.get("mean_of"):
        return [m for name in col.mean_of for m in _column_metrics(by_name[name], by_name)]
    return [f"eval/{col.metric}"]


def dashboard_spec(
    experiment: str,
    overrides: list[str] = (),
    entity: str | None = None,
    project: str | None = None,
    source: str = "offline",
    jobs: list[Job] | None = None,
    records: dict[str, RunRecord] | None = None,
) -> dict:
    """The dashboard of an experiment (an experiments/ file or an ad-hoc sweep) as plain JSON: where (entity,
    project), the view's and the report's names, which runs and how grouped, the panels, and the table rebuilt from
    the runs (`records`, read from `source` when not given). `jobs`: the experiment's grid, when already built."""
    table_spec = experiment_table(experiment, overrides)
    jobs = grid_runs(experiment, overrides) if jobs is None else jobs
    if not jobs:
        raise ConfigError(f"experiment {experiment} has no jobs")
    rows = list(table_spec.rows)
    excluded = {str(r) for r in (table_spec.get("exclude_rows") or [])}
    shown = [j for j in jobs if row_label(j.value(k) for k in rows) not in excluded]
    job_types = list(dict.fromkeys(job_type(j.container) for j in shown))
    seeds = str(table_spec.get("seeds") or "")
    axes = list(dict.fromkeys(axis for j in jobs for axis in j.sweep))
    groupby = [f"sweep.{a}" for a in axes if not seeds or a != sweep_key(seeds)]
    curves = list(dict.fromkeys(m for t in job_types for m in CURVES.get(t, ())))
    by_name = {c.name: c for c in table_spec.columns}
    columns = [
        {
            "title": c.name if not c.get("mean_of") else f"{c.name} (mean of {', '.join(c.mean_of)})",
            "metrics": _column_metrics(c, by_name),
        }
        for c in table_spec.columns
    ]
    headline = next((c for c in table_spec.columns if not c.get("mean_of")), table_spec.columns[0])
    if records is None:
        records = load_records(source, jobs[0].cfg)
    markdown = to_markdown(build_table(table_spec, jobs, records))
    where = (
        f"experiments/{experiment}.yaml"
        if experiment in experiments()
        else f"the ad-hoc sweep's spec ({experiment}/experiment.yaml under paths.runs)"
    )
    grouped = ", ".join(groupby) or "nothing (each run alone)"
    description = (
        f"{table_spec.title}. Runs of group {experiment} (job type {', '.join(job_types)}), grouped by {grouped}; "
        f"seeds ({seeds or 'none'}) averaged: the mean with a min-max band. Built by `rmlab dashboard {experiment}` "
        f"from {where}."
    )
    return {
        "rmlab_dashboard": VERSION,
        "experiment": experiment,
        "entity": entity or jobs[0].value("tracking.entity"),
        "project": project or jobs[0].value("tracking.project"),
        "workspace": {"name": f"rmlab: {experiment}", "view": view_name(experiment)},
        "report": {"title": f"rmlab: {experiment}", "description": description},
        "runs": {
            "filters": [
                {"field": "group", "op": "==", "value": experiment},
                {"field": "job_type", "op": "in", "value": job_types},
            ],
            "groupby": groupby,
            "seeds": seeds,
            "aggregate": "mean",
            "band": "minmax",
            "max_runs": max(10, min(len(jobs), 100)),
        },
        "curves": curves,
        "columns": columns,
        "parallel": {
            "title": f"{' x '.join(a.removeprefix('sweep.') for a in groupby)} -> {headline.name}",
            "axes": groupby,
            "metric": _column_metrics(headline, by_name)[0],
            "metric_title": headline.name,
        }
        if groupby
        else None,
        "table": {"title": table_spec.title, "markdown": markdown},
    }


def write_spec(spec: dict, out_dir: str | Path = "results") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec['experiment']}.dashboard.json"
    path.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return path


def select_runs(frame, spec: dict):
    """The rows of a runs frame (rmlab.tracking.runs.runs_frame) the dashboard's filters keep: what the view shows."""
    keep = None
    for f in spec["runs"]["filters"]:
        column = frame[f["field"]]
        hit = column.isin(list(f["value"])) if f["op"] == "in" else column == f["value"]
        keep = hit if keep is None else keep & hit
    return frame if keep is None else frame[keep]


# ------------------------------------------------------------------------------------------------ wandb-workspaces


def _filters(spec: dict) -> list:
    import wandb_workspaces.workspaces as ws

    out = []
    for f in spec["runs"]["filters"]:
        attribute = ws.Metric(FIELDS[f["field"]])
        out.append(attribute.isin(list(f["value"])) if f["op"] == "in" else attribute == f["value"])
    return out


def _panels(spec: dict) -> dict[str, list]:
    """Fresh panel objects per section (a panel belongs to one grid)."""
    import wandb_workspaces.reports.v2 as wr

    agg = {"groupby_aggfunc": spec["runs"]["aggregate"], "groupby_rangefunc": spec["runs"]["band"]}
    panels = {
        "Training curves": [wr.LinePlot(title=m, x="Step", y=[m], **agg) for m in spec["curves"]],
        f"Table: {spec['table']['title']}": [
            wr.BarPlot(title=c["title"], metrics=[wr.SummaryMetric(m) for m in c["metrics"]], orientation="v", **agg)
            for c in spec["columns"]
        ],
    }
    p = spec["parallel"]
    if p:
        columns = [
            wr.ParallelCoordinatesPlotColumn(metric=wr.Config(a), display_name=a.removeprefix("sweep."))
            for a in p["axes"]
        ]
        columns.append(
            wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(p["metric"]), display_name=p["metric_title"])
        )
        panels["Swept axes -> headline"] = [wr.ParallelCoordinatesPlot(title=p["title"], columns=columns)]
    return {name: items for name, items in panels.items() if items}


def to_wandb(spec: dict, offline: bool = False):
    """The specification as wandb-workspaces objects: (Workspace, Report). `offline`: the report's run sets name no
    project (their one server lookup, the project's internal id), so the report's model builds without a server."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    entity, project = spec["entity"] or "", spec["project"]
    runs = spec["runs"]
    workspace = ws.Workspace(
        entity=entity,
        project=project,
        name=spec["workspace"]["name"],
        sections=[ws.Section(name=name, panels=items, is_open=True) for name, items in _panels(spec).items()],
        settings=ws.WorkspaceSettings(x_axis="Step", max_runs=runs["max_runs"]),
        runset_settings=ws.RunsetSettings(filters=_filters(spec), groupby=[ws.Config(k) for k in runs["groupby"]]),
    )

    def runset():
        return wr.Runset(
            entity="" if offline else entity,
            project="" if offline else project,
            name=f"{spec['experiment']} runs",
            filters=_filters(spec),
            groupby=[f"config.{k}" for k in runs["groupby"]],
        )

    blocks = [wr.H2(text="Table"), wr.MarkdownBlock(text=spec["table"]["markdown"])]
    for name, items in _panels(spec).items():
        blocks += [wr.H2(text=name), wr.PanelGrid(runsets=[runset()], panels=items)]
    report = wr.Report(
        project=project,
        entity=entity,
        title=spec["report"]["title"],
        description=spec["report"]["description"],
        blocks=blocks,
        width="fluid",
    )
    return workspace, report


def validate(spec: dict):
    """Build the wandb-workspaces models of the specification, as a save would, without a server: (the view's
    model, the report's model). Raises pydantic's ValidationError on anything the library does not accept."""
    workspace, report = to_wandb(spec, offline=True)
    return workspace._to_model(), report._to_model()


def _offline_way(experiment: str) -> str:
    return (
        f"; `rmlab dashboard {experiment} --dry-run` writes the specification without a server, and `rmlab tables "
        f"{experiment}` the offline plots (results/{experiment}.png, results/{experiment}_curves.png)"
    )


def _one_line(e: BaseException) -> str:
    return re.sub(r"\s+", " ", f"{type(e).__name__}: {e}").strip()[:300]


def _api(experiment: str, timeout: float):
    """wandb's public API, or DashboardUnavailable: no credentials (never prompts), or no server answering."""
    import wandb
    from wandb import env
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    host = env.get_base_url(wandb_setup.singleton().settings.base_url) or "https://api.wandb.ai"
    try:
        auth = wbauth.authenticate_session(host=host, source="rmlab dashboard", prompt=False, update_session=False)
    except Exception as e:  # credentials found but malformed
        raise DashboardUnavailable(
            f"wandb: unusable credentials for {host} ({_one_line(e)}){_offline_way(experiment)}"
        ) from None
    if auth is None:
        raise DashboardUnavailable(
            f"wandb: no credentials for {host} (set WANDB_API_KEY or run `wandb login`){_offline_way(experiment)}"
        )
    try:
        return wandb.Api(timeout=timeout)
    except Exception as e:
        raise DashboardUnavailable(f"wandb: {host} did not answer ({_one_line(e)}){_offline_way(experiment)}") from None


def save_dashboard(spec: dict, timeout: float = API_TIMEOUT_S) -> dict[str, str]:
    """Create or update the experiment's workspace view (found by its name) and report (found by its title) with
    wandb-workspaces; return their URLs."""
    api = _api(spec["experiment"], timeout)
    from wandb_workspaces.workspaces import internal as views

    try:
        entity = spec["entity"] or api.default_entity
        spec = {**spec, "entity": entity}
        project = spec["project"]
        workspace, report = to_wandb(spec)
        name = views._url_query_str_to_internal_name(spec["workspace"]["view"])
        with contextlib.suppress(ValueError):  # the library's own lookup of the view by its name; none: created
            workspace._internal_id = views.get_view_dict(entity, project, spec["workspace"]["view"])["id"]
        workspace._internal_name = name
        workspace.save()
        title = spec["report"]["title"]
        found = [r for r in api.reports(f"{entity}/{project}") if r.display_name == title]
        if found:
            report.id = found[0].id
        report.save()
        return {"workspace": workspace.url, "report": report.url}
    except DashboardUnavailable:
        raise
    except Exception as e:
        raise DashboardUnavailable(
            f"wandb: saving the dashboard failed ({_one_line(e)}){_offline_way(spec['experiment'])}"
        ) from None
