"""The fixed words, commands and operators the answer grammar knows, and what each one builds.

Kept apart from the grammar so that admitting a new function or relation is a one-line table edit, and
so that the set of constructs untrusted text can reach is readable in one place: anything not listed
here (or handled by name in latex_constructs.py) is a ParseFailure.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

RELATIONS: dict[str, Callable[..., sympy.Basic]] = {
    "=": sympy.Eq,
    "==": sympy.Eq,
    "<": sympy.Lt,
    ">": sympy.Gt,
    "<=": sympy.Le,
    "=<": sympy.Le,
    r"\leq": sympy.Le,
    r"\leqq": sympy.Le,
    ">=": sympy.Ge,
    "=>": sympy.Ge,
    r"\geq": sympy.Ge,
    r"\geqq": sympy.Ge,
    "!=": sympy.Ne,
    r"\neq": sympy.Ne,
}
MULTIPLY = {"*", r"\cdot", r"\times", r"\ast"}
DIVIDE = {"/", r"\div"}
FUNCTIONS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "cot": sympy.cot,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "ln": sympy.log,
    "exp": sympy.exp,
    "abs": sympy.Abs,
    "lg": lambda value: sympy.log(value, 10),
}
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
MATRIX_ENVIRONMENTS = {
    "matrix",
    "pmatrix",
    "bmatrix",
    "Bmatrix",
    "vmatrix",
    "Vmatrix",
    "smallmatrix",
    "array",
}
ACCENTS = {
    r"\vec",
    r"\hat",
    r"\bar",
    r"\tilde",
    r"\overline",
    r"\underline",
    r"\overrightarrow",
    r"\mathring",
    r"\angle",  # `\angle ABC = 30`: the angle is named by its points
    r"\measuredangle",
}
SUCH_THAT = {r"\mid", ":", "|", r"\vert"}
INFINITY_WORDS = {r"\infty", r"\infinity", "oo", "inf", "infty", "infinity"}
