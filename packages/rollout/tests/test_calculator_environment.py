"""The calculator environment: exact arithmetic, hostile expressions refused cheaply, the tags syntax."""

from __future__ import annotations

from fractions import Fraction

import pytest
from grpo_rollout.environments import ENVIRONMENTS, EpisodeStart, ModelTurn
from grpo_rollout.environments.arithmetic import ArithmeticLimits, ExpressionError, evaluate, format_number
from grpo_rollout.environments.calculator import CalculatorEnvironment

LIMITS = ArithmeticLimits()
START = EpisodeStart("p0", "What is 1234*5678?", (1, 2, 3), "7006652", {}, 0)


def turn(text: str, index: int = 0) -> ModelTurn:
    stop = "</calc>" if text.endswith("</calc>") else None
    return ModelTurn(token_ids=tuple(range(len(text))), text=text, index=index, stop_string=stop)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1234*5678", 7006652),
        ("12345678 * 87654321", 12345678 * 87654321),
        ("(3+4)*2 - 5", 9),
        ("-(2+3)", -5),
        ("-2**2", -4),
        ("2**-2", Fraction(1, 4)),
        ("1/3 + 1/6", Fraction(1, 2)),
        ("6/3", 2),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("0.1 + 0.2", Fraction(3, 10)),
        ("2**3**2", 512),
        ("  ((((1))))  ", 1),
    ],
)
def test_arithmetic_is_exact(expression: str, value: int | Fraction) -> None:
    result = evaluate(expression, LIMITS)
    assert result == value and type(result) is type(value)


def test_results_are_integers_plain_and_other_values_reduced_fractions() -> None:
    assert format_number(evaluate("1234*5678", LIMITS)) == "7006652"
    assert format_number(evaluate("-7/2", LIMITS)) == "-7/2"
    assert format_number(evaluate("4/6", LIMITS)) == "2/3"
    assert format_number(evaluate("1.5*2", LIMITS)) == "3"


HOSTILE = {
    "9**9**9": "exponent",
    "2**100000": "exponent",
    "2**5000": "digits",
    "(10**999)*(10**999)": "digits",
    "(2**1000)**(2**1000)": "exponent",
    "2**0.5": "not an integer",
    "1/0": "division by zero",
    "0**-1": "division by zero",
    "(" * 400 + "1" + ")" * 400: "nested",
    "-" * 900 + "1": "nested",
    "1+" * 450 + "1": "nested",
    "1" * 1_000_000: "characters",
    "__import__('os').system('true')": "function call",
    "x + 1": "a name",
    "(1).real": "an attribute",
    "'a' * 10": "not a number",
    "1 if 1 else 2": "not arithmetic",
    "[1, 2]": "not arithmetic",
    "lambda: 1": "not arithmetic",
    "1 < 2": "not arithmetic",
    "2 ^ 3": r"write powers as \*\*",
    "1e999": "too large",
    "1j": "not a number",
    "": "empty",
    "1 +": "not an arithmetic expression",
}


@pytest.mark.parametrize("expression", list(HOSTILE), ids=lambda e: e[:24])
def test_hostile_expressions_are_refused_before_computing_with_a_reason(expression: str) -> None:
    # the limits refuse each before it is computed; computing 9**9**9 would not end (pytest's timeout)
    with pytest.raises(ExpressionError, match=HOSTILE[expression]):
        evaluate(expression, LIMITS)


def test_limits_come_from_the_config() -> None:
    strict = ArithmeticLimits(max_exponent=3, max_digits=5, max_expression_chars=10, max_depth=4)
    assert evaluate("2**3", strict) == 8
    with pytest.raises(ExpressionError, match="exponent 4 exceeds the limit of 3"):
        evaluate("2**4", strict)
    with pytest.raises(ExpressionError, match="more than 5 digits"):
        evaluate("999*999", strict)
    with pytest.raises(ExpressionError, match="11 characters"):
        evaluate("1+1+1+1+1+1", strict)
    with pytest.raises(ExpressionError, match="nested deeper than 4"):
        evaluate("1+1+1+1+1", strict)


def test_a_call_is_answered_with_its_result_in_tags() -> None:
    environment = ENVIRONMENTS.get_item("calculator", import_references=False)({})
    assert isinstance(environment, CalculatorEnvironment)
    assert environment.stop_strings == ("</calc>",) and environment.tools == ()
    state = environment.reset(START)
    result = environment.step(state, turn("Let me compute. <calc>1234*5678</calc>"))
    assert result.observation == "<result>7006652</result>"
    assert (result.done, result.tool_calls, result.tool_errors) == (False, 1, 0)


def test_a_bad_expression_is_a_tool_error_the_model_reads() -> None:
    environment = CalculatorEnvironment({})
    result = environment.step(environment.reset(START), turn("<calc>__import__('os')</calc>"))
    assert result.observation.startswith("<result>error: a function call is not arithmetic")
    assert result.observation.endswith("</result>")
    assert (result.done, result.tool_calls, result.tool_errors) == (False, 1, 1)


def test_only_the_last_call_of_a_turn_runs() -> None:
    environment = CalculatorEnvironment({})
    result = environment.step(environment.reset(START), turn("<calc>1+1</calc> no, <calc>2*3</calc>"))
    assert result.observation == "<result>6</result>"


def test_a_closing_tag_without_an_opening_one_is_a_tool_error() -> None:
    environment = CalculatorEnvironment({})
    result = environment.step(environment.reset(START), turn("12*3</calc>"))
    assert result.observation == "<result>error: </calc> without <calc></result>"
    assert result.tool_errors == 1 and not result.done


def test_a_turn_without_a_call_ends_the_episode() -> None:
    environment = CalculatorEnvironment({})
    for text in ("The answer is 7006652.", "<calc>1+2", ""):
        result = environment.step(environment.reset(START), turn(text, index=1))
        assert result.done and result.observation == "" and result.tool_calls == 0


def test_the_config_sets_limits_and_rejects_unknown_keys() -> None:
    environment = CalculatorEnvironment({"max_exponent": 2})
    result = environment.step(environment.reset(START), turn("<calc>2**3</calc>"))
    assert result.observation == "<result>error: exponent 3 exceeds the limit of 2</result>"
    with pytest.raises(ValueError, match="max_exponnent"):
        CalculatorEnvironment({"max_exponnent": 2})
    with pytest.raises(ValueError, match="format"):
        CalculatorEnvironment({"format": "xml"})


def test_the_calculator_is_found_by_name_without_importing_references() -> None:
    assert "calculator" in ENVIRONMENTS
    assert ENVIRONMENTS.get_item("calculator", import_references=False) is CalculatorEnvironment
