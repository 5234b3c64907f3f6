"""The answer text a text-matching task (`exact`, `regex`, `choice`) grades: what the completion states."""

from __future__ import annotations

import re
import unicodedata

from grpo_reward.extraction import extract_answer
from grpo_reward.tasks.contract import TaskScore

_SPACE = re.compile(r"\s+")
_MATH_TEXT = re.compile(r"^\\text\{(.*)\}$", re.S)


def stated_answer(completion: str) -> tuple[str, bool]:
    """(answer, explicit): the explicit final answer (`\\boxed{}`, "The answer is ...") if there is one,
    else the whole completion stripped (explicit False)."""
    extraction = extract_answer(completion)
    if extraction.answer is not None:  # "The answer is: X" may still carry its colon
        return extraction.answer.lstrip(":：").strip(), extraction.explicit
    return completion.strip(), False


def normalize_words(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, `$...$`/`\\text{}` wrappers and trailing period removed."""
    text = unicodedata.normalize("NFKC", text).strip()
    text = text.strip("$").strip()
    match = _MATH_TEXT.match(text)
    if match:
        text = match.group(1)
    text = _SPACE.sub(" ", text).strip().rstrip(".").strip()
    return text.strip("\"'`").casefold()


def text_score(correct: bool, explicit: bool, answer: str, reason: str) -> TaskScore:
    """The TaskScore of a right/wrong text task: components correctness and format (explicit answer)."""
    return TaskScore(
        reward=1.0 if correct else 0.0,
        correct=correct,
        components={"correctness": 1.0 if correct else 0.0, "format": 1.0 if explicit else 0.0},
        reason=reason,
        extracted=answer,
    )
