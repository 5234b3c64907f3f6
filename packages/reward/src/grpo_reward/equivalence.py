"""Decide whether a predicted answer equals the reference answer, and say why.

Exactness first: rationals compare exactly, so `1/2004!` and `1/2006!`, `10^{-7}` and `2\\cdot10^{-7}`,
`14917` and `14916` all differ. Irrational numbers compare by 60-digit evaluation with a relative gap of
1e-40: far tighter than any real answer's distance from a wrong one and far looser than evaluation error.
A rounded decimal reference (`3.14`) asks for the decimal, so an exact irrational that rounds to it
(`\\pi`) is refused with a reason that says so, as Math-Verify and strict graders do.
Expressions with variables compare by exact expansion, then by evaluation at fixed sample points.
The reference's shape decides how containers compare: a reference interval makes `(1, 2)` an interval and
accepts `1 < x < 2`; a reference point makes it an ordered pair; a reference set or list is unordered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy
from sympy.solvers.inequalities import solve_univariate_inequality

from grpo_reward.answers import Answer, AnswerList, Bracketed, Chain, SetOf, Text, UnionOf

_DIGITS = 60
_RELATIVE_GAP = sympy.Float("1e-40", _DIGITS)
_SAMPLE_GAP = sympy.Float("1e-18", 30)
_SAMPLES = (
    sympy.Rational(7, 11),
    sympy.Rational(13, 7),
    sympy.Rational(-5, 3),
    sympy.Rational(17, 5),
    sympy.Rational(2, 13),
    sympy.Rational(-23, 9),
)


@dataclass(frozen=True)
class Comparison:
    """The outcome of one comparison and its reason in words."""

    equal: bool
    reason: str


@dataclass(frozen=True)
class Context:
    """What the comparison knows about the reference: how many decimals it was written with, if a decimal."""

    reference_decimals: int | None = None


def _yes(reason: str) -> Comparison:
    return Comparison(True, reason)


def _no(reason: str) -> Comparison:
    return Comparison(False, reason)


# -- numbers and expressions -----------------------------------------------------------------------
def _numeric(value: sympy.Expr, digits: int = _DIGITS) -> tuple[sympy.Float, sympy.Float] | None:
    """(real, imaginary) parts evaluated to `digits`, or None when the value is not a finite number."""
    evaluated = value.evalf(digits)
    if evaluated.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return None
    real, imaginary = evaluated.as_real_imag()
    if not (real.is_Number and imaginary.is_Number):
        return None
    return sympy.Float(real, digits), sympy.Float(imaginary, digits)


def _numbers_equal(reference: sympy.Expr, prediction: sympy.Expr, context: Context) -> Comparison:
    if reference.is_Rational and prediction.is_Rational:
        return _no("different numbers")
    if reference.has(sympy.oo, -sympy.oo) or prediction.has(sympy.oo, -sympy.oo):
        return _no("different numbers")
    left, right = _numeric(reference), _numeric(prediction)
    if left is None or right is None:
        return _symbolic_equal(reference, prediction)
    gap = abs(left[0] - right[0]) + abs(left[1] - right[1])
    scale = max(abs(left[0]) + abs(left[1]), abs(right[0]) + abs(right[1]))
    if scale == 0:
        return _yes("both zero")
    if reference.is_zero or prediction.is_zero:
        other = prediction if reference.is_zero else reference
        if sympy.simplify(other) == 0:
            return _yes("equal after simplification")
        return _no("different numbers")
    if gap <= scale * _RELATIVE_GAP:
        return _yes("equal to 40 significant digits")
    decimals = context.reference_decimals
    if (
        decimals is not None
        and not prediction.is_Rational
        and gap <= sympy.Rational(1, 2) * sympy.Integer(10) ** -decimals
    ):  # the reference's rounding says a decimal was asked for (Math-Verify and strict graders agree)
        return _no(f"exact value given where a decimal rounded to {decimals} places was expected")
    return _no("different numbers")


def _has_large_power(value: sympy.Expr, limit: int = 40) -> bool:
    return any(power.exp.is_Integer and abs(power.exp) > limit for power in value.atoms(sympy.Pow))


def _symbolic_equal(reference: sympy.Expr, prediction: sympy.Expr) -> Comparison:
    difference = reference - prediction
    if difference == 0:
        return _yes("equal after combining terms")
    if not _has_large_power(difference) and sympy.expand(difference) == 0:
        return _yes("equal after expansion")
    symbols = sorted(difference.free_symbols, key=lambda symbol: symbol.name)
    agreeing = 0
    for offset in range(3):
        point = {
            symbol: _SAMPLES[(offset + 2 * index) % len(_SAMPLES)] for index, symbol in enumerate(symbols)
        }
        left = _numeric(reference.subs(point), 30) if symbols else _numeric(reference, 30)
        right = _numeric(prediction.subs(point), 30) if symbols else _numeric(prediction, 30)
        if left is None or right is None:
            continue
        gap = abs(left[0] - right[0]) + abs(left[1] - right[1])
        scale = max(abs(left[0]) + abs(left[1]), abs(right[0]) + abs(right[1]), sympy.Float(1e-30, 30))
        if gap > scale * _SAMPLE_GAP:
            return _no("different values at a sample point")
        agreeing += 1
    if agreeing >= 2:
        return _yes(f"equal at {agreeing} sample points")
    if sympy.simplify(difference) == 0:
        return _yes("equal after simplification")
    return _no("not shown equal")


def expressions_equal(reference: sympy.Expr, prediction: sympy.Expr, context: Context) -> Comparison:
    """Equality of two expressions (numbers, expressions, matrices)."""
    if reference == prediction:
        return _yes("identical")
    if isinstance(reference, sympy.MatrixBase) or isinstance(prediction, sympy.MatrixBase):
        if not (isinstance(reference, sympy.MatrixBase) and isinstance(prediction, sympy.MatrixBase)):
            return _no("a matrix compared with a non-matrix")
        if reference.shape != prediction.shape:
            return _no(f"matrix shape {prediction.shape} differs from {reference.shape}")
        return _sequences_equal(list(reference), list(prediction), context, "matrix entries")
    if not reference.free_symbols and not prediction.free_symbols:
        return _numbers_equal(reference, prediction, context)
    return _symbolic_equal(reference, prediction)


# -- relations -------------------------------------------------------------------------------------
def _oriented(relation: sympy.Rel) -> tuple[sympy.Expr, bool] | None:
    """Inequality as (g, strict) meaning g > 0 or g >= 0; None for = and !=."""
    if isinstance(relation, sympy.StrictGreaterThan | sympy.GreaterThan):
        return relation.lhs - relation.rhs, isinstance(relation, sympy.StrictGreaterThan)
    if isinstance(relation, sympy.StrictLessThan | sympy.LessThan):
        return relation.rhs - relation.lhs, isinstance(relation, sympy.StrictLessThan)
    return None


def _constant_ratio(first: sympy.Expr, second: sympy.Expr) -> sympy.Expr | None:
    """first/second when it is a nonzero constant, else None."""
    if second == 0:
        return None
    ratio = sympy.cancel(first / second) if not _has_large_power(first - second) else first / second
    if ratio.free_symbols or ratio == 0:
        return None
    return ratio


def _one_unknown(first: sympy.Expr, second: sympy.Expr) -> bool:
    """`x` and `x_1`, `x_{2}` and `x`: one unknown, its solutions numbered or not (never `x` and `y`)."""
    return (
        isinstance(first, sympy.Symbol)
        and isinstance(second, sympy.Symbol)
        and first.name.split("_")[0] == second.name.split("_")[0]
    )


def _equations_equal(reference: sympy.Eq, prediction: sympy.Eq, context: Context) -> Comparison:
    if _one_unknown(reference.lhs, prediction.lhs) and not (
        reference.rhs.free_symbols or prediction.rhs.free_symbols
    ):
        return expressions_equal(reference.rhs, prediction.rhs, context)  # `x_1 = 2` and `x = 2`
    for left, right in ((prediction.lhs, prediction.rhs), (prediction.rhs, prediction.lhs)):
        if (
            expressions_equal(reference.lhs, left, context).equal
            and expressions_equal(reference.rhs, right, context).equal
        ):
            return _yes("equal equations")
    ratio = _constant_ratio(reference.lhs - reference.rhs, prediction.lhs - prediction.rhs)
    if ratio is not None:
        return _yes("equivalent equations (sides differ by a constant factor)")
    return _no("different equations")


def _relations_equal(reference: sympy.Rel, prediction: sympy.Rel, context: Context) -> Comparison:
    if isinstance(reference, sympy.Eq) and isinstance(prediction, sympy.Eq):
        return _equations_equal(reference, prediction, context)
    first, second = _oriented(reference), _oriented(prediction)
    if first is None or second is None:
        if type(reference) is type(prediction):
            return _equations_equal(
                sympy.Eq(reference.lhs, reference.rhs, evaluate=False),
                sympy.Eq(prediction.lhs, prediction.rhs, evaluate=False),
                context,
            )
        return _no("different kinds of relation")
    if first[1] != second[1]:
        return _no("strict and non-strict inequality differ")
    ratio = _constant_ratio(first[0], second[0])
    if ratio is not None and ratio.is_positive:
        return _yes("equivalent inequalities")
    return _sets_equal(reference, prediction)


# -- sets and intervals ----------------------------------------------------------------------------
def _is_interval(answer: Answer) -> bool:
    if not isinstance(answer, Bracketed) or len(answer.items) != 2:
        return False
    if answer.opening + answer.closing in ("(]", "[)"):
        return True
    return any(isinstance(item, sympy.Expr) and item.has(sympy.oo, -sympy.oo) for item in answer.items)


def _is_set_like(answer: Answer) -> bool:
    if isinstance(answer, UnionOf | Chain):
        return True
    if isinstance(answer, sympy.Rel) and not isinstance(answer, sympy.Eq | sympy.Ne):
        return True
    return _is_interval(answer)


def _to_set(answer: Answer) -> sympy.Set:
    if isinstance(answer, Bracketed) and len(answer.items) == 2:
        low, high = answer.items
        if not (isinstance(low, sympy.Expr) and isinstance(high, sympy.Expr)):
            raise ValueError("interval endpoints must be numbers")
        return sympy.Interval(low, high, left_open=answer.opening == "(", right_open=answer.closing == ")")
    if isinstance(answer, SetOf):
        return sympy.FiniteSet(*[item for item in answer.items if isinstance(item, sympy.Expr)])
    if isinstance(answer, UnionOf):
        return sympy.Union(*[_to_set(part) for part in answer.parts])
    if isinstance(answer, Chain):
        return sympy.Intersection(*[_to_set(relation) for relation in answer.relations])
    if isinstance(answer, sympy.Rel):
        answer = _on_one_name(answer)
        symbols = answer.free_symbols
        if len(symbols) != 1:
            raise ValueError("an inequality in more than one variable")
        (symbol,) = symbols
        real = sympy.Symbol(symbol.name, real=True)
        return solve_univariate_inequality(answer.subs(symbol, real), real, relational=False)
    if isinstance(answer, sympy.Expr) and not answer.free_symbols:
        return sympy.FiniteSet(answer)
    raise ValueError("not a set")


def _on_one_name(relation: sympy.Rel) -> sympy.Rel:
    """`f(x) \\geq 2` as `t \\geq 2`: a relation between a label (`_is_label`: `f(x)`, `AB`) and a number is
    a condition on the labelled value, so its set is an interval of values, as `y \\geq 2` would be."""
    if len(relation.free_symbols) < 2:
        return relation
    for side, other in ((relation.lhs, relation.rhs), (relation.rhs, relation.lhs)):
        if not other.free_symbols and _is_label(side):
            return relation.subs(side, sympy.Symbol("value_of_label"))
    return relation


def _sets_equal(reference: Answer, prediction: Answer) -> Comparison:
    try:
        first, second = _to_set(reference), _to_set(prediction)
    except (ValueError, TypeError, NotImplementedError):
        return _no("different sets or intervals")
    if first == second or sympy.SymmetricDifference(first, second).simplify() == sympy.S.EmptySet:
        return _yes("equal sets")
    difference = sympy.Union(sympy.Complement(first, second), sympy.Complement(second, first))
    if difference == sympy.S.EmptySet:
        return _yes("equal sets")
    return _no("different sets or intervals")


# -- containers ------------------------------------------------------------------------------------
def _sequences_equal(
    reference: Sequence[Answer], prediction: Sequence[Answer], context: Context, what: str
) -> Comparison:
    if len(reference) != len(prediction):
        return _no(f"{len(prediction)} {what} where the reference has {len(reference)}")
    for index, (left, right) in enumerate(zip(reference, prediction, strict=True)):
        if not compare(left, right, context).equal:
            return _no(f"{what} differ at position {index + 1}")
    return _yes(f"equal {what}")


def _unordered_equal(
    reference: Sequence[Answer], prediction: Sequence[Answer], context: Context
) -> Comparison:
    if len(reference) != len(prediction):
        return _no(f"{len(prediction)} answers where the reference has {len(reference)}")
    unused = list(prediction)
    for item in reference:
        for index, candidate in enumerate(unused):
            if compare(item, candidate, context).equal:
                del unused[index]
                break
        else:
            return _no("an answer of the reference is missing")
    return _yes("equal as unordered collections")


def _items(answer: Answer) -> tuple[Answer, ...]:
    if isinstance(answer, AnswerList | SetOf):
        return answer.items
    if isinstance(answer, Bracketed):
        return answer.items
    return (answer,)


def _flatten_vector(answer: Answer) -> tuple[Answer, ...] | None:
    if isinstance(answer, sympy.MatrixBase) and 1 in answer.shape:
        return tuple(answer)
    if isinstance(answer, Bracketed):
        return answer.items
    return None


def _is_label(name: sympy.Expr) -> bool:
    """A name written with symbols only: `x`, `AB`, `|AB|`, `f(x)`, `\\frac{NO}{BO}`, `S_1/S_2`.

    No number other than the -1s sympy writes for a quotient or a difference: `x + 1 = 5` or `2x = 4`
    state an equation, not a name for 5 or 4.
    """
    if isinstance(name, sympy.Symbol):
        return True
    if isinstance(name, sympy.Pow):
        return name.exp == -1 and _is_label(name.base)
    if isinstance(name, sympy.Mul):
        return all(_is_label(factor) or factor == -1 for factor in name.args)
    if isinstance(name, sympy.Add | sympy.Abs | sympy.Function):
        return all(_is_label(part) for part in name.args)
    return False


def _labelled_value(equation: sympy.Eq, other: sympy.Expr) -> sympy.Expr | None:
    """The value `name = value` gives, when one side only names it, so it compares with `other` alone.

    A side names the value when it is a symbol (`x = 5`, and not `x = y`), or a label (`_is_label`) that
    is not written in `other`'s symbols alone: `f(x) = x^2 + 1` names `x^2 + 1` (f is not in it), while
    `x = x^2` names nothing.
    """
    for name, value in ((equation.lhs, equation.rhs), (equation.rhs, equation.lhs)):
        if isinstance(name, sympy.Symbol) and not isinstance(value, sympy.Symbol):
            return value
        if _is_label(name) and not name.free_symbols <= other.free_symbols and not _is_label(value):
            return value
    return None


def _chains_equal(reference: Answer, prediction: Answer, context: Context) -> bool:
    if not (isinstance(reference, Chain) and isinstance(prediction, Chain)):
        return False
    if len(reference.relations) != len(prediction.relations):
        return False
    pairs = zip(reference.relations, prediction.relations, strict=True)
    return all(_relations_equal(first, second, context).equal for first, second in pairs)


def compare(reference: Answer, prediction: Answer, context: Context) -> Comparison:
    """Whether prediction is equivalent to reference; the reference's shape decides how to compare."""
    if isinstance(reference, Text) or isinstance(prediction, Text):
        return _no("different answers")
    if isinstance(reference, AnswerList | SetOf):
        if isinstance(prediction, AnswerList | SetOf) or (
            isinstance(prediction, Bracketed)
            and isinstance(reference, AnswerList)
            and not _is_interval(prediction)
        ):
            return _unordered_equal(reference.items, _items(prediction), context)
        if len(reference.items) == 1:
            return compare(reference.items[0], prediction, context)
        if isinstance(reference, SetOf) and _is_set_like(prediction):
            return _sets_equal(reference, prediction)
        return _no("a single answer where the reference has several")
    if _is_set_like(reference) or (_is_set_like(prediction) and isinstance(reference, SetOf)):
        if _chains_equal(reference, prediction, context):
            return _yes("equal inequalities")
        if isinstance(reference, sympy.Rel) and isinstance(prediction, sympy.Rel):
            return _relations_equal(reference, prediction, context)
        if isinstance(reference, Bracketed) and isinstance(prediction, Bracketed):
            if (reference.opening, reference.closing) != (prediction.opening, prediction.closing):
                return _no("interval ends differ (open vs closed)")
            return _sequences_equal(reference.items, prediction.items, context, "interval ends")
        return _sets_equal(reference, prediction)
    if isinstance(reference, Bracketed):
        if len(reference.items) == 2 and _is_set_like(prediction):
            return _sets_equal(reference, prediction)  # `[-2, 5]` against `-2 \le x \le 5`
        if isinstance(prediction, Bracketed):
            if (reference.opening, reference.closing) != (prediction.opening, prediction.closing):
                return _no("different brackets")
            return _sequences_equal(reference.items, prediction.items, context, "tuple entries")
        vector = _flatten_vector(prediction)
        if vector is not None:
            return _sequences_equal(reference.items, vector, context, "vector entries")
        if isinstance(prediction, AnswerList):
            return _sequences_equal(reference.items, prediction.items, context, "tuple entries")
        return _no("not a tuple")
    if isinstance(prediction, AnswerList):  # several answers (boxes) against one: each must be it
        for item in prediction.items:
            if not compare(reference, item, context).equal:
                return _no("several answers where the reference has one, and not all equal it")
        return _yes("every answer equals the reference")
    if isinstance(reference, sympy.MatrixBase) and isinstance(prediction, Bracketed):
        vector = _flatten_vector(reference)
        if vector is None:
            return _no("a tuple where the reference is a matrix")
        return _sequences_equal(vector, prediction.items, context, "vector entries")
    if isinstance(reference, sympy.Rel):
        if isinstance(prediction, sympy.Rel):
            return _relations_equal(reference, prediction, context)
        if isinstance(reference, sympy.Eq) and isinstance(prediction, sympy.Expr):
            value = _labelled_value(reference, prediction)
            if value is not None:
                return expressions_equal(value, prediction, context)
        return _no("an expression where the reference is an equation")
    if isinstance(prediction, sympy.Eq) and isinstance(reference, sympy.Expr):
        value = _labelled_value(prediction, reference)
        if value is not None:
            return expressions_equal(reference, value, context)
        return _no("an equation where the reference is an expression")
    if isinstance(reference, sympy.Expr | sympy.MatrixBase) and isinstance(
        prediction, sympy.Expr | sympy.MatrixBase
    ):
        return expressions_equal(reference, prediction, context)
    if isinstance(prediction, AnswerList | SetOf) and len(prediction.items) == 1:
        return compare(reference, prediction.items[0], context)
    return _no("answers of different kinds")
