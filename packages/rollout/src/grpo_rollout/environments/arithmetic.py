"""Exact arithmetic over Python's `ast`, with caps so that hostile input costs nothing.

The calculator environment's evaluator: it runs no code. An expression is parsed with
`ast.parse(mode="eval")` and walked; only numbers, `+ - * / // % **`, unary `+`/`-` and parentheses are
accepted, anything else (a name, a call, an attribute, a string, a comparison) is an `ExpressionError`
naming what was found. Values are exact: `int` while they stay integral, `fractions.Fraction` otherwise
(`1/3` is 1/3, `0.1` is 1/10, never a float).

The caps (`ArithmeticLimits`) bound the work before it is done:

- `max_expression_chars`: longer input is refused before parsing (a 1 MB expression costs one `len`);
- `max_depth`: the walk descends at most this many nodes, so `-(-(-(...)))` cannot exhaust the stack;
- `max_exponent`: `a ** b` needs an integral `|b| <= max_exponent`, so `9**9**9` is refused, never tried;
- `max_digits`: a result's numerator and denominator may have at most this many decimal digits; a power
  is checked *before* it is computed (digits(a**b) >= |b| * (bits(a) - 1) * log10 2), the other operators,
  whose results have at most about the sum of their operands' digits, right after.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

Number = int | Fraction

LOG10_2 = math.log10(2)


class ArithmeticLimits(BaseModel):
    """How much one expression may ask for (the calculator's `config_json` keys of the same names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_expression_chars: int = Field(default=1000, gt=0, le=100_000)
    max_depth: int = Field(default=64, gt=0, le=500)
    max_exponent: int = Field(default=10_000, gt=0)
    max_digits: int = Field(default=1000, gt=0, le=4000)  # str(int) refuses > 4300 digits


class ExpressionError(ValueError):
    """The expression is not arithmetic this evaluator accepts, or asks for more than the limits allow."""


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: Fraction(a) / Fraction(b),
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def digits(value: int) -> int:
    """Decimal digits of |value|, from its bit length (never `str()`, which is quadratic), off by <= 1."""
    return max(1, math.ceil(abs(value).bit_length() * LOG10_2))


def evaluate(expression: str, limits: ArithmeticLimits) -> Number:
    """The exact value of `expression`; raises ExpressionError with a message a model can read."""
    if len(expression) > limits.max_expression_chars:
        raise ExpressionError(
            f"expression is {len(expression)} characters; the limit is {limits.max_expression_chars}"
        )
    if not expression.strip():
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"not an arithmetic expression ({error.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression is nested too deeply or too large to parse") from None
    return _Walk(limits).value(tree.body, 1)


class _Walk:
    def __init__(self, limits: ArithmeticLimits) -> None:
        self.limits = limits

    def value(self, node: ast.expr, depth: int) -> Number:
        if depth > self.limits.max_depth:
            raise ExpressionError(f"expression is nested deeper than {self.limits.max_depth} levels")
        if isinstance(node, ast.Constant):
            return self.checked(_number(node.value))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.value(node.operand, depth + 1))
        if isinstance(node, ast.BinOp):
            left = self.value(node.left, depth + 1)
            right = self.value(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                return self.power(left, right)
            if type(node.op) not in _BINARY:
                hint = " (write powers as **)" if isinstance(node.op, ast.BitXor) else ""
                raise ExpressionError(f"operator {_describe(node.op)} is not supported{hint}")
            try:
                return self.checked(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ExpressionError("division by zero") from None
        raise ExpressionError(f"{_describe(node)} is not arithmetic (numbers and + - * / // % ** only)")

    def power(self, base: Number, exponent: Number) -> Number:
        if isinstance(exponent, Fraction):
            if exponent.denominator != 1:
                raise ExpressionError(
                    f"exponent {exponent} is not an integer (the result would not be exact)"
                )
            exponent = exponent.numerator
        if abs(exponent) > self.limits.max_exponent:
            raise ExpressionError(f"exponent {exponent} exceeds the limit of {self.limits.max_exponent}")
        if base == 0 and exponent < 0:
            raise ExpressionError("division by zero (0 to a negative power)")
        fraction = Fraction(base)
        bits = max(abs(fraction.numerator).bit_length(), fraction.denominator.bit_length())
        # |base| >= 2**(bits - 1), so the result has at least |exponent| * (bits - 1) * log10(2) digits
        if abs(exponent) * (bits - 1) * LOG10_2 > self.limits.max_digits:
            raise ExpressionError(f"the result would have more than {self.limits.max_digits} digits")
        result = Fraction(base) ** exponent if exponent < 0 else base**exponent
        return self.checked(result)

    def checked(self, value: Number) -> Number:
        """`value` as an int when integral; refused when it has more digits than the limit."""
        if isinstance(value, Fraction):
            if max(digits(value.numerator), digits(value.denominator)) > self.limits.max_digits:
                raise ExpressionError(f"the result has more than {self.limits.max_digits} digits")
            return value.numerator if value.denominator == 1 else value
        if digits(value) > self.limits.max_digits:
            raise ExpressionError(f"the result has more than {self.limits.max_digits} digits")
        return value


def _number(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"{type(value).__name__} constant {str(value)[:40]!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExpressionError("number too large")
        return Fraction(repr(value))  # the literal's decimal value: 0.1 is 1/10, not the nearest double
    return value


def _describe(node: ast.AST) -> str:
    names = {ast.Name: "a name", ast.Call: "a function call", ast.Attribute: "an attribute"}
    return names.get(type(node), type(node).__name__)


def format_number(value: Number) -> str:
    """Integers plain (`56088`), other values as an exact reduced fraction (`-7/2`)."""
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    return str(int(value))
