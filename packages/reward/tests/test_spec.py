"""RewardSpec: weights, the format component and DAPO's overlong penalty, against hand-computed numbers."""

from __future__ import annotations

import pytest
from grpo_reward.spec import RewardSpec, apply_spec, overlong_penalty
from grpo_reward.verdict import Verdict
from pydantic import ValidationError


def test_overlong_penalty_is_zero_then_linear_then_minus_one() -> None:
    assert overlong_penalty(800, 1000, 200) == 0.0
    assert overlong_penalty(900, 1000, 200) == pytest.approx(-0.5)
    assert overlong_penalty(1000, 1000, 200) == pytest.approx(-1.0)
    assert overlong_penalty(5000, 1000, 200) == -1.0
    assert overlong_penalty(0, 1000, 200) == 0.0  # unknown length is never punished


def test_reward_is_the_weighted_sum_of_components() -> None:
    verdict = Verdict(True, 1.0, "4", "equal", {"correctness": 1.0, "format": 1.0})
    spec = RewardSpec(
        correctness_weight=1.0,
        format_weight=0.1,
        length_weight=0.5,
        max_completion_tokens=1000,
        overlong_buffer_tokens=200,
    )
    scored = apply_spec(verdict, spec, completion_tokens=900)
    assert scored.components == {"correctness": 1.0, "format": 1.0, "length": pytest.approx(-0.5)}
    assert scored.reward == pytest.approx(1.0 + 0.1 - 0.25)


def test_default_spec_is_plain_correctness() -> None:
    scored = apply_spec(Verdict(False, 0.0, None, "no final answer found", {"format": 0.0}), RewardSpec())
    assert (scored.reward, scored.components) == (0.0, {"correctness": 0.0})


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValidationError):
        RewardSpec(length_weight=1.0)
    with pytest.raises(ValidationError):
        RewardSpec(timeout_s=11)
    with pytest.raises(ValidationError):
        RewardSpec(correctness_weight=float("nan"))
