r"""Answers that give a value and its rounding: `x = \frac13 \approx 0.333`.

The exact part is the answer. The rounded part counts only where the reference itself is a rounded
decimal and the exact part does not equal it, and only when it is an honest rounding of the exact part:
|exact - rounded| <= 10^-d / 2 for the d decimals written. So `\frac13 \approx 0.333` is right against
`\frac13` and against `0.333`, while `7 \approx 0.333` is right against neither.
"""

from __future__ import annotations

import re

import sympy

from grpo_reward.answers import Answer
from grpo_reward.limits import AnswerTooLarge, Limits, ParseFailure
from grpo_reward.parsing import parse_answer

APPROX = re.compile(r"\\approx(?![a-zA-Z])")
_ROUNDED = re.compile(r"^-?\d*\.(\d+)$|^-?\d+$")


def split_approximation(normalized: str) -> tuple[str, str] | None:
    """(exact part, rounded part) of `A \\approx B` (either may be ""), or None without `\\approx`."""
    marks = list(APPROX.finditer(normalized))
    if not marks:
        return None
    return normalized[: marks[0].start()].strip(), normalized[marks[-1].end() :].strip()


def _value(answer: Answer) -> sympy.Expr | None:
    """A number, or the right side of `x = number`; else None."""
    if isinstance(answer, sympy.Eq) and isinstance(answer.lhs, sympy.Symbol):
        answer = answer.rhs
    if isinstance(answer, sympy.Expr) and not answer.free_symbols:
        return answer
    return None


def honest_rounding(exact: str, rounded: str, limits: Limits) -> bool:
    """Whether `rounded` (a plain decimal) is `exact` rounded to the decimals it shows."""
    written = _ROUNDED.match(rounded)
    if written is None:
        return False
    try:
        value = _value(parse_answer(exact, limits))
    except (AnswerTooLarge, ParseFailure, RecursionError):
        return False
    if value is None:
        return False
    decimals = len(written.group(1) or "")
    gap = abs(value.evalf(30) - sympy.Rational(rounded))
    return bool(gap.is_number and gap <= sympy.Rational(1, 2) * sympy.Integer(10) ** -decimals)
