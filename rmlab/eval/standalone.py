"""`rmlab eval`: score a trained model (a run directory or a saved model directory) on preference files."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from rmlab.errors import ConfigError


def _model_dir(path: Path) -> tuple[Path, Path | None]:
    """(saved model directory, run directory or None) for what `eval.model` points at."""
    if (path / "rmlab_model.json").exists():
        run = path.parent if (path.parent / "status.json").exists() else None
        return path, run
    if (path / "model" / "rmlab_model.json").exists():
        return path / "model", path
    raise ConfigError(f"eval.model={path}: neither a run directory (with model/) nor a saved rmlab model")


def run_eval(overrides: list[str]) -> dict[str, dict]:
    from rmlab.config.compose import compose
    from rmlab.data.encode import PairEncoder, tokenizer_of
    from rmlab.data.mix import Source, resolve_sources
    from rmlab.eval.benchmarks.run import evaluate_configured
    from rmlab.models.reward_model import load_reward_model
    from rmlab.train.recipe import scorer

    cfg = compose(overrides)
    e = cfg.eval
    if not e.model:
        raise ConfigError("eval.model is required: a run directory (runs/<experiment>/<signature>) or a model dir")
    model_dir, run_dir = _model_dir(Path(e.model))
    run_cfg = OmegaConf.load(run_dir / "config.yaml") if run_dir else None
    if e.data:
        if not e.adapter:
            raise ConfigError("eval.data needs eval.adapter (the dataset schema of the file, e.g. rlaif_v)")
        sources = [Source(name=Path(e.data).stem, adapter=e.adapter, path=e.data)]
    elif e.benchmarks:
        sources = []  # only the benchmarks asked for
    elif run_cfg is not None:
        sources = resolve_sources(run_cfg.data_mix.test, run_cfg.get("datasets"))
    else:
        raise ConfigError("eval.data or eval.benchmarks is required when eval.model is a model outside a run")
    # score as the run was trained (its paradigm options and pair layout); without a run, as this config says
    score_cfg = run_cfg if run_cfg is not None else cfg
    model, processor = load_reward_model(model_dir)
    encoder = PairEncoder(processor, int(score_cfg.data_mix.max_length))
    out_root = Path(e.out) if e.out else (run_dir or model_dir)
    run_scorer = scorer(score_cfg, model, encoder, tokenizer_of(processor).pad_token_id, progress=cfg.train.progress)
    run_scorer.batch_size = e.batch_size
    out_dir_for = lambda name: out_root / "eval" / name  # noqa: E731
    results = run_scorer.evaluate(sources, out_dir_for)
    results.update(evaluate_configured(cfg, run_scorer, out_dir_for))
    if run_dir is not None and e.out is None:  # a run's own evaluation: logged as its `eval` stage
        _log(run_cfg, run_dir, str(cfg.tracking.mode), results)
    return results


def _log(run_cfg, run_dir: Path, mode: str, results: dict) -> None:
    from rmlab.launch.run_dir import RunDir
    from rmlab.tracking.logger import RunLogger, numeric_leaves

    run_cfg = OmegaConf.merge(run_cfg, {"tracking": {"mode": mode}})
    run = RunDir(run_dir, run_dir.name, str(run_cfg.experiment))
    with RunLogger(run_cfg, run, job_type="eval") as log:
        log.summary(numeric_leaves(results, "eval/"))
