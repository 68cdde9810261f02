"""The `rmlab` command: thin argument parsing over the library. Bad input ends in one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import sys

from rmlab.errors import ConfigError, RmlabError

LAUNCHERS = {"basic": "basic", "local": "submitit_local", "slurm": "submitit_slurm"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rmlab", description="Build multimodal reward models by ablation.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one reward model: rmlab train [overrides]")
    t.add_argument("-e", "--experiment", help="compose with experiments/NAME.yaml (one grid point: pass its overrides)")
    t.add_argument("--cfg", action="store_true", help="print the composed config and its run directory, then exit")
    t.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. head=mlp3_silu train.lr=1e-4")

    s = sub.add_parser("sweep", help="launch an experiment's grid: rmlab sweep EXPERIMENT [overrides]")
    s.add_argument("experiment")
    s.add_argument(
        "--launcher",
        choices=sorted(LAUNCHERS),
        default="basic",
        help="basic: one job after another in this process; local: submitit subprocesses; slurm: sbatch",
    )
    s.add_argument("overrides", nargs="*")

    e = sub.add_parser("eval", help="score a trained model: rmlab eval eval.model=RUN_OR_MODEL_DIR [eval.data=FILE]")
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
    tb.add_argument("overrides", nargs="*")

    d = sub.add_parser("data", help="data tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    sy = dsub.add_parser("synth", help="write the synthetic testbed (RLAIF-V parquet + UltraFeedback jsonl)")
    sy.add_argument("--out", required=True)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--mm-train", type=int, default=2000)
    sy.add_argument("--mm-test", type=int, default=400)
    sy.add_argument("--text-train", type=int, default=2000)
    sy.add_argument("--text-test", type=int, default=400)
    sy.add_argument("--image-size", type=int, default=56)
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


def cmd_train(args) -> int:
    from omegaconf import OmegaConf

    from rmlab.config.compose import compose
    from rmlab.launch.run_dir import RunDir

    cfg = compose(args.overrides, experiment=args.experiment)
    run = RunDir.for_config(cfg)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        print(f"# run directory: {run.path}")
        return 0
    from rmlab.train.recipe import train

    run = train(cfg)
    print(f"[rmlab] done: {run.path}")
    return 0


def cmd_sweep(args) -> int:
    from rmlab.config.compose import base_overrides
    from rmlab.launch.grid import grid_runs

    runs = grid_runs(args.experiment, args.overrides)  # validates the experiment and every grid point first
    print(f"[rmlab] {args.experiment}: {len(runs)} job(s), launcher {args.launcher}")
    argv = [
        "rmlab-sweep",
        "-m",
        *base_overrides(args.experiment),
        f"hydra/launcher={LAUNCHERS[args.launcher]}",
        *args.overrides,
    ]
    from rmlab.launch import hydra_app

    saved = sys.argv
    sys.argv = argv
    try:
        hydra_app.job()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.argv = saved
    states = [run.status().get("state", "pending") for _, _, run in runs]
    failed = [str(run.path) for (_, _, run), s in zip(runs, states, strict=True) if s != "done"]
    print(f"[rmlab] {args.experiment}: {states.count('done')}/{len(runs)} done")
    for path in failed:
        print(f"[rmlab] not done: {path}", file=sys.stderr)
    return 1 if failed else 0


def cmd_eval(args) -> int:
    from rmlab.eval.benchmarks import BENCHMARKS
    from rmlab.eval.standalone import run_eval

    for name, metrics in run_eval(args.overrides).items():
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
            print(f"{name}: accuracy {metrics['accuracy']:.1f}% over {metrics['n']} pairs")
    return 0


def _options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def cmd_metrics(args) -> int:
    from rmlab.eval.benchmarks import get_benchmark
    from rmlab.eval.benchmarks.base import read_predictions
    from rmlab.eval.benchmarks.run import compare, dumps, metrics_from_files

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


def cmd_tables(args) -> int:
    from rmlab.results.table import write_tables

    print(write_tables(args.experiment, args.out, args.overrides), end="")
    return 0


def cmd_data(args) -> int:
    if args.data_command == "validate":
        import json

        from rmlab.config.compose import compose
        from rmlab.data.validate import validate_file

        options = _options(args.option)
        summary = validate_file(compose(args.overrides), args.dataset, args.path, args.image_root, options, args.policy)
        print(json.dumps(summary, indent=2))
        return 0
    from rmlab.data.synth import SynthSpec, write_testbed

    spec = SynthSpec(
        seed=args.seed,
        mm_train=args.mm_train,
        mm_test=args.mm_test,
        text_train=args.text_train,
        text_test=args.text_test,
        image_size=args.image_size,
    )
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
        "eval": cmd_eval,
        "metrics": cmd_metrics,
        "tables": cmd_tables,
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
