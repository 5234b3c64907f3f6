r"""The parser's entry points: what is checked and rewritten on the whole answer string before tokenizing.

`parse_answer` decides text against math (`Monday` is Text, not M*o*n*d*a*y), expands `\pm` into one
answer per sign, and applies the string-level caps before a token exists: an over-long answer is refused
by its length, an over-nested one after one pass over its characters. `parse_math` rewrites mixed numbers
(`2\frac{1}{3}` = 2 + 1/3, as a person writes it, not 2 * 1/3) and runs grammar.Parser.
"""

from __future__ import annotations

import re

from grpo_reward.answers import Answer, AnswerList, Text
from grpo_reward.limits import DEFAULT_LIMITS, AnswerTooLarge, Limits, ParseFailure
from grpo_reward.parsing.grammar import Parser
from grpo_reward.tokenizer import KNOWN_WORDS, tokenize

_MIXED_NUMBER = re.compile(r"(?<![\d}^_.])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")


def _mixed_number(match: re.Match[str]) -> str:
    whole, numerator, denominator = match.group(1), match.group(2), match.group(3)
    if int(numerator) < int(denominator):
        return rf"({whole}+\frac{{{numerator}}}{{{denominator}}})"
    return match.group(0)


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth -= 1
    return deepest


_WORD_RUN = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
# Function and set words are math, not prose; the tokenizer's list, where a run can match (3+ letters).
_MATH_WORDS = frozenset(word for word in KNOWN_WORDS if len(word) >= 3)


def looks_like_text(normalized: str) -> bool:
    """Whether an answer is words rather than math (`Monday`, `yes`, `no solution`)."""
    without_environments = re.sub(r"\\(?:begin|end)\{[a-zA-Z*]+\}", " ", normalized)
    return any(_is_prose(word) for word in _WORD_RUN.findall(without_environments))


def _is_prose(word: str) -> bool:
    """A word of prose: not a function or set word, and not the capital letters naming points (`ABC`,
    `ABCD`: a triangle's or a quadrilateral's vertices, as in `[ABC] = 6` or `\\angle ABC`)."""
    return word.lower() not in _MATH_WORDS and not (word.isupper() and len(word) <= 4)


def expand_plus_minus(normalized: str, limits: Limits) -> list[str]:
    r"""`1 \pm \sqrt{2}` -> [`1 + \sqrt{2}`, `1 - \sqrt{2}`]; one string per sign choice."""
    count = len(re.findall(r"\\(?:pm|mp)(?![a-zA-Z])", normalized))
    if count == 0:
        return [normalized]
    if count > limits.max_plus_minus:
        raise AnswerTooLarge(f"more than {limits.max_plus_minus} \\pm signs")
    variants = [normalized]
    for _ in range(count):
        expanded = []
        for variant in variants:
            match = re.search(r"\\(pm|mp)(?![a-zA-Z])", variant)
            assert match is not None
            first, second = ("+", "-") if match.group(1) == "pm" else ("-", "+")
            expanded.append(variant[: match.start()] + first + variant[match.end() :])
            expanded.append(variant[: match.start()] + second + variant[match.end() :])
        variants = expanded
    return variants


def parse_math(normalized: str, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Parse one normalised answer (no \\pm) into a sympy object or an answers container."""
    if len(normalized) > limits.max_answer_chars:
        raise AnswerTooLarge(f"answer longer than {limits.max_answer_chars} characters")
    if not normalized:
        raise ParseFailure("empty answer")
    if _nesting_depth(normalized) > limits.max_nesting:
        raise AnswerTooLarge(f"nested more than {limits.max_nesting} levels deep")
    text = _MIXED_NUMBER.sub(_mixed_number, normalized)
    return Parser(tokenize(text), limits).answer()


def parse_answer(normalized: str, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Parse a normalised answer: text answers become Text, `\\pm` expands into an AnswerList."""
    if len(normalized) > limits.max_answer_chars:
        raise AnswerTooLarge(f"answer longer than {limits.max_answer_chars} characters")
    if looks_like_text(normalized):
        return Text(normalized)
    variants = expand_plus_minus(normalized, limits)
    if len(variants) == 1:
        return parse_math(variants[0], limits)
    parsed: list[Answer] = []
    for variant in variants:
        value = parse_math(variant, limits)
        parsed.extend(value.items if isinstance(value, AnswerList) else [value])
    return AnswerList(tuple(parsed))
