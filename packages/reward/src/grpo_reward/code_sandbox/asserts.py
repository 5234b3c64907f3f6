"""Assert tests split into what runs inside the sandbox (an expression) and what stays outside (the
expected literal and the comparison), so that the untrusted program never sees an expected value and never
decides a verdict.

A test string is one or more statements, each `assert FORM` or `assert FORM, message` (the message is
ignored), where E is any expression (evaluated in the program's namespace inside the sandbox) and L is a
Python literal (`ast.literal_eval`: numbers, strings, bytes, None, True, False, and lists, tuples, sets
and dicts of them, negative numbers included):

    assert E == L     assert E != L     assert E < L   (<=, >, >=)     assert E in L    assert E not in L
    assert L == E     ... the same with the literal on the left ...    assert L in E    assert L not in E
    assert E is None  assert E is True  assert E is False  (and `is not`)
    assert E          assert not E                                     (truthiness of E's value)
    assert math.isclose(E, L)  or  isclose(E, L)  (either order; rel_tol= and abs_tol= literals allowed)

When both sides of a comparison are literals the right one is the expected value. Anything else (two
expressions compared, `and`/`or` chains, loops, helper definitions) is refused as an invalid test, naming
the form. E's value comes back as plain data (`plain_data.py`); a value of any other type fails the test.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_COMPARISONS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda left, right: left in right),
    ast.NotIn: ("not in", lambda left, right: left not in right),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_SINGLETONS = (None, True, False)


class UnsupportedTest(ValueError):
    """An assert test outside the supported forms (see the module docstring)."""


@dataclass(frozen=True)
class Check:
    """One assert: `expression` runs inside; `relation` applied outside to its value and `expected`.

    `expected_on_left` keeps the operand order (`L in E` is not `E in L`); `options` are isclose's keyword
    literals.
    """

    source: str
    expression: str
    relation: str
    expected: Any = None
    expected_on_left: bool = False
    options: dict[str, float] = field(default_factory=dict)

    def passes(self, value: Any) -> bool:
        """The verdict on the expression's (decoded, plain) value; any error in comparing is a failure."""
        try:
            return bool(self._judge(value))
        except Exception:  # e.g. 1 < "a": the value is simply wrong
            return False

    def _judge(self, value: Any) -> bool:
        if self.relation == "truthy":
            return bool(value)
        if self.relation == "falsy":
            return not value
        if self.relation == "isclose":
            return type(value) in (int, float) and math.isclose(value, self.expected, **self.options)
        _, compare = next(pair for pair in _COMPARISONS.values() if pair[0] == self.relation)
        left, right = (self.expected, value) if self.expected_on_left else (value, self.expected)
        return compare(left, right)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _is_isclose(node: ast.expr) -> bool:
    function = node.func if isinstance(node, ast.Call) else None
    return (isinstance(function, ast.Name) and function.id == "isclose") or (
        isinstance(function, ast.Attribute)
        and function.attr == "isclose"
        and isinstance(function.value, ast.Name)
        and function.value.id == "math"
    )


def _isclose_check(source: str, call: ast.Call) -> Check:
    if len(call.args) != 2 or any(keyword.arg not in ("rel_tol", "abs_tol") for keyword in call.keywords):
        raise UnsupportedTest("isclose takes an expression, a number and only rel_tol=/abs_tol= literals")
    options = {}
    for keyword in call.keywords:
        ok, number = _literal(keyword.value)
        if not ok or type(number) not in (int, float):
            raise UnsupportedTest(f"isclose's {keyword.arg} must be a number literal")
        options[str(keyword.arg)] = float(number)
    left_ok, left = _literal(call.args[0])
    right_ok, right = _literal(call.args[1])
    if right_ok and type(right) in (int, float):
        return Check(source, ast.unparse(call.args[0]), "isclose", right, options=options)
    if left_ok and type(left) in (int, float):
        return Check(source, ast.unparse(call.args[1]), "isclose", left, options=options)
    raise UnsupportedTest("isclose needs a number literal on one side")


def _check(source: str, test: ast.expr) -> Check:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return Check(source, ast.unparse(test.operand), "falsy")
    if _is_isclose(test):
        assert isinstance(test, ast.Call)
        return _isclose_check(source, test)
    if not isinstance(test, ast.Compare):
        if isinstance(test, ast.BoolOp):
            raise UnsupportedTest("`and`/`or` in one assert: write one assert per condition")
        return Check(source, ast.unparse(test), "truthy")
    if len(test.ops) != 1:
        raise UnsupportedTest("chained comparisons (a < b < c): write one assert per comparison")
    symbol, _ = _COMPARISONS[type(test.ops[0])]
    left, right = test.left, test.comparators[0]
    right_ok, right_value = _literal(right)
    left_ok, left_value = _literal(left)
    if right_ok:
        expression, expected, on_left = left, right_value, False
    elif left_ok:
        expression, expected, on_left = right, left_value, True
    else:
        raise UnsupportedTest("both sides are expressions: compare the expression with a literal")
    if symbol in ("is", "is not") and not any(expected is singleton for singleton in _SINGLETONS):
        raise UnsupportedTest("`is` compares only with None, True or False")
    return Check(source, ast.unparse(expression), symbol, expected, on_left)


def parse_assert_test(text: str) -> list[Check]:
    """The checks of one assert-test string; UnsupportedTest says which form is not supported."""
    try:
        module = ast.parse(text, "test", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise UnsupportedTest(f"not valid Python ({type(error).__name__})") from None
    if not module.body:
        raise UnsupportedTest("no assert statement")
    checks = []
    for statement in module.body:
        if not isinstance(statement, ast.Assert):
            raise UnsupportedTest(f"only assert statements are supported, not {type(statement).__name__}")
        checks.append(_check(ast.unparse(statement.test), statement.test))
    return checks
