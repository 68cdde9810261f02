"""The five benchmarks of BaseReward's tables, one module each, registering themselves on import."""

import importlib
import pkgutil

from rmlab.eval.benchmarks.base import BENCHMARKS, BenchItem, Benchmark, SynthExamples, get_benchmark

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "run"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BENCHMARKS", "BenchItem", "Benchmark", "SynthExamples", "get_benchmark"]
