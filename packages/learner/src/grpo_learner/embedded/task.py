"""A synthetic arithmetic task with answers the real verifier must judge.

Problems are `a+b`, `a-b`, `a*b` and `a/b`. Division answers are fractions; the reference is the
reduced LaTeX fraction (`\\frac{3}{4}`) while the warm-up data writes a terminating one as a decimal
half of the time (`0.75`), so the reward depends on the verifier's equivalence rules, not on
string matching. The split into training and held-out problems is a pure function of the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str  # what the model sees, e.g. "37+45="
    reference: str  # ground truth for the verifier, e.g. "82" or "\\frac{3}{4}"
    value: Fraction
    task: str = ""  # the reward task grading it ("" = math)


def latex_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def decimal_form(value: Fraction) -> str | None:
    """`0.75` for 3/4; None when the decimal does not terminate."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return None
    scaled, places = value, 0
    while scaled.denominator != 1:
        scaled *= 10
        places += 1
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return ("-" if value < 0 else "") + text


def all_problems(add_max: int = 19, mul_max: int = 9) -> list[Problem]:
    """Every problem of the task, in a fixed order."""
    problems = []
    for a in range(add_max + 1):
        for b in range(add_max + 1):
            problems.append(_make(f"{a}+{b}", Fraction(a + b)))
            problems.append(_make(f"{a}-{b}", Fraction(a - b)))
    for a in range(mul_max + 1):
        for b in range(mul_max + 1):
            problems.append(_make(f"{a}*{b}", Fraction(a * b)))
            if a >= 1 and b >= 2:
                problems.append(_make(f"{a}/{b}", Fraction(a, b)))
    return problems


def _make(expression: str, value: Fraction) -> Problem:
    return Problem(id=expression, prompt=f"{expression}=", reference=latex_fraction(value), value=value)


def split_problems(seed: int, heldout: int = 200) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out): a seeded shuffle, the last `heldout` problems held out."""
    problems = all_problems()
    random.Random(seed).shuffle(problems)
    return problems[:-heldout], problems[-heldout:]


def solution_text(problem: Problem, rng: random.Random) -> str:
    """A correct completion for the warm-up, in one of the answer forms the verifier accepts."""
    answer = problem.reference
    decimal = decimal_form(problem.value)
    if decimal is not None and problem.value.denominator != 1 and rng.random() < 0.5:
        answer = decimal
    return f"\\boxed{{{answer}}}"
