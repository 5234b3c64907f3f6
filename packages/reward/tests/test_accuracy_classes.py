"""The answer classes an outside labelled set found, fixed as classes: each test holds several members.

The same members, end to end through worker processes, are lines of cases/math_cases.jsonl (categories
units, trig_degrees, choices, colon, dollars, membership, rounded_decimals); these pin the pure steps.
"""

from __future__ import annotations

import pytest
from grpo_reward.check import check
from grpo_reward.extraction import extract_answer
from grpo_reward.normalization import normalize_answer


@pytest.mark.parametrize(
    "raw",
    [
        r"5 \text{ cm}",
        r"5\text{cm}",
        r"5\,\mathrm{kg}",
        "5 kilometers",
        r"5\text{ m/s}",
        r"5 \text{ m/s}^{-2}",
        "5 km/h",
        r"5 \text{ dollars per hour}",
        r"5 \, \text{N}",
        r"5\text{ kPa}",
    ],
)
def test_units_after_a_value_are_dropped(raw: str) -> None:
    assert normalize_answer(raw) == "5"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("5N", "5N"), ("2n", "2n"), ("1/h", "1/h"), ("5 x", "5 x"), ("5 m/x", "5 m/x"), ("5 m^{x}", "5 m^{x}")],
)
def test_what_is_not_only_units_is_kept(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        (r"\boxed{\cos 30^\circ}", r"\frac{\sqrt{3}}{2}"),
        (r"\boxed{\sin(45^{\circ})}", r"\frac{\sqrt{2}}{2}"),
        ("\\boxed{\\tan 60°}", r"\sqrt{3}"),
        (r"\boxed{\sin^2 60^{\circ} + \cos 90^\circ}", r"\frac{3}{4}"),
        (r"\boxed{\sec 60 ^ {\circ}}", "2"),
    ],
)
def test_trigonometric_functions_take_degrees_as_angles(completion: str, reference: str) -> None:
    verdict = check(completion, reference)
    assert verdict.correct, verdict.reason


def test_degrees_outside_trigonometry_are_still_just_the_number() -> None:
    assert normalize_answer("30°") == normalize_answer(r"30^\circ") == "30"
    assert not check(r"\boxed{\cos 30^\circ}", r"\cos 30").correct  # radians are not degrees


@pytest.mark.parametrize(
    ("completion", "letter"),
    [
        ("Checking each, the correct option is (C)", "C"),
        ("Answer: option B", "B"),
        ("The answer is (D).", "D"),
        ("So the correct answer is option (A).", "A"),
        ("The right choice is E.", "E"),
        ("The correct option is: C", "C"),
    ],
)
def test_an_option_letter_in_prose_is_the_answer(completion: str, letter: str) -> None:
    assert extract_answer(completion).answer == letter


def test_an_option_phrase_without_a_letter_is_no_answer() -> None:
    assert extract_answer("The best choice is to substitute first.").answer is None


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("The answer is: 3", "3"),
        ("Therefore, the answer is: 12.", "12"),
        ("My answer is: **7**", "7"),
        ("the answer is : 9", "9"),
        ("The final answer is： $x^2$", "$x^2$"),
    ],
)
def test_an_answer_phrase_may_end_in_a_colon(completion: str, answer: str) -> None:
    assert extract_answer(completion).answer == answer


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        ("Final Answer: The final answer is $\\$25$. I hope it is correct.", "25"),
        ("The answer is $\\$25.00$.", "25"),
        ("The answer is $\\$1,000.50$", "1000.50"),
        (r"\boxed{\$1,000.50}", "1000.5"),
        (r"\boxed{\textdollar 25}", "25"),
    ],
)
def test_an_escaped_dollar_is_a_currency_sign_not_a_math_delimiter(completion: str, reference: str) -> None:
    verdict = check(completion, reference)
    assert verdict.correct, (verdict.extracted, verdict.reason)


@pytest.mark.parametrize(
    ("completion", "reference", "correct"),
    [
        (r"\boxed{x \in [2, 5)}", "[2, 5)", True),
        (r"\boxed{t \in (-\infty, 3]}", r"(-\infty, 3]", True),
        (r"\boxed{\{x \mid 2 \le x < 5\}}", "[2, 5)", True),
        (r"\boxed{\{x : x > 1\}}", r"(1, \infty)", True),
        (r"\boxed{x \in [2, 5)}", r"\{x \mid 2 \le x < 5\}", True),
        (r"\boxed{x \in \mathbb{R}}", r"(-\infty, \infty)", True),
        (r"\boxed{\{x \mid 2 \le x \le 5\}}", "[2, 5)", False),
    ],
)
def test_interval_membership_and_set_builder_equal_the_interval(
    completion: str, reference: str, correct: bool
) -> None:
    assert check(completion, reference).correct is correct


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        (r"\boxed{\pi}", "3.14"),
        (r"\boxed{\sqrt{2}}", "1.41"),
        (r"\boxed{2\sqrt{2}}", "2.83"),
        ("\\boxed{e}", "2.718"),
    ],
)
def test_an_exact_irrational_is_not_a_rounded_decimal(completion: str, reference: str) -> None:
    verdict = check(completion, reference)
    assert not verdict.correct
    assert verdict.reason.startswith("exact value given where a decimal rounded to")


def test_exact_values_still_match_exact_references_and_decimals_match_decimals() -> None:
    assert check(r"\boxed{\pi}", r"\pi").correct
    assert check(r"\boxed{3.14}", "3.14").correct
    assert check(r"\boxed{\frac{1}{2}}", "0.5").correct  # a rational equal to the decimal is that decimal
