"""`rmlab eval`: score a trained model (a run directory or a saved model directory), or an ensemble of them, on
preference files and benchmarks."""

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


def load_reward_scorer(ref: str | Path, cfg, progress: bool = False):
    """What scores responses for a reward: a trained model's run or model directory (`load_scorer`), or a finished
    ensemble run, rebuilt from its own config (its members and validation fit)."""
    path = Path(ref)
    config = path / "config.yaml"
    if not (path / "model").is_dir() and config.exists():
        run_cfg = OmegaConf.load(config)
        if str(run_cfg.get("ensemble", {}).get("method", "none")) != "none":
            from rmlab.eval.ensemble import build_ensemble

            return build_ensemble(run_cfg, progress)
    return load_scorer(path, cfg, progress)[0]


def load_scorer(ref: str | Path, cfg, progress: bool = False):
    """(Scorer, run directory or None) for a run directory or saved model: the model on this machine's GPU when
    there is one, scoring as its run was trained (paradigm options, pair layout, max length); a model outside a run
    scores with `cfg`, whose paradigm must be the model's."""
    import torch

    from rmlab.models.reward_model import load_reward_model
    from rmlab.paradigms import get_paradigm
    from rmlab.train.recipe import scorer

    model_dir, run_dir = _model_dir(Path(ref))
    score_cfg = OmegaConf.load(run_dir / "config.yaml") if run_dir else cfg
    model, processor = load_reward_model(model_dir)
    if str(score_cfg.paradigm.name) != model.paradigm:
        raise ConfigError(f"{model_dir} is a {model.paradigm} model: score it with paradigm={model.paradigm}")
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    encoder = get_paradigm(model.paradigm).encoder(processor, score_cfg)
    run_scorer = scorer(score_cfg, model, encoder, progress=progress)
    run_scorer.batch_size = cfg.eval.batch_size
    return run_scorer, run_dir


def run_eval(overrides: list[str]) -> dict[str, dict]:
    from rmlab.config.compose import compose
    from rmlab.data.mix import Source, resolve_sources
    from rmlab.eval.benchmarks.run import evaluate_configured

    cfg = compose(overrides)
    if str(cfg.ensemble.method) != "none":
        from rmlab.eval.ensemble import run_ensemble

        return run_ensemble(cfg)
    e = cfg.eval
    if not e.model:
        raise ConfigError("eval.model is required: a run directory (runs/<experiment>/<signature>) or a model dir")
    run_scorer, run_dir = load_scorer(e.model, cfg, progress=cfg.train.progress)
    run_cfg = run_scorer.cfg if run_dir else None
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
    out_root = Path(e.out) if e.out else (run_dir or _model_dir(Path(e.model))[0])
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
