"""Size caps that stop big-integer, string and recursion blow-ups before they start.

A verifier that computes `10^{10^{10}}` or `(10^{100})!` exactly would run for hours and take the
machine's memory with it; the hard time limit (worker processes) is the last line of defence, these
caps are the first: they make the common adversarial shapes fail fast with reason "too large".
"""

from __future__ import annotations

from dataclasses import dataclass


class AnswerTooLarge(Exception):
    """An answer whose exact value or text is too large to handle safely."""


class ParseFailure(Exception):
    """An answer that is not well-formed math in the grammar the parser accepts."""


@dataclass(frozen=True)
class Limits:
    """Caps on input sizes and on the numbers the parser may build."""

    max_completion_chars: int = 1_000_000
    max_answer_chars: int = 4_000
    max_reference_chars: int = 20_000
    max_nesting: int = 60
    max_literal_digits: int = 4_000
    max_sci_exponent: int = 10_000
    max_integer_bits: int = 400_000
    max_symbolic_exponent: int = 10_000
    max_factorial: int = 10_000
    max_binomial: int = 50_000
    max_sum_terms: int = 10_000
    max_list_items: int = 200
    max_plus_minus: int = 4


DEFAULT_LIMITS = Limits()
