"""The verification pipeline in-process: extract -> normalise -> parse -> compare; pure, unbounded in time.

Callers that face untrusted input use `Verifier` (worker processes with a hard time limit), which runs this
inside its workers. `quick_check` answers the cases that provably cannot blow up (plain numbers, identical
strings) without a worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from grpo_reward.answers import Answer, Text
from grpo_reward.approximation import honest_rounding, split_approximation
from grpo_reward.equivalence import Context, compare
from grpo_reward.extraction import MAX_BOXES, Extraction, extract_answer, reference_answers
from grpo_reward.limits import DEFAULT_LIMITS, AnswerTooLarge, Limits, ParseFailure
from grpo_reward.normalization import normalize_answer, normalize_answers, normalize_text
from grpo_reward.parsing import looks_like_text, parse_answer
from grpo_reward.verdict import Verdict

_PLAIN_NUMBER = re.compile(r"^-?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})$")
_PLAIN_FRACTION = re.compile(r"^(-?)(?:\\frac\{(\d{1,30})\}\{(\d{1,30})\}|(\d{1,30})/(\d{1,30}))$")
_DECIMAL = re.compile(r"^-?\d*\.(\d+)$")


@dataclass(frozen=True)
class ParsedReference:
    """A reference answer parsed once (and cached): its text, normal form, parsed value or the error."""

    text: str
    normalized: str
    answer: Answer | None
    error: str | None
    decimals: int | None


def _plain_value(normalized: str) -> Fraction | None:
    """The exact value of a plain number or fraction (`-12.5`, `\\frac{3}{4}`, `3/4`), else None."""
    if _PLAIN_NUMBER.match(normalized):
        return Fraction(normalized)
    match = _PLAIN_FRACTION.match(normalized)
    if match:
        numerator = int(match.group(2) or match.group(4))
        denominator = int(match.group(3) or match.group(5))
        if denominator == 0:
            return None
        value = Fraction(numerator, denominator)
        return -value if match.group(1) else value
    return None


@lru_cache(maxsize=8192)
def parse_reference(reference: str, limits: Limits = DEFAULT_LIMITS) -> ParsedReference:
    """Parse a reference (cached per process: references repeat across a GRPO group)."""
    if len(reference) > limits.max_reference_chars:
        return ParsedReference(
            reference[:80], "", None, f"longer than {limits.max_reference_chars} characters", None
        )
    parts = reference_answers(reference)
    text = ", ".join(parts)
    normalized = normalize_answers(parts)
    if not normalized:
        return ParsedReference(text, normalized, None, "empty reference", None)
    decimal = _DECIMAL.match(normalized)
    decimals = len(decimal.group(1)) if decimal else None
    try:
        return ParsedReference(text, normalized, parse_answer(normalized, limits), None, decimals)
    except AnswerTooLarge as error:
        return ParsedReference(text, normalized, None, f"too large: {error}", decimals)
    except ParseFailure as error:
        return ParsedReference(text, normalized, Text(normalized), f"could not be parsed: {error}", decimals)
    except RecursionError:
        return ParsedReference(text, normalized, None, "too large: nested too deeply", decimals)


def _verdict(correct: bool, reason: str, extraction: Extraction) -> Verdict:
    return Verdict(
        correct=correct,
        reward=1.0 if correct else 0.0,
        extracted=extraction.answer,
        reason=reason,
        components={"correctness": 1.0 if correct else 0.0, "format": 1.0 if extraction.explicit else 0.0},
    )


def _precheck(
    completion: str, reference: str, fallback_last_number: bool, limits: Limits
) -> Verdict | tuple[Extraction, str]:
    """Size checks and extraction: a final verdict, or (extraction, normalised prediction) to go on with."""
    if len(completion) > limits.max_completion_chars:
        return Verdict(
            False, 0.0, None, f"too large: completion longer than {limits.max_completion_chars} characters"
        )
    if not reference.strip():
        return Verdict(False, 0.0, None, "unusable reference: it is empty")
    extraction = extract_answer(completion, fallback_last_number=fallback_last_number)
    if extraction.answer is None:
        return _verdict(False, "no final answer found", extraction)
    if len(extraction.answer) > limits.max_answer_chars:
        return _verdict(
            False, f"too large: answer longer than {limits.max_answer_chars} characters", extraction
        )
    if len(extraction.parts) > MAX_BOXES:
        return _verdict(False, f"too large: more than {MAX_BOXES} boxed answers", extraction)
    if extraction.parts:  # several boxes: one answer list
        return extraction, normalize_answers(extraction.parts)
    return extraction, normalize_answer(extraction.answer)


def quick_check(
    completion: str, reference: str, *, fallback_last_number: bool = False, limits: Limits = DEFAULT_LIMITS
) -> Verdict | Extraction:
    """A verdict for the cases that need no sympy and cannot blow up, else the extraction to go on with."""
    early = _precheck(completion, reference, fallback_last_number, limits)
    if isinstance(early, Verdict):
        return early
    extraction, predicted = early
    if len(reference) > 2_000:
        return extraction
    reference_text = normalize_answers(reference_answers(reference))
    if not reference_text:
        return Verdict(False, 0.0, extraction.answer, "unusable reference: it is empty")
    expected_value = _plain_value(reference_text)
    if expected_value is None:
        return extraction
    if predicted == reference_text:
        return _verdict(True, "identical after normalisation", extraction)
    predicted_value = _plain_value(predicted)
    if predicted_value is None:
        return extraction
    if predicted_value == expected_value:
        return _verdict(True, "equal as rationals", extraction)
    return _verdict(False, "different numbers", extraction)


def timeout_verdict(extraction: Extraction, timeout_s: float) -> Verdict:
    """The verdict for an item whose verification ran past its time limit."""
    return Verdict(
        correct=False,
        reward=0.0,
        extracted=extraction.answer,
        reason=f"timeout after {timeout_s:g} s (answer too large or too hard to compare)",
        components={"correctness": 0.0, "format": 1.0 if extraction.explicit else 0.0},
    )


def check(
    completion: str, reference: str, *, fallback_last_number: bool = False, limits: Limits = DEFAULT_LIMITS
) -> Verdict:
    """Verify completion against reference in this process, with no time limit (see module docstring)."""
    early = _precheck(completion, reference, fallback_last_number, limits)
    if isinstance(early, Verdict):
        return early
    extraction, predicted = early
    parsed = parse_reference(reference, limits)
    if parsed.answer is None:
        return _verdict(False, f"unusable reference: {parsed.error}", extraction)
    approximation = split_approximation(predicted)
    if approximation is None:
        return _graded(predicted, parsed, extraction, limits)
    exact, rounded = approximation
    if not exact:  # `\approx 1.41`: only the rounding was given
        return _graded(rounded, parsed, extraction, limits)
    verdict = _graded(exact, parsed, extraction, limits)
    if verdict.correct or parsed.decimals is None or not honest_rounding(exact, rounded, limits):
        return verdict
    return _graded(rounded, parsed, extraction, limits)  # a rounded reference, honestly rounded


def _graded(predicted: str, parsed: ParsedReference, extraction: Extraction, limits: Limits) -> Verdict:
    """The verdict on one normalised prediction against a usable parsed reference."""
    if predicted == parsed.normalized:
        return _verdict(True, "identical after normalisation", extraction)
    textual = parsed.error is not None or isinstance(parsed.answer, Text) or looks_like_text(predicted)
    if textual and normalize_text(predicted) == normalize_text(parsed.normalized):
        return _verdict(True, "equal as text", extraction)
    if parsed.error is not None:
        return _verdict(False, f"unusable reference: {parsed.error}", extraction)
    expected_value, predicted_value = _plain_value(parsed.normalized), _plain_value(predicted)
    if expected_value is not None and predicted_value is not None:
        equal = expected_value == predicted_value
        return _verdict(equal, "equal as rationals" if equal else "different numbers", extraction)
    try:
        prediction = parse_answer(predicted, limits)
    except AnswerTooLarge as error:
        return _verdict(False, f"too large: {error}", extraction)
    except ParseFailure as error:
        return _verdict(False, f"could not parse the answer: {error}", extraction)
    except RecursionError:
        return _verdict(False, "too large: nested too deeply", extraction)
    if isinstance(parsed.answer, Text) or isinstance(prediction, Text):
        return _verdict(False, "different answers", extraction)
    try:
        outcome = compare(parsed.answer, prediction, Context(reference_decimals=parsed.decimals))
    except RecursionError:
        return _verdict(False, "too large: nested too deeply", extraction)
    except (TypeError, ValueError, AttributeError, NotImplementedError, ZeroDivisionError) as error:
        return _verdict(False, f"could not compare: {type(error).__name__}", extraction)
    return _verdict(outcome.equal, outcome.reason, extraction)
