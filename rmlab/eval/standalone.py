"""`rmlab eval`: score a trained model (a run directory or a saved model directory) on preference files and
benchmarks; and what a policy's reward reads (a trained model or a finished ensemble run)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rmlab.data.mix import Source, resolve_sources
from rmlab.errors import ConfigError
from rmlab.eval.benchmarks.run import evaluate_configured
from rmlab.eval.ensemble import build_ensemble
from rmlab.eval.score import load_scorer, model_dir_of
from rmlab.generation.engine import generation_engine
from rmlab.runtime.distributed import init_distributed
from rmlab.runtime.run_dir import RunDir
from rmlab.tracking.logger import RunLogger, numeric_leaves


def load_reward_scorer(ref: str | Path, cfg, progress: bool = False, device=None):
    """What scores responses for a reward: a trained model's run or model directory (`load_scorer`), or a finished
    ensemble run, rebuilt from its own config (its members and validation fit), on `device`."""
    path = Path(ref)
    config = path / "config.yaml"
    if not (path / "model").is_dir() and config.exists():
        run_cfg = OmegaConf.load(config)
        if run_cfg.get("stage") == "ensemble":
            return build_ensemble(run_cfg, progress, device=device)
    return load_scorer(path, cfg, progress, device=device)[0]


def run_eval(cfg: DictConfig) -> dict[str, dict]:
    """Score `eval.model` on `eval.data` and/or `eval.benchmarks` (else its run's test sources); a run's own
    evaluation goes into its run directory and continues its wandb run."""
    e = cfg.eval
    if not e.model:
        raise ConfigError("eval.model is required: a run directory (runs/<experiment>/<signature>) or a model dir")
    dist = init_distributed()  # under torchrun or a job of several processes: each scores its share
    run_scorer, run_dir = load_scorer(e.model, cfg, progress=cfg.run.progress and dist.is_main, dist=dist)
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
    out_root = Path(e.out) if e.out else (run_dir or model_dir_of(Path(e.model))[0])
    out_dir_for = lambda name: out_root / "eval" / name  # noqa: E731
    model_dir = model_dir_of(Path(e.model))[0]
    # generation.engine is this command's, whatever the run was trained or first scored with
    with generation_engine(cfg, run_scorer.model, model_dir, out_root / "vllm", score_cfg=run_scorer.cfg,
                           processes=dist.world_size):  # fmt: skip
        results = run_scorer.evaluate(sources, out_dir_for)
        results.update(evaluate_configured(cfg, run_scorer, out_dir_for))
    if run_dir is not None and e.out is None and dist.is_main:  # the run's own evaluation: into its wandb run
        logged = OmegaConf.merge(run_cfg, {"tracking": {"mode": str(cfg.tracking.mode)}})
        with RunLogger(logged, RunDir(run_dir, run_dir.name, str(run_cfg.experiment))) as log:
            log.summary(numeric_leaves(results, "eval/"))
    return results
