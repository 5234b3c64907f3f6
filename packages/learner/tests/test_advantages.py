"""Advantage estimators against hand-computed numbers and a naive per-element implementation."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from grpo_learner.grpo.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_advantages,
    groups_with_signal,
)

EPS = 1e-4


def test_group_scaling_matches_hand_computed_numbers():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    # mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735...
    expected = 0.5 / (math.sqrt(1 / 3) + EPS)
    adv = compute_advantages({"reward": rewards}, {"reward": 1.0}, "group", eps=EPS)
    assert adv[0].tolist() == pytest.approx([expected, -expected, -expected, expected], abs=1e-12)


def test_batch_scaling_uses_group_mean_and_batch_std():
    rewards = torch.tensor([[1.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    # group means 0.5 and 3; batch std of [1, 0, 3, 3] (unbiased) = sqrt(6.75 / 3) = 1.5
    adv = compute_advantages({"reward": rewards}, {"reward": 1.0}, "batch", eps=EPS)
    assert adv.flatten().tolist() == pytest.approx([0.5 / 1.5001, -0.5 / 1.5001, 0.0, 0.0], abs=1e-12)


def test_none_scaling_is_dr_grpo_mean_centering_only():
    rewards = torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64)
    adv = compute_advantages({"reward": rewards}, {"reward": 1.0}, "none")
    assert adv.tolist() == [[1.0, -1.0, 0.0]]


def test_constant_group_gets_exactly_zero_advantage_for_every_estimator():
    rewards = torch.tensor([[0.1, 0.1, 0.1], [1.0, 0.0, 0.5]], dtype=torch.float64)
    for name in ADVANTAGE_ESTIMATORS:
        adv = compute_advantages({"reward": rewards}, {"reward": 1.0}, name)
        assert adv[0].tolist() == [0.0, 0.0, 0.0], name
        assert adv[1].abs().sum() > 0


def _naive(rewards: list[list[float]], scaling: str, eps: float) -> list[list[float]]:
    flat = [r for group in rewards for r in group]
    batch_std = statistics.stdev(flat)
    out = []
    for group in rewards:
        mean = sum(group) / len(group)
        if all(r == group[0] for r in group):
            out.append([0.0] * len(group))
            continue
        std = {"group": statistics.stdev(group), "batch": batch_std, "none": None}[scaling]
        out.append([(r - mean) / (std + eps) if std is not None else r - mean for r in group])
    return out


@pytest.mark.parametrize("scaling", ["group", "batch", "none"])
@pytest.mark.parametrize("combine", ["sum_then_normalize", "normalize_then_sum"])
def test_estimators_match_naive_loops_on_random_rewards(scaling: str, combine: str):
    gen = torch.Generator().manual_seed(7)
    correct = torch.randint(0, 2, (6, 5), generator=gen).double()
    fmt = torch.rand((6, 5), generator=gen, dtype=torch.float64)
    weights = {"correct": 1.0, "format": 0.3}
    adv = compute_advantages({"correct": correct, "format": fmt}, weights, scaling, combine, eps=EPS)
    if combine == "sum_then_normalize":
        summed = (correct + 0.3 * fmt).tolist()
        expected = _naive(summed, scaling, EPS)
    else:
        a = _naive(correct.tolist(), scaling, EPS)
        b = _naive(fmt.tolist(), scaling, EPS)
        expected = [[x + 0.3 * y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]
    assert torch.allclose(adv, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


def test_groups_with_signal_depends_on_combine_mode():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    weights = {"a": 1.0, "b": 1.0}
    # Group 0: components vary but cancel in the sum.
    assert groups_with_signal({"a": a, "b": b}, weights, "sum_then_normalize").tolist() == [False, False]
    assert groups_with_signal({"a": a, "b": b}, weights, "normalize_then_sum").tolist() == [True, False]
