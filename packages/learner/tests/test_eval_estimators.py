"""The evaluation metrics as pure functions: pass@k against brute force, maj@k votes and ties, the
bucket assignment order, and the paired bootstrap's determinism."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from grpo_common.config import ConfigError
from grpo_learner.config import load_learner_config
from grpo_learner.eval.buckets import Pair, assign_buckets
from grpo_learner.eval.comparison import paired_bootstrap
from grpo_learner.eval.estimators import NO_ANSWER, ProblemResult, majority_bucket, mean_metrics, pass_at_k
from grpo_learner.eval.runner import samples_due


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_pass_at_k_equals_the_fraction_of_k_subsets_holding_a_correct_sample(n: int) -> None:
    for c in range(n + 1):
        flags = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(flags, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_is_stable_for_large_n_and_rejects_k_above_n() -> None:
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert 0.0 < pass_at_k(1000, 3, 500) < 1.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)


def test_pass_at_1_is_mean_correctness_over_all_samples() -> None:
    results = [
        ProblemResult("a", correct=(True, False, False, False)),
        ProblemResult("b", correct=(True,) * 4),
    ]
    metrics = mean_metrics(results, [1, 4])
    assert metrics["pass@1"] == pytest.approx((1 + 4) / 8)
    assert metrics["pass@4"] == pytest.approx(1.0)


def test_majority_counts_buckets_not_strings_and_breaks_ties_by_first_appearance() -> None:
    assert majority_bucket([0, 1, 1, NO_ANSWER, NO_ANSWER, NO_ANSWER]) == 1  # abstentions do not vote
    assert majority_bucket([2, 0, 0, 2]) == 2  # tie: bucket 2 appeared first
    assert majority_bucket([NO_ANSWER, NO_ANSWER]) == NO_ANSWER


def test_maj_at_k_uses_the_first_k_samples_and_the_representatives_verdict() -> None:
    # samples: 7 (wrong), 1/2 (right), 0.5 (right, same bucket as 1/2), 7, 7
    problem = ProblemResult("p", correct=(False, True, True, False, False), buckets=(0, 1, 1, 0, 0))
    assert problem.majority_correct(1) is False  # only the first sample votes
    assert problem.majority_correct(2) is False  # 1-1 tie: bucket 0 appeared first
    assert problem.majority_correct(3) is True  # bucket 1 has two votes
    assert problem.majority_correct(5) is False
    assert (
        ProblemResult("q", correct=(False, False), buckets=(NO_ANSWER, NO_ANSWER)).majority_correct(2)
        is False
    )


def _exact_judge(calls: list[list[Pair]]):
    async def judge(pairs: Sequence[Pair]) -> list[bool]:
        calls.append(list(pairs))
        canon = {"0.5": "1/2", "\\frac12": "1/2", "1/2": "1/2"}
        return [
            canon.get(p.candidate, p.candidate) == canon.get(p.representative, p.representative)
            for p in pairs
        ]

    return judge


def test_buckets_are_numbered_by_first_appearance_and_asked_in_one_call_per_round() -> None:
    calls: list[list[Pair]] = []
    answers = [["7", "0.5", None, "\\frac12", "7", "1/2", "3"], ["2", "4", "2"]]
    buckets = asyncio.run(assign_buckets(answers, ["", ""], _exact_judge(calls)))
    assert buckets == [[0, 1, NO_ANSWER, 1, 0, 1, 2], [0, 1, 0]]
    # round 1: both problems' first answers as representatives, in one call; identical strings are
    # never asked; round 2: what is left of problem 1 against "0.5"; round 3 ("3" alone) asks nothing
    assert [(p.candidate, p.representative) for p in calls[0]] == [
        ("0.5", "7"), ("\\frac12", "7"), ("1/2", "7"), ("3", "7"), ("4", "2"),
    ]  # fmt: skip
    assert [(p.candidate, p.representative) for p in calls[1]] == [
        ("\\frac12", "0.5"),
        ("1/2", "0.5"),
        ("3", "0.5"),
    ]
    assert len(calls) == 2


def test_non_math_tasks_bucket_by_exact_string_without_asking() -> None:
    calls: list[list[Pair]] = []
    buckets = asyncio.run(assign_buckets([["A", "a", "A"]], ["choice"], _exact_judge(calls)))
    assert buckets == [[0, 1, 0]]
    assert calls == []


def test_paired_bootstrap_is_seeded_and_brackets_the_mean_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 200).astype(float).tolist()
    b = [min(1.0, x + (i % 3 == 0)) for i, x in enumerate(a)]
    low, high = paired_bootstrap(a, b, seed=3)
    assert (low, high) == paired_bootstrap(a, b, seed=3)
    assert (low, high) != paired_bootstrap(a, b, seed=4)
    delta = float(np.mean(b) - np.mean(a))
    assert 0 < low < delta < high
    assert paired_bootstrap(a, a, seed=3) == (0.0, 0.0)


def test_sampled_metrics_run_at_step_0_every_sample_every_and_at_the_end() -> None:
    assert [v for v in range(0, 101, 25) if samples_due(v, 0, 100)] == [0, 100]
    assert [v for v in range(0, 101, 25) if samples_due(v, 50, 100)] == [0, 50, 100]
    assert [v for v in range(0, 101, 25) if samples_due(v, None, 100)] == [0, 25, 50, 75, 100]


def test_eval_config_refuses_k_above_samples_and_an_empty_evaluation() -> None:
    model = {"model.name_or_path": "m"}
    with pytest.raises(ConfigError, match=r"each k must be in 1\.\.samples"):
        load_learner_config(None, {**model, "eval.samples": 4, "eval.k": [1, 8]}, environ={})
    with pytest.raises(ConfigError, match="nothing is evaluated"):
        load_learner_config(None, {**model, "eval.every": 10}, environ={})
    assert load_learner_config(None, {**model, "eval.samples": 8}, environ={}).eval.ks == [1, 8]
