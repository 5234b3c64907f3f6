r"""Size-checked sympy constructors: the places where one short answer could demand an enormous value.

`10^{10^{10}}`, `(10^{100})!`, `\binom{10^9}{5}` and a 4,000-digit literal are each a few characters,
and sympy would evaluate them exactly for hours. Each builder here compares the operands against Limits
*before* calling sympy and raises AnswerTooLarge instead. `as_expr` is the other check every arithmetic
step makes: lists, sets, intervals and relations cannot be added or multiplied, and zoo/nan (a division
by zero) is not a value.
"""

from __future__ import annotations

import sympy

from grpo_reward.answers import Answer
from grpo_reward.limits import AnswerTooLarge, Limits, ParseFailure


def as_expr(value: Answer) -> sympy.Expr:
    """value as a sympy expression, or ParseFailure when it is a list, set, relation or text."""
    if isinstance(value, sympy.Expr):
        if value.has(sympy.zoo, sympy.nan):
            raise ParseFailure("undefined value (division by zero)")
        return value
    if isinstance(value, sympy.MatrixBase):
        return value  # type: ignore[return-value]
    raise ParseFailure("a list, set, interval or relation used inside arithmetic")


def number_literal(text: str, limits: Limits) -> sympy.Expr:
    """A decimal or scientific literal (`12.5`, `3e-4`) as an exact Rational; digits and exponent capped."""
    mantissa, _, exponent = text.lower().partition("e")
    digits = len(mantissa.replace(".", ""))
    if digits > limits.max_literal_digits:
        raise AnswerTooLarge(f"a number with {digits} digits (limit {limits.max_literal_digits})")
    value = sympy.Rational(mantissa.rstrip(".") or "0")
    if exponent:
        power = int(exponent)
        if abs(power) > limits.max_sci_exponent:
            raise AnswerTooLarge(f"scientific exponent {power} out of range")
        value = value * sympy.Integer(10) ** power
    return value


def guarded_pow(base: sympy.Expr, exponent: sympy.Expr, limits: Limits) -> sympy.Expr:
    """base**exponent, refusing exact results too large to compute or hold.

    An exact rational power has about |exponent| * bits(base) bits, so that product is capped by
    max_integer_bits; other numeric and symbolic exponents are capped by max_symbolic_exponent.
    """
    if exponent.is_Rational and not base.free_symbols:
        magnitude = abs(exponent)
        if base.is_Rational:
            bits = max(abs(base.p).bit_length(), base.q.bit_length())
            if bits > 1 and magnitude * bits > limits.max_integer_bits:
                raise AnswerTooLarge("a power whose exact value would exceed the size limit")
        elif magnitude > limits.max_symbolic_exponent and base not in (sympy.pi, sympy.E):
            raise AnswerTooLarge("a power with an exponent beyond the size limit")
    elif exponent.is_Rational and abs(exponent) > limits.max_symbolic_exponent:
        raise AnswerTooLarge("a symbolic power with an exponent beyond the size limit")
    elif exponent.is_number and not exponent.is_Rational and not base.free_symbols:
        approx = exponent.evalf(15)
        if approx.is_real and abs(approx) > limits.max_symbolic_exponent:
            raise AnswerTooLarge("a power with an exponent beyond the size limit")
    return sympy.Pow(base, exponent)


def guarded_factorial(value: sympy.Expr, limits: Limits) -> sympy.Expr:
    """value!, refusing non-integers, negatives and arguments above max_factorial."""
    if value.is_number and not value.free_symbols:
        if not value.is_Integer:
            raise ParseFailure("factorial of a non-integer")
        if value > limits.max_factorial:
            raise AnswerTooLarge(f"factorial of a number above {limits.max_factorial}")
        if value < 0:
            raise ParseFailure("factorial of a negative number")
    return sympy.factorial(value)


def guarded_binomial(top: sympy.Expr, bottom: sympy.Expr, limits: Limits) -> sympy.Expr:
    """binomial(top, bottom), refusing integer n or k above max_binomial."""
    if top.is_Integer and abs(top) > limits.max_binomial:
        raise AnswerTooLarge(f"binomial coefficient with n above {limits.max_binomial}")
    if bottom.is_Integer and abs(bottom) > limits.max_binomial:
        raise AnswerTooLarge(f"binomial coefficient with k above {limits.max_binomial}")
    return sympy.binomial(top, bottom)
