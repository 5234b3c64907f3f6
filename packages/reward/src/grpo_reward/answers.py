"""The structured forms a parsed answer can take.

Plain values are sympy expressions; relations are sympy relationals. The containers whose meaning depends on
how they are compared (is `(1, 2)` a point or an open interval?) stay as these small dataclasses, and the
equivalence module decides by the reference's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Bracketed:
    """`(a, b)`, `[a, b)`, `[1, 2, 3]`: an ordered tuple, a vector, or an interval (two items)."""

    opening: str
    closing: str
    items: tuple[Answer, ...]


@dataclass(frozen=True)
class SetOf:
    """`\\{a, b\\}`: an unordered set."""

    items: tuple[Answer, ...]


@dataclass(frozen=True)
class AnswerList:
    """`a, b` with no brackets (or `a \\pm b` expanded): an unordered list of answers."""

    items: tuple[Answer, ...]


@dataclass(frozen=True)
class UnionOf:
    """`A \\cup B`, or inequalities joined by "or"."""

    parts: tuple[Answer, ...]


@dataclass(frozen=True)
class Chain:
    """`a < x \\leq b`: relations that all hold (kept apart so each side stays inspectable)."""

    relations: tuple[sympy.Basic, ...]


@dataclass(frozen=True)
class Text:
    """A non-mathematical answer such as `Monday` or `yes`, compared case-insensitively."""

    value: str


Answer = sympy.Basic | Bracketed | SetOf | AnswerList | UnionOf | Chain | Text
