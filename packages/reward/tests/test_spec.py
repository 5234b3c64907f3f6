"""RewardSpec: weights, the format component and DAPO's overlong penalty, against hand-computed numbers."""

from __future__ import annotations

import pytest
from grpo_reward.spec import RewardSpec, apply_spec, overlong_penalty
from grpo_reward.verdict import Verdict, timed_out
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


def test_components_weigh_terms_and_task_rewards_and_report_task_sub_scores() -> None:
    spec = RewardSpec(
        components=[
            {"name": "correctness"},
            {"name": "length", "weight": 0.5, "max_completion_tokens": 1000, "overlong_buffer_tokens": 200},
            {"name": "exact", "weight": 2.0},
        ]
    )
    assert spec.task_terms == ("exact",)
    verdict = Verdict(True, 0.75, "x", "graded", {"correctness": 1.0, "format": 1.0, "tests_passed": 0.75})
    terms = {"exact": Verdict(False, 0.0, "x", "different text")}
    scored = apply_spec(verdict, spec, completion_tokens=900, terms=terms)
    assert scored.components == {"tests_passed": 0.75, "correctness": 0.75, "length": -0.5, "exact": 0.0}
    assert scored.reward == pytest.approx(0.75 - 0.25)


def test_a_timed_out_item_or_term_has_reward_0_and_is_flagged() -> None:
    spec = RewardSpec(components=[{"name": "correctness"}, {"name": "exact"}])
    done = Verdict(True, 1.0, "4", "equal", {"correctness": 1.0})
    late = apply_spec(done, spec, terms={"exact": timed_out("timeout after 1 s CPU")})
    assert (late.timed_out, late.reward, late.components) == (True, 0.0, {})
    assert "component 'exact'" in late.reason
    own = apply_spec(timed_out("worker died"), spec, terms={"exact": done})
    assert (own.timed_out, own.reward) == (True, 0.0)


def test_weights_whose_sum_overflows_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="format_weight: the weights' sum cannot be represented"):
        RewardSpec(correctness_weight=1e308, format_weight=1e308)
    with pytest.raises(ValidationError, match="components\\[1\\]"):
        RewardSpec(components=[{"name": "correctness", "weight": 1e308}, {"name": "exact", "weight": -1e308}])
    assert RewardSpec(correctness_weight=1e307, format_weight=1e307).components[1].weight == 1e307


def test_unknown_and_repeated_components_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown reward task 'os:system'"):
        RewardSpec(components=[{"name": "os:system"}])
    with pytest.raises(ValidationError, match="appears twice"):
        RewardSpec(components=[{"name": "format"}, {"name": "format"}])


def test_a_task_reward_that_overflows_its_weight_costs_only_the_item() -> None:
    spec = RewardSpec(components=[{"name": "correctness", "weight": 1e300}])
    scored = apply_spec(Verdict(True, 1e300, None, "huge", {}), spec)
    assert (scored.reward, scored.reason) == (0.0, "the weighted reward overflowed")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_completion_tokens": -1}, "max_completion_tokens: must be >= 0"),
        ({"length_weight": 1.0, "max_completion_tokens": -1}, "max_completion_tokens: must be >= 0"),
        ({"overlong_buffer_tokens": -3, "max_completion_tokens": 10}, "overlong_buffer_tokens: must be >= 0"),
        (
            {"max_completion_tokens": 100, "overlong_buffer_tokens": 200},
            "overlong_buffer_tokens: 200 exceeds",
        ),
        (
            {
                "components": [
                    {"name": "correctness", "max_completion_tokens": 5, "overlong_buffer_tokens": 9}
                ]
            },
            "overlong_buffer_tokens: 9 exceeds",
        ),
    ],
)
def test_a_token_budget_that_makes_no_sense_is_refused_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RewardSpec(**values)


def test_the_built_in_terms_registered_are_those_grpo_common_names() -> None:
    """The learner validates its [reward] section against grpo_common's names; the reward service
    computes what TERMS holds: the two must be the same set."""
    from grpo_common.reward_terms import BUILT_IN_TERMS, V1_WEIGHT_FIELDS
    from grpo_reward.terms import TERMS

    assert sorted(TERMS) == sorted(BUILT_IN_TERMS) == sorted(V1_WEIGHT_FIELDS)
