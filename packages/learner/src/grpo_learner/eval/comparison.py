"""`grpo eval --model A --model B ...`: checkpoints side by side on the same problems.

Each metric's difference (model - first model) gets a paired bootstrap 95% interval: resample the
problems with replacement R times, take the mean per-problem difference of each resample, and
report its 2.5th and 97.5th percentiles. Pairing (the same resampled problems for both models)
removes the problem-difficulty variance that two independent intervals would carry. The
resampling uses numpy's PCG64 seeded with the run seed, so the interval is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from grpo_learner.config.eval import EvalConfig
from grpo_learner.eval.estimators import metric_names
from grpo_learner.eval.runner import EvalResult

BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Difference:
    metric: str
    baseline: float
    other: float
    low: float  # 95% interval of other - baseline
    high: float

    @property
    def delta(self) -> float:
        return self.other - self.baseline


def paired_bootstrap(
    baseline: Sequence[float], other: Sequence[float], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """95% percentile interval of mean(other - baseline) over problems resampled with replacement."""
    if len(baseline) != len(other) or not baseline:
        raise ValueError(
            f"paired bootstrap needs two equal, non-empty lists; got {len(baseline)}, {len(other)}"
        )
    diffs = np.asarray(other, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.Generator(np.random.PCG64(seed))
    picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def per_problem(result: EvalResult, ks: Sequence[int], metric: str) -> list[float]:
    return [p.metrics(ks)[metric] for p in result.problems]


def compare(baseline: EvalResult, other: EvalResult, evaluated: EvalConfig, *, seed: int) -> list[Difference]:
    """Every metric of `other` against `baseline`, on the same problems in the same order."""
    if [p.problem_id for p in baseline.problems] != [p.problem_id for p in other.problems]:
        raise ValueError("the two evaluations did not cover the same problems in the same order")
    out = []
    for metric in metric_names(evaluated.greedy, evaluated.ks):
        a, b = per_problem(baseline, evaluated.ks, metric), per_problem(other, evaluated.ks, metric)
        low, high = paired_bootstrap(a, b, seed=seed)
        out.append(Difference(metric, baseline.metrics[metric], other.metrics[metric], low, high))
    return out


def comparison_record(models: Sequence[str], differences: Sequence[Sequence[Difference]]) -> dict[str, Any]:
    """comparison.json: per other model, per metric: both values, the difference and its interval."""
    return {
        "baseline": models[0],
        "resamples": BOOTSTRAP_RESAMPLES,
        "models": [
            {
                "model": model,
                "metrics": {
                    d.metric: {
                        "baseline": d.baseline,
                        "value": d.other,
                        "delta": d.delta,
                        "ci95": [d.low, d.high],
                    }
                    for d in diffs
                },
            }
            for model, diffs in zip(models[1:], differences, strict=True)
        ],
    }


def print_comparison(
    models: Sequence[str], differences: Sequence[Sequence[Difference]], console: Console | None = None
) -> None:
    console = console or Console()
    table = Table(title="checkpoints on the same problems (difference vs the first, paired bootstrap 95%)")
    table.add_column("metric")
    table.add_column(models[0], justify="right")
    for model in models[1:]:
        table.add_column(model, justify="right")
        table.add_column("difference [95% CI]", justify="right")
    for metric_diffs in zip(*differences, strict=True):
        first = metric_diffs[0]
        cells = [first.metric, f"{100 * first.baseline:.1f}%"]
        for d in metric_diffs:
            cells += [
                f"{100 * d.other:.1f}%",
                f"{100 * d.delta:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            ]
        table.add_row(*cells)
    console.print(table)
