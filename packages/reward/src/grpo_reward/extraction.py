"""Find the final answer in a model completion (and in a reference solution).

Explicit forms only, in order of how explicit they are: the last `\\boxed{}`/`\\fbox{}` (nested braces,
doubled boxes), Minerva's "Final Answer: The final answer is $X$", GSM8K's `#### X`, and answer phrases
("the answer is X", `**Answer:** X`). Multiple-choice answers such as `(C)` become the letter. When none of
these is present nothing is extracted, so the completion is not correct, unless the caller asked for the
last number as a fallback. Every scan is linear: no regex here can backtrack catastrophically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_MINERVA = re.compile(r"final answer is[ \t]*:?[ \t]*(.+?)(?:\.?[ \t]*I hope it is correct|$)", re.I | re.M)
_GSM8K = re.compile(r"####[ \t]*([^\n]+)")
_ANSWER_PHRASE = re.compile(
    r"(?:\banswer(?:[ \t]+is)?[ \t]*(?:\*\*)?[ \t]*[:：]"
    r"|\b(?:the|my|final)[ \t]+(?:final[ \t]+)?answer[ \t]+is\b"
    r"|\banswer[ \t]+is\b)[ \t*]*",
    re.I,
)
_CHOICE = re.compile(
    r"^\(?\s*([A-J])\s*\)(?:\s|$|[.:,])|^([A-J])[.:]?$|^\\?\(?\s*\\text\{\s*\(?([A-J])\)?\s*\}\)?$"
)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


@dataclass(frozen=True)
class Extraction:
    """The answer found and how (`form`: boxed, final_answer, gsm8k, answer_phrase, last_number, none)."""

    answer: str | None
    form: str

    @property
    def explicit(self) -> bool:
        """A final answer given in an explicit form (what the format reward component rewards)."""
        return self.answer is not None and self.form not in ("last_number", "none")


def _braced_argument(text: str, start: int) -> tuple[str, int] | None:
    """The contents of the `{...}` group opening at text[start], honouring `\\{` escapes; None if unclosed."""
    depth = 0
    index = start
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : index], index + 1
        index += 1
    return None


def _box_argument(text: str, after: int) -> str | None:
    index = after
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == "{":
        found = _braced_argument(text, index)
        return None if found is None else found[0]
    match = re.match(r"[^\s$]+", text[index:])  # `\boxed 5`
    return match.group(0) if match else None


def _unwrap_boxes(answer: str) -> str:
    """`\\boxed{\\boxed{5}}` -> `5`; also strips a box that wraps the whole answer after extraction."""
    for _ in range(8):
        stripped = answer.strip()
        match = _BOX_COMMAND.match(stripped)
        if not match:
            return stripped
        inner = _box_argument(stripped, match.end())
        if inner is None:
            return stripped
        rest = stripped[match.end() :].strip()
        if not rest.startswith("{") or len(inner) + 2 != len(rest):
            return stripped
        answer = inner
    return answer.strip()


def last_boxed(text: str) -> str | None:
    """The argument of the last complete `\\boxed{}`/`\\fbox{}` in text, unwrapped; None if there is none."""
    for match in reversed(list(_BOX_COMMAND.finditer(text))):
        inner = _box_argument(text, match.end())
        if inner is not None:
            return _unwrap_boxes(inner)
    return None


def _strip_answer_tail(answer: str) -> str:
    """Cut an answer phrase at the end of its sentence and drop markdown and math delimiters."""
    answer = answer.strip().replace("**", "").strip()
    if answer.startswith("$"):
        closing = answer.find("$", 2 if answer.startswith("$$") else 1)
        if closing > 0:
            return answer[: closing + (2 if answer.startswith("$$") else 1)]
    if answer.startswith(r"\("):
        closing = answer.find(r"\)")
        if closing > 0:
            return answer[: closing + 2]
    match = re.search(r"\.(?:\s|$)", answer)
    if match:
        answer = answer[: match.start()]
    return answer.strip().rstrip(".")


def as_choice(answer: str) -> str:
    """`(C)`, `C)`, `\\text{(C)}`, `(C) 42` -> `C`; any other answer unchanged."""
    match = _CHOICE.match(answer.strip())
    if match:
        return next(group for group in match.groups() if group)
    return answer


def extract_answer(completion: str, *, fallback_last_number: bool = False) -> Extraction:
    """The final answer of a completion (see module docstring for the forms and their order)."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return Extraction(as_choice(boxed), "boxed")
    tail = completion[-20_000:]
    minerva = list(_MINERVA.finditer(tail))
    if minerva:
        return Extraction(as_choice(_strip_answer_tail(minerva[-1].group(1))), "final_answer")
    gsm8k = list(_GSM8K.finditer(tail))
    if gsm8k:
        return Extraction(as_choice(gsm8k[-1].group(1).strip().rstrip(".")), "gsm8k")
    phrases = list(_ANSWER_PHRASE.finditer(tail))
    for phrase in reversed(phrases):
        line = tail[phrase.end() :].split("\n", 1)[0]
        answer = _strip_answer_tail(line)
        if answer:
            return Extraction(as_choice(answer), "answer_phrase")
    if fallback_last_number:
        numbers = list(_NUMBER.finditer(tail))
        if numbers:
            return Extraction(numbers[-1].group(0), "last_number")
    return Extraction(None, "none")


def extract_reference(reference: str) -> str:
    """The answer part of a reference: after GSM8K's `####`, a solution's last `\\boxed{}`, or all of it."""
    if "####" in reference:
        return reference.rsplit("####", 1)[1].strip()
    boxed = last_boxed(reference)
    if boxed is not None:
        return boxed
    return as_choice(reference.strip())
