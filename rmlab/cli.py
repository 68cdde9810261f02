"""The `rmlab` command: thin argument parsing over the library. Bad input ends in one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

import yaml
from omegaconf import OmegaConf

from rmlab.config.compose import compose
from rmlab.config.schema import SynthSpec
from rmlab.config.stages import stage_of
from rmlab.data.validate import validate_file
from rmlab.errors import ConfigError, RmlabError
from rmlab.eval.benchmarks import BENCHMARKS, get_benchmark
from rmlab.eval.benchmarks.base import read_predictions
from rmlab.eval.benchmarks.run import compare, dumps, metrics_from_files
from rmlab.launch import adhoc, submit
from rmlab.launch.grid import grid_runs
from rmlab.launch.job import run_config
from rmlab.launch.signature import run_dir, signature_payload
from rmlab.results.dashboard import dashboard_spec, save_dashboard, write_spec
from rmlab.results.table import write_tables
from rmlab.testbed import ensure_testbed, write_testbed
from rmlab.tracking.logger import is_rank_zero


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rmlab", description="Build multimodal reward models by ablation.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="run one config's stage (a reward model by default; stage=rl|selfcompare|ensemble): rmlab train [overrides]",
    )
    t.add_argument("-e", "--experiment", help="compose with experiments/NAME.yaml (one grid point: pass its overrides)")
    t.add_argument(
        "--cfg", action="store_true", help="print the composed config, what its signature hashes and its run directory"
    )
    t.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="Hydra's multirun: sweep the comma-separated overrides (head=linear,mlp3_silu run.seed=0,1) as an ad-hoc "
        "experiment, experiment=NAME (default adhoc), with rmlab sweep's planner, launchers and skip-done",
    )
    _sweep_options(t, " (with -m)")
    t.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. head=mlp3_silu train.lr=1e-4")

    s = sub.add_parser("sweep", help="run or submit an experiment's grid: rmlab sweep EXPERIMENT [overrides]")
    s.add_argument("experiment")
    _sweep_options(s)
    s.add_argument("overrides", nargs="*")

    db = sub.add_parser(
        "dashboard",
        help="create or update the experiment's wandb workspace view and report (wandb-workspaces); --dry-run writes "
        "the specification to results/<experiment>.dashboard.json and touches no server",
    )
    db.add_argument("experiment")
    db.add_argument("--entity", help="wandb entity (default: tracking.entity, else your default entity)")
    db.add_argument("--project", help="wandb project (default: tracking.project)")
    db.add_argument("--dry-run", action="store_true", help="write the specification only; no server")
    db.add_argument("--out", default="results", help="where <experiment>.dashboard.json goes")
    _source_option(db, "where the report's table is rebuilt from (as rmlab tables)")
    db.add_argument("overrides", nargs="*")

    pl = sub.add_parser(
        "plan", help="each grid point's per-GPU memory against launcher.gpu_mem_gb; exit 1 if one does not fit"
    )
    pl.add_argument("experiment")
    pl.add_argument("overrides", nargs="*")

    st = sub.add_parser("status", help="the jobs of an experiment's grid: state, attempts, step, job id, log")
    st.add_argument("experiment")
    st.add_argument("overrides", nargs="*")

    e = sub.add_parser(
        "eval",
        help="score a trained model: rmlab eval eval.model=RUN_OR_MODEL_DIR [eval.data=FILE]; or an ensemble: "
        "rmlab eval ensemble=average ensemble.members=[...]",
    )
    e.add_argument("overrides", nargs="*")

    m = sub.add_parser(
        "metrics",
        help="a benchmark's metrics from a predictions file: rmlab metrics --benchmark B --data F --predictions P",
    )
    m.add_argument("--benchmark", required=True, help="mmrlhf, vlrb, mmrb, rewardbench or rmbench")
    m.add_argument("--data", required=True, help="the benchmark's file, in its released schema")
    m.add_argument("--predictions", help="predictions.jsonl: one row per benchmark row, with `scores` or `choice`")
    m.add_argument("--compare", nargs=2, metavar=("A", "B"), help="paired bootstrap between two prediction files")
    m.add_argument("--image-root", help="folder or archive the benchmark's image paths are under")
    m.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a non-official convention")
    m.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals (0: none)")

    tb = sub.add_parser("tables", help="rebuild an experiment's table from its runs")
    tb.add_argument("experiment")
    tb.add_argument("--out", default="results")
    _source_option(tb, "offline: the wandb run files (default); online: the wandb project; files: run directories")
    tb.add_argument("overrides", nargs="*")

    d = sub.add_parser("data", help="data tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    sy = dsub.add_parser(
        "synth", help="write the synthetic testbed (RLAIF-V parquet, MM-RLHF jsonl with critiques, UltraFeedback jsonl)"
    )
    sy.add_argument("--out", required=True)
    for f in fields(SynthSpec):
        sy.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    va = dsub.add_parser(
        "validate",
        help="check a dataset file: rmlab data validate DATASET PATH [backbone=... data_mix.max_length=N]",
        description="Reads PATH with DATASET's adapter, runs every check (empty fields, identical replies, images, "
        "pixel limit, max_length with the config's backbone tokenizer, duplicates) and prints a JSON summary.",
    )
    va.add_argument("dataset", help="adapter name, e.g. rlaif_v, ultrafeedback, preference")
    va.add_argument("path", help="local file or folder, a hub id, or `hub`")
    va.add_argument("--image-root", help="folder or .zip/.tar archive the rows' relative image paths are under")
    va.add_argument("--policy", choices=["skip", "fail"], default="skip")
    va.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option")
    va.add_argument("overrides", nargs="*", help="config overrides choosing the tokenizer: backbone=..., scale=...")
    return p


def _source_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--source", choices=["offline", "online", "files"], default="offline", help=help)


def _sweep_options(p: argparse.ArgumentParser, only: str = "") -> None:
    p.add_argument(
        "--launcher",
        choices=["inline", "local", "slurm"],
        default=None,
        help=f"inline: one job after another here (default); local: submitit subprocesses; slurm: arrays{only}",
    )
    p.add_argument(
        "--retry", action="store_true", help=f"also rerun failed, timed-out, cancelled, interrupted runs{only}"
    )
    p.add_argument("--wait", action="store_true", help=f"slurm: stay until every job has ended{only}")
    p.add_argument("--dry-run", action="store_true", help=f"print what would run, run nothing{only}")
    p.add_argument("--force", action="store_true", help=f"submit grid points that `rmlab plan` says do not fit{only}")


def cmd_train(args) -> int:
    if args.multirun and args.cfg:
        raise ConfigError("--cfg shows one config: drop -m (or see the sweep's jobs with -m --dry-run)")
    if args.multirun:  # an ad-hoc sweep: its spec recorded under paths.runs, then run as `rmlab sweep NAME` would
        command = " ".join(["rmlab train -m", *([f"-e {args.experiment}"] if args.experiment else []), *args.overrides])
        name, overrides = adhoc.record(args.overrides, base=args.experiment, command=command)
        args.experiment, args.overrides = name, overrides
        return cmd_sweep(args)
    if args.launcher or args.retry or args.wait or args.dry_run or args.force:
        raise ConfigError("--launcher, --retry, --wait, --dry-run and --force sweep: add -m (rmlab train -m ...)")
    swept = adhoc.sweeps_in(args.overrides)
    if swept:
        raise ConfigError(f"{' '.join(swept)}: a sweep; add -m to run one job per value (rmlab train -m ...)")
    cfg = compose(args.overrides, experiment=args.experiment)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        print(f"# signature of: {json.dumps(signature_payload(cfg), sort_keys=True)}")
        print(f"# run directory: {run_dir(cfg).path}")
        return 0
    run = run_config(cfg)
    state = run.status().get("state", "pending")
    print(f"[rmlab] {state}: {run.path}")
    return 0 if state == "done" else 1


def cmd_sweep(args) -> int:
    overrides = [*args.overrides, *([f"launcher={args.launcher}"] if args.launcher else [])]
    planned = submit.plan(args.experiment, overrides, retry=args.retry)
    todo = [p for p in planned if p.submit]
    launcher = str(planned[0].cfg.launcher.name) if planned else "inline"
    print(f"[rmlab] {args.experiment}: {len(planned)} job(s), {len(todo)} to run, launcher {launcher}")
    done = sum(not p.submit and p.reason == "done" for p in planned)
    if done:
        print(f"[rmlab]   {done} already done")
    for p in planned:
        if not p.submit and p.reason != "done":
            print(f"[rmlab]   skip {p.run.signature} ({' '.join(p.point)}): {p.reason}")
    if args.dry_run:
        return 0
    if todo and int(todo[0].cfg.launcher.gpus_per_node) > 0 and not args.force:
        from rmlab.launch.plan import plan_grid, plan_table  # torch, transformers (models on the meta device)

        memory = plan_grid(args.experiment, overrides)
        wanted = {p.run.signature for p in todo}
        short = [m for m in memory if not m.fits and m.job.signature in wanted]
        if short:
            print(plan_table(short), end="", file=sys.stderr)
            raise ConfigError(f"{len(short)} grid point(s) do not fit on a GPU (above); change them or pass --force")
    experiment_dir = planned[0].run.path.parent if planned else None
    if not todo:
        pass
    elif launcher == "slurm":
        jobs = submit.submit_slurm(planned, experiment_dir)
        arrays = sorted({str(j.job_id).split("_")[0] for _, j in jobs})
        print(
            f"[rmlab] submitted {len(jobs)} job(s) in array(s) {', '.join(arrays)}; follow: rmlab status "
            f"{args.experiment}; logs: {experiment_dir / '.submitit'}/<job id>/"
        )
        if not args.wait:
            return 0
        submit.wait_for(jobs)
    elif launcher == "local":
        cpus = max(1, int(todo[0].cfg.launcher.cpus_per_task))
        parallel = int(todo[0].cfg.launcher.local_parallelism) or max(1, (os.cpu_count() or 1) // cpus)
        submit.run_local(planned, experiment_dir, parallel)
    else:
        submit.run_inline(planned)
    states = [p.run.status().get("state", "pending") for p in planned]
    print(f"[rmlab] {args.experiment}: {states.count('done')}/{len(planned)} done")
    for p, state in zip(planned, states, strict=True):
        if state != "done":
            print(f"[rmlab] not done ({state}): {p.run.path}", file=sys.stderr)
    return 0 if states.count("done") == len(planned) else 1


def cmd_plan(args) -> int:
    from rmlab.launch.plan import plan_grid, plan_table  # torch, transformers (models on the meta device)

    planned = plan_grid(args.experiment, args.overrides)
    print(plan_table(planned), end="")
    return 0 if all(p.fits for p in planned) else 1


def cmd_status(args) -> int:
    rows = []
    for job in grid_runs(args.experiment, args.overrides):
        point, run = job.point, job.run
        st = run.status()
        state = st.get("state", "pending")
        if state in ("queued", "running") and not submit.job_alive(st):
            state += " (job gone)"
        steps = stage_of(job.container).steps
        rows.append(
            [
                run.signature,
                " ".join(point),
                state,
                str(st.get("attempts", 0)),
                f"{st.get('step', 0)}/{job.value(steps)}" if steps else "-",
                str(st.get("slurm_job_id") or st.get("pid") or ""),
                str(st.get("log") or ""),
            ]
        )
    header = ["signature", "overrides", "state", "attempts", "step", "job", "log"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_eval(args) -> int:
    cfg = compose(args.overrides)
    ensure_testbed(cfg.data_mix.synth)
    if str(cfg.stage) == "ensemble":  # an ensemble is a run of its own: fitted and scored in its run directory
        run = run_config(cfg)
        results = {f.parent.name: json.loads(f.read_text()) for f in sorted(run.path.glob("eval/*/metrics.json"))}
    else:
        from rmlab.eval.standalone import run_eval  # torch, transformers

        results = run_eval(cfg)
    if not is_rank_zero():  # the other processes of `torchrun ... rmlab eval` scored their share; rank 0 reports
        return 0
    for name, metrics in results.items():
        if name in BENCHMARKS:
            shown = {k: metrics[k] for k in BENCHMARKS[name].headline}
            ci = metrics.get("ci95", {})
            print(
                f"{name}: "
                + ", ".join(
                    f"{k} {v:.1f}" + (f" [{ci[k][0]:.1f}, {ci[k][1]:.1f}]" if k in ci else "")
                    for k, v in shown.items()
                    if v is not None
                )
            )
        else:
            metric = next(k for k in ("pair_accuracy", "exact_match") if k in metrics)
            print(f"{name}: {metric.replace('_', ' ')} {metrics[metric]:.1f}% over {metrics['n']} pairs")
    return 0


def _options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def cmd_metrics(args) -> int:
    if bool(args.predictions) == bool(args.compare):
        raise ConfigError("give --predictions FILE, or --compare A B")
    options = _options(args.option)
    if args.predictions:
        result = metrics_from_files(
            args.benchmark, args.data, args.predictions, args.image_root, options, args.bootstrap
        )
    else:
        items = get_benchmark(args.benchmark).load(args.data, image_root=args.image_root)
        a, b = (read_predictions(p, items) for p in args.compare)
        result = compare(args.benchmark, items, a, b, options, n_boot=args.bootstrap or 1000)
    print(dumps(result))
    return 0


def cmd_dashboard(args) -> int:
    spec = dashboard_spec(args.experiment, args.overrides, entity=args.entity, project=args.project, source=args.source)
    path = write_spec(spec, args.out)
    if args.dry_run:
        print(
            f"[rmlab] wrote {path}: view {spec['workspace']['name']!r}, report {spec['report']['title']!r} (no server)"
        )
        return 0
    urls = save_dashboard(spec)
    print(f"[rmlab] workspace view: {urls['workspace']}")
    print(f"[rmlab] report: {urls['report']}")
    print(f"[rmlab] specification: {path}", file=sys.stderr)
    return 0


def cmd_tables(args) -> int:
    md, written = write_tables(args.experiment, args.out, args.overrides, source=args.source)
    print(md, end="")
    print(f"[rmlab] wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    if args.data_command == "validate":
        from rmlab.models.backbone import load_processor_only  # transformers

        cfg = compose(args.overrides)
        processor = load_processor_only(cfg.backbone, cfg.scale, cfg.data_mix)
        dm = cfg.data_mix
        summary = validate_file(
            args.dataset, args.path, args.image_root, _options(args.option), args.policy, processor, dm.max_length,
            dm.max_image_pixels,
        )  # fmt: skip
        print(json.dumps(summary, indent=2))
        return 0
    spec = SynthSpec(**{f.name: getattr(args, f.name) for f in fields(SynthSpec)})
    manifest = write_testbed(args.out, spec)
    print(f"[rmlab] wrote {args.out}: {manifest['counts']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come after options (`rmlab tables demo --out x head=linear`): collect the stragglers.
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    handler = {
        "train": cmd_train,
        "sweep": cmd_sweep,
        "status": cmd_status,
        "plan": cmd_plan,
        "eval": cmd_eval,
        "metrics": cmd_metrics,
        "tables": cmd_tables,
        "dashboard": cmd_dashboard,
        "data": cmd_data,
    }
    try:
        return handler[args.command](args)
    except RmlabError as e:
        print(f"rmlab: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"rmlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
