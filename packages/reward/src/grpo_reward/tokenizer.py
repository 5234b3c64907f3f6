"""Split a normalised LaTeX / plain-math answer into tokens for the recursive-descent parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

from grpo_reward.limits import ParseFailure

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<env>\\(?:begin|end)\s*\{[a-zA-Z*]+\})
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<cmd>\\[a-zA-Z]+|\\\\|\\.)
  | (?P<word>[a-zA-Z]+)
  | (?P<op>\*\*|<=|>=|=<|=>|!=|==|[-+*/^_=<>(){}\[\],;|!'&:])
    """,
    re.VERBOSE,
)

# Plain-text words that are one token (everything else splits into single-letter symbols: `xy` = x*y).
KNOWN_WORDS = frozenset(
    {
        "sqrt",
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "arcsin",
        "arccos",
        "arctan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "tanh",
        "log",
        "ln",
        "exp",
        "abs",
        "pi",
        "oo",
        "inf",
        "infty",
        "infinity",
        "and",
        "or",
        "cup",
        "in",
        "i",
        "e",
    }
)


@dataclass(frozen=True)
class Token:
    """A token: kind is num, cmd, env, word or op; text is its source text (commands keep the backslash)."""

    kind: str
    text: str


END = Token("end", "")


def tokenize(text: str) -> list[Token]:
    """Tokens of text, or ParseFailure naming the first character no token starts with."""
    tokens: list[Token] = []
    position = 0
    length = len(text)
    while position < length:
        match = _TOKEN.match(text, position)
        if match is None:
            raise ParseFailure(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        value = match.group(0)
        position = match.end()
        if kind == "ws":
            continue
        if kind == "env":
            value = re.sub(r"\s+", "", value)
        if kind == "word" and value.lower() not in KNOWN_WORDS and value not in KNOWN_WORDS:
            tokens.extend(Token("word", letter) for letter in value)
            continue
        if kind == "word" and value.lower() in KNOWN_WORDS and len(value) > 1:
            value = value.lower()
        tokens.append(Token(kind, value))
    return tokens
