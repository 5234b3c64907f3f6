"""Find the final answer in a model completion (and in a reference solution).

Explicit forms only, in order of how explicit they are: the last `\\boxed{}`/`\\fbox{}` (nested braces,
doubled boxes), Minerva's "Final Answer: The final answer is $X$", GSM8K's `#### X`, and answer phrases
("the answer is X", "the answer is: X", `**Answer:** X`, "the correct option is (C)"). Multiple-choice
answers such as `(C)` or `option B` become the letter. When none of these is present nothing is
extracted, so the completion is not correct, unless the caller asked for the last number as a fallback.

This runs on untrusted text outside the killable workers, so every scan is linear in the text's length:
no regex here can backtrack on a long run (possessive quantifiers), and no loop rescans what an earlier
step already read (tests/test_linear_time.py holds the shapes that once did).
"""

from __future__ import annotations

import bisect
import collections
import re
from dataclasses import dataclass
from itertools import accumulate, repeat

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_ESCAPED = re.compile(r"\\[\\{}]")  # an escape that can hide a brace
_DEPTH_STEP = {"{": 1, "}": -1}
_SPACES = re.compile(r"[ \t]*")
_BARE_ARGUMENT = re.compile(r"[^\s$]+")  # `\boxed 5`
_BARE_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])[ \t]*(?=[^\s${])")
_BRACED_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])[ \t]*\{")
_FINAL_ANSWER_IS = re.compile(r"final answer is", re.I)
_FINAL_ANSWER_GAP = re.compile(r"[ \t]*+[:：]?[ \t]*+")
_HOPE = re.compile(r"I hope it is correct", re.I)
_GSM8K = re.compile(r"####[ \t]*([^\n]+)")
# Possessive quantifiers (`*+`, `++`) keep each attempt linear in the whitespace it meets.
_ANSWER_PHRASE = re.compile(
    r"(?:\banswer(?:[ \t]++is)?[ \t]*+(?:\*\*)?[ \t]*+[:：]"
    r"|\b(?:the|my|final)[ \t]++(?:final[ \t]++)?answer[ \t]++is\b(?:[ \t]*+[:：])?"
    r"|\banswer[ \t]++is\b(?:[ \t]*+[:：])?"
    r"|(?P<option>\b(?:correct|right|best)[ \t]++(?:option|choice)[ \t]++is\b(?:[ \t]*+[:：])?)"
    r")[ \t*]*",
    re.I,
)
# What `_strip_answer_tail` turns into "": blanks, `**` pairs and dots up to the end of a sentence or line.
_EVEN_STARS = r"(?:\*\*)++(?!\*)"
_EMPTY_ANSWER = re.compile(rf"(?:[^\S\n]|{_EVEN_STARS})*+(?:\.(?:{_EVEN_STARS})?)*+(?:\s|\Z)")
_CLOSING_DOLLAR = re.compile(r"(?<!\\)\$")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_CHOICE = re.compile(
    r"^\(?\s*([A-J])\s*\)(?:\s|$|[.:,])|^([A-J])[.:]?$|^\\?\(?\s*\\text\{\s*\(?([A-J])\)?\s*\}\)?$"
    r"|^(?i:option|choice)\s*\(?([A-J])\)?(?:\s|$|[.:,])"
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


def _closing_brace(text: str, opening: int, stop: int) -> int | None:
    """Index just past the `}` that closes the `{` at text[opening], looking no further than stop.

    A backslash escapes the next character (`\\{` is no brace), as in LaTeX; None when unclosed before stop.
    The depth is a running sum of +1/-1 per brace computed by `itertools.accumulate` over chunks that
    double in size, so the cost is linear in the distance scanned and runs at C speed.
    """
    close = text.find("}", opening, stop)
    if close < 0:
        return None
    if text.count("{", opening, close) == 1 and text.find("\\", opening, close) < 0:
        return close + 1  # the common `{42}`: no brace or escape inside
    depth, start, size = 0, opening, 256
    while start < stop:
        end = min(stop, start + size)
        while end < stop and text[end - 1] == "\\":  # never split an escape between two chunks
            end += 1
        plain = _ESCAPED.sub("  ", text[start:end])
        depths = list(accumulate(map(_DEPTH_STEP.get, plain, repeat(0)), initial=depth))
        try:
            return start + depths.index(0, 1)
        except ValueError:
            depth, start, size = depths[-1], end, size * 2
    return None


def _box_argument(text: str, after: int, stop: int) -> tuple[str | None, int]:
    """(argument of the box command ending at `after`, index of its `{` or -1 for `\\boxed 5`).

    The argument is None when the braces do not close before stop, or when nothing follows the command.
    """
    index = _SPACES.match(text, after).end()
    if index < len(text) and text[index] == "{":
        end = _closing_brace(text, index, stop)
        return (None if end is None else text[index + 1 : end - 1]), index
    bare = _BARE_ARGUMENT.match(text, index)
    return (bare.group() if bare else None), -1


def _unwrap_boxes(answer: str) -> str:
    """`\\boxed{\\boxed{5}}` -> `5`; also strips a box that wraps the whole answer after extraction."""
    for _ in range(8):
        stripped = answer.strip()
        match = _BOX_COMMAND.match(stripped)
        if not match:
            return stripped
        inner, _ = _box_argument(stripped, match.end(), len(stripped))
        if inner is None:
            return stripped
        rest = stripped[match.end() :].strip()
        if not rest.startswith("{") or len(inner) + 2 != len(rest):
            return stripped
        answer = inner
    return answer.strip()


def last_boxed(text: str) -> str | None:
    """The argument of the last complete `\\boxed{}`/`\\fbox{}` in text, unwrapped; None if there is none.

    Linear in len(text). A bare `\\boxed 5` always has its argument, so only braced boxes after the last
    bare one matter. They are tried from the last back, each up to the `{` of the unclosed box after it:
    an unclosed box keeps every earlier box's depth at least 1 from its `{` to the end of the text, so an
    earlier box closes before that `{` or never. The scanned regions are disjoint, and a run of boxes with
    no `}` after them at all is skipped in one step.
    """
    bare_boxes = collections.deque(_BARE_BOX.finditer(text), maxlen=1)  # keeps the last one only
    bare = bare_boxes[0] if bare_boxes else None
    after_bare = -1 if bare is None else bare.start()
    last_close = text.rfind("}")  # a box opening after it cannot close: not even listed
    openings = [match.end() - 1 for match in _BRACED_BOX.finditer(text, after_bare + 1, max(last_close, 0))]
    stop, index = len(text), len(openings) - 1
    while index >= 0:
        last_close = text.rfind("}", 0, stop)
        skip_to = bisect.bisect_left(openings, last_close, 0, index + 1) - 1
        if skip_to < index:  # boxes opening after the last `}` before stop cannot close
            stop, index = openings[skip_to + 1], skip_to
            continue
        end = _closing_brace(text, openings[index], stop)
        if end is not None:
            return _unwrap_boxes(text[openings[index] + 1 : end - 1])
        stop, index = openings[index], index - 1
    if bare is None:
        return None
    argument = _BARE_ARGUMENT.match(text, bare.end())
    return None if argument is None else _unwrap_boxes(argument.group())


def _final_answer(text: str) -> str | None:
    """The answer of the last Minerva sentence, "final answer is X[. I hope it is correct]", to line end.

    Group 1 of the last match of `final answer is[ \\t]*[:：]?[ \\t]*(.+?)(?:\\.?[ \\t]*I hope it is
    correct|$)` (case-insensitive, multi-line), in one pass: the lazy group ends where the first "I hope
    it is correct" after its first character begins, less the blanks and one period before it, or at the
    end of the line.
    """
    last: str | None = None
    position, line_end = 0, -1
    while (found := _FINAL_ANSWER_IS.search(text, position)) is not None:
        if line_end < found.end():
            newline = text.find("\n", found.end())
            line_end = len(text) if newline < 0 else newline
        start = _FINAL_ANSWER_GAP.match(text, found.end()).end()
        if start < line_end:
            hope = _HOPE.search(text, start + 1, line_end)
            if hope is None:
                last, position = text[start:line_end], line_end
            else:
                end = hope.start()
                while end > start + 1 and text[end - 1] in " \t":
                    end -= 1
                if end > start + 1 and text[end - 1] == ".":
                    end -= 1
                last, position = text[start:end], hope.end()
        elif start > found.end():  # only blanks or a colon before the line ends: the group is its last one
            last, position = text[line_end - 1 : line_end], line_end
        else:
            position = found.start() + 1
    return last


def _strip_answer_tail(answer: str) -> str:
    """Cut an answer phrase at the end of its sentence and drop markdown and math delimiters."""
    answer = answer.strip().replace("**", "").strip()
    if answer.startswith("$"):
        double = answer.startswith("$$")
        closing = _CLOSING_DOLLAR.search(answer, 2 if double else 1)
        if closing:
            return answer[: closing.start() + (2 if double else 1)]
    if answer.startswith(r"\("):
        closing_index = answer.find(r"\)")
        if closing_index > 0:
            return answer[: closing_index + 2]
    match = _SENTENCE_END.search(answer)
    if match:
        answer = answer[: match.start()]
    return answer.strip().rstrip(".")


def _answer_phrase(tail: str) -> str | None:
    """The answer after the last answer phrase whose answer is not empty (its line, to the sentence end).

    Phrases whose answer is certainly empty are skipped by a scan that stops at the first character that
    could start an answer (the next phrase starts with a letter), so the whole loop is linear.
    """
    for phrase in reversed(list(_ANSWER_PHRASE.finditer(tail))):
        end = phrase.end()
        if _EMPTY_ANSWER.match(tail, end):
            continue
        newline = tail.find("\n", end)
        answer = _strip_answer_tail(tail[end : len(tail) if newline < 0 else newline])
        if not answer or (phrase.group("option") and _CHOICE.match(answer) is None):
            continue  # "the correct option is" counts only before an option letter
        return answer
    return None


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
    final_answer = _final_answer(tail)
    if final_answer is not None:
        return Extraction(as_choice(_strip_answer_tail(final_answer)), "final_answer")
    gsm8k = list(_GSM8K.finditer(tail))
    if gsm8k:
        return Extraction(as_choice(gsm8k[-1].group(1).strip().rstrip(".")), "gsm8k")
    phrase = _answer_phrase(tail)
    if phrase is not None:
        return Extraction(as_choice(phrase), "answer_phrase")
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
