"""How sure a benchmark number is: a bootstrap interval over prompts, and a paired bootstrap test between models.

Rows that share a prompt (MM-RLHF's several pairs per id, RM-Bench's responses of one prompt) are resampled
together, so the interval reflects the number of prompts, not of pairs. The statistic is the benchmark's own metric
function, recomputed on every resample: Acc+, macro averages and weighted sections all get intervals the same way.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from rmlab.eval.benchmarks.base import BenchItem, groups_of


def _resample(items: list[BenchItem], preds: list[dict], groups: list[list[int]], rng: random.Random):
    """A bootstrap sample: whole prompt groups drawn with replacement. A group drawn again is a new prompt (copies
    with distinct ids, so per-id metrics like Acc+ see two prompts); metric functions read predictions by position,
    so predictions are shared, not copied."""
    new_items, new_preds = [], []
    drawn: dict[int, int] = {}
    for _ in range(len(groups)):
        g = rng.randrange(len(groups))
        times = drawn[g] = drawn.get(g, 0) + 1
        for i in groups[g]:
            item = items[i]
            if times > 1:
                item = replace(item, id=f"{item.id}#{times}", group=f"{item.group or item.id}#{times}")
            new_items.append(item)
            new_preds.append(preds[i])
    return new_items, new_preds


def _get(metrics: dict, dotted: str):
    node = metrics
    for part in dotted.split("/"):
        node = node[part]
    return node


def bootstrap_intervals(metric_fn, items, preds, keys, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """{key: [low, high]}: percentile intervals of the metric over prompt resamples."""
    rng = random.Random(seed)
    groups = groups_of(items)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        m = metric_fn(*_resample(items, preds, groups, rng))
        for k in keys:
            value = _get(m, k)
            if not math.isnan(value):
                samples[k].append(value)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    return {k: ([_quantile(v, lo_q), _quantile(v, hi_q)] if v else [float("nan")] * 2) for k, v in samples.items()}


def paired_bootstrap(metric_fn, items, preds_a, preds_b, keys, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """For each key: the difference A - B and a two-sided p-value, both models resampled on the same prompts.

    p = 2 * min(P(delta* <= 0), P(delta* >= 0)) over the resampled differences (capped at 1).
    """
    rng = random.Random(seed)
    groups = groups_of(items)
    full_a, full_b = metric_fn(items, preds_a), metric_fn(items, preds_b)
    deltas: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        state = rng.getstate()
        sample_items, sample_a = _resample(items, preds_a, groups, rng)
        rng.setstate(state)
        _, sample_b = _resample(items, preds_b, groups, rng)
        ma, mb = metric_fn(sample_items, sample_a), metric_fn(sample_items, sample_b)
        for k in keys:
            deltas[k].append(_get(ma, k) - _get(mb, k))
    out = []
    for k in keys:
        d = deltas[k]
        below, above = sum(x <= 0 for x in d) / n_boot, sum(x >= 0 for x in d) / n_boot
        out.append(
            {
                "metric": k,
                "a": _get(full_a, k),
                "b": _get(full_b, k),
                "difference": _get(full_a, k) - _get(full_b, k),
                "interval": [_quantile(d, 0.025), _quantile(d, 0.975)],
                "p_value": min(1.0, 2 * min(below, above)),
                "n_boot": n_boot,
            }
        )
    return out


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
