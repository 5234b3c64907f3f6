"""The parser builds sympy objects from a grammar and refuses blow-ups before they start."""

from __future__ import annotations

import pytest
import sympy
from grpo_reward.answers import AnswerList, Bracketed, SetOf, Text
from grpo_reward.limits import AnswerTooLarge, ParseFailure
from grpo_reward.parsing import parse_answer, parse_math


def test_parses_latex_into_exact_sympy_values() -> None:
    x = sympy.Symbol("x")
    assert parse_answer(r"\frac{3}{4}") == sympy.Rational(3, 4)
    assert parse_answer(r"3\frac{1}{2}") == sympy.Rational(7, 2)
    assert parse_answer("0.1") == sympy.Rational(1, 10)
    assert parse_answer(r"2\sqrt{2}") == 2 * sympy.sqrt(2)
    assert parse_answer(r"(x+1)^2") == (x + 1) ** 2
    assert parse_answer(r"\frac12") == sympy.Rational(1, 2)


def test_containers_keep_their_shape() -> None:
    assert parse_answer(r"(1, 2]") == Bracketed("(", "]", (1, 2))
    assert parse_answer(r"\{1, 2\}") == SetOf((1, 2))
    assert parse_answer(r"1 \pm 2") == AnswerList((3, -1))
    assert parse_answer("Monday") == Text("Monday")


def test_never_evaluates_python() -> None:
    code = "__import__('os').system('true')"
    assert parse_answer(code) == Text(code)  # words are text, compared as text
    with pytest.raises(ParseFailure):
        parse_math(code)


@pytest.mark.parametrize(
    "answer",
    [
        r"10^{10^{10^{10}}}",
        r"(10^{100})!",
        r"9^{9^{9}}",
        r"\sqrt{2}^{10^{10}}",
        r"\sum_{k=1}^{10^{10}} k",
        r"\binom{10^{100}}{5}",
        "1e999999",
        "9" * 5000,
        "(" * 500 + "1" + ")" * 500,
    ],
)
def test_size_guards_refuse_before_computing(answer: str) -> None:
    # AnswerTooLarge is the guards' refusal; computing any of these first would not end (pytest's timeout)
    with pytest.raises(AnswerTooLarge):
        parse_answer(answer)


def test_partial_parse_is_a_failure_not_a_prefix() -> None:
    with pytest.raises(ParseFailure):
        parse_answer(r"4 \foo 2")
