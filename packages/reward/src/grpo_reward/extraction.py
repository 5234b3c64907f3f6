"""Find the final answer in a model completion (and in a reference solution).

Explicit forms only, in order of how explicit they are: every complete `\\boxed{}`/`\\fbox{}` (nested
braces, doubled boxes; several boxes are one answer list, and a "final answer" statement after the last
box wins over it), Minerva's "Final Answer: The final answer is $X$", GSM8K's `#### X`, and answer
phrases ("the answer is X", "the answer is: X", `**Answer:** X`, "the correct option is (C)"; an answer
given as a sentence is the value it states). Multiple-choice answers such as `(C)` or `option B` become
the letter. When none of these is present nothing is extracted, so the completion is not correct,
unless the caller asked for the last number as a fallback.

This runs on untrusted text outside the killable workers, so every scan is linear in the text's length:
no regex here can backtrack on a long run (possessive quantifiers), and no loop rescans what an earlier
step already read (tests/test_linear_time.py holds the shapes that once did).
"""

from __future__ import annotations

import bisect
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
_FINAL_HEADING = re.compile(r"^[ \t#*]*+final[ \t]++answer[ \t*:：]*+\n\s*+([^\n]++)", re.I | re.M)
_FINAL_WORD = re.compile(r"final[ \t]*+answer", re.I)
_MATH_SEGMENT = re.compile(r"(?<!\\)\$\$?[^$]+?(?<!\\)\$\$?|\\\(.+?\\\)")
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
# Words that math is written in, not prose.
_NOT_PROSE = frozenset({"and", "sqrt", "sin", "cos", "tan", "log", "inf", "infty"})
_COPULA = re.compile(r"\b(?:is|are|equals|was|were|becomes)\b|=", re.I)
_NOT_ONLY_WORDS = re.compile(r"[^a-zA-Z\s,'’]")
_SENTENCE_NUMBER = re.compile(r"(?<![\w.])-?\d++(?:[.,]\d++)*+(?:/\d++)?(?![\w.]|,\d)")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


@dataclass(frozen=True)
class Extraction:
    """The answer found and how (`form`: boxed, final_answer, gsm8k, answer_phrase, last_number, none)."""

    answer: str | None
    form: str
    parts: tuple[str, ...] = ()  # every boxed answer, when there are several (`answer` joins the distinct)

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


MAX_BOXES = 64  # more distinct boxed answers than this is no answer list anyone asked for


@dataclass(frozen=True)
class Boxes:
    """Every complete box of a text, in text order (at most MAX_BOXES + 1), and where each one starts."""

    answers: tuple[str, ...]
    starts: tuple[int, ...]


def boxed_answers(text: str) -> Boxes:
    """The arguments of the complete `\\boxed{}`/`\\fbox{}` boxes in text (unwrapped), in text order.

    Linear in len(text). Boxes are tried from the last back; a box closes before the `{` of the box found
    after it or never (an unclosed box keeps every earlier box's depth at least 1 from its `{` on, and a
    box nested in a later-found box is that box's content), so each box is scanned up to that `{` only:
    the scanned regions are disjoint. A run of boxes with no `}` after them at all is skipped in one
    step. A bare `\\boxed 5` always has its argument. Stops after MAX_BOXES + 1 boxes (the caller refuses
    that many).
    """
    bare = list(_BARE_BOX.finditer(text))
    last_close = text.rfind("}")  # a box opening after it cannot close: not even listed
    openings = [match.end() - 1 for match in _BRACED_BOX.finditer(text, 0, max(last_close, 0))]
    found: list[tuple[str, int]] = []
    stop, index, bare_index = len(text), len(openings) - 1, len(bare) - 1
    while (index >= 0 or bare_index >= 0) and len(found) <= MAX_BOXES:
        if bare_index >= 0 and (index < 0 or bare[bare_index].start() > openings[index]):
            box = bare[bare_index]
            argument = _BARE_ARGUMENT.match(text, box.end(), max(stop, box.end()))
            if argument is not None:
                found.append((_unwrap_boxes(argument.group()), box.start()))
            stop, bare_index = box.start(), bare_index - 1
            continue
        last_close = text.rfind("}", 0, stop)
        skip_to = bisect.bisect_left(openings, last_close, 0, index + 1) - 1
        if skip_to < index:  # boxes opening after the last `}` before stop cannot close
            stop, index = openings[skip_to + 1], skip_to
            continue
        closed = _closing_brace(text, openings[index], stop)
        if closed is not None:
            found.append((_unwrap_boxes(text[openings[index] + 1 : closed - 1]), openings[index]))
        stop, index = openings[index], index - 1
    found.reverse()
    return Boxes(tuple(answer for answer, _ in found), tuple(start for _, start in found))


def last_boxed(text: str) -> str | None:
    """The argument of the last complete `\\boxed{}`/`\\fbox{}` in text, unwrapped; None if there is none."""
    answers = boxed_answers(text).answers
    return answers[-1] if answers else None


def _final_answer(text: str) -> tuple[str, int] | None:
    """The answer of the last Minerva sentence, "final answer is X[. I hope it is correct]", to line end,
    and where its phrase starts.

    Group 1 of the last match of `final answer is[ \\t]*[:：]?[ \\t]*(.+?)(?:\\.?[ \\t]*I hope it is
    correct|$)` (case-insensitive, multi-line), in one pass: the lazy group ends where the first "I hope
    it is correct" after its first character begins, less the blanks and one period before it, or at the
    end of the line.
    """
    last: tuple[str, int] | None = None
    position, line_end = 0, -1
    while (found := _FINAL_ANSWER_IS.search(text, position)) is not None:
        if line_end < found.end():
            newline = text.find("\n", found.end())
            line_end = len(text) if newline < 0 else newline
        start = _FINAL_ANSWER_GAP.match(text, found.end()).end()
        if start < line_end:
            hope = _HOPE.search(text, start + 1, line_end)
            if hope is None:
                last, position = (text[start:line_end], found.start()), line_end
            else:
                end = hope.start()
                while end > start + 1 and text[end - 1] in " \t":
                    end -= 1
                if end > start + 1 and text[end - 1] == ".":
                    end -= 1
                last, position = (text[start:end], found.start()), hope.end()
        elif start > found.end():  # only blanks or a colon before the line ends: the group is its last one
            last, position = (text[line_end - 1 : line_end], found.start()), line_end
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


def _answer_in_sentence(answer: str) -> str:
    """The answer stated in a sentence: `The area is $24$ square units` -> `$24$`, `There are 12 ways` ->
    `12 ways`; an answer with no prose outside its math is returned as it is.

    With prose outside math, the last math segment (`$...$`, `\\(...\\)`) is the answer; without math,
    what follows the last "is"/"are"/"equals"/"=" when only words precede it (`The number of apples is
    5`; never `5 because x is 3`), else the sentence's one number (`Sarah has 15 marbles left`). Only
    for answers up to 1,000 characters (a sentence, not a page).
    """
    if len(answer) > 1_000:
        return answer
    segments = list(_MATH_SEGMENT.finditer(answer))
    outside = _MATH_SEGMENT.sub(" ", answer)
    if not any(word.lower() not in _NOT_PROSE for word in _PROSE_WORD.findall(outside)):
        return answer
    if segments:
        return segments[-1].group(0)
    copulas = list(_COPULA.finditer(answer))
    if copulas and not _NOT_ONLY_WORDS.search(answer, 0, copulas[-1].start()):
        stated = answer[copulas[-1].end() :].strip()
        return stated or answer
    numbers = _SENTENCE_NUMBER.findall(answer)
    return numbers[0] if len(numbers) == 1 else answer  # `Sarah has 15 marbles left`


def _answer_phrase(tail: str) -> tuple[str, int, bool] | None:
    """The answer after the last answer phrase whose answer is not empty (its line, to the sentence end),
    where the phrase starts, and whether it is a "final answer" phrase (`Final Answer: X`).

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
        final = _FINAL_WORD.search(tail, max(0, phrase.start() - 6), phrase.end()) is not None
        return _answer_in_sentence(answer), phrase.start(), final
    return None


def _final_statement(tail: str, after: int) -> tuple[Extraction, int] | None:
    """The last "final answer" statement (Minerva's `final answer is X`, or `Final Answer: X`) that starts
    after index `after` of tail, and where it starts: a box before it was an intermediate result."""
    if _FINAL_WORD.search(tail, max(after, 0)) is None:
        return None
    final_answer = _final_answer(tail)
    if final_answer is not None and final_answer[1] >= after:
        return Extraction(as_choice(_strip_answer_tail(final_answer[0])), "final_answer"), final_answer[1]
    phrase = _answer_phrase(tail)
    if phrase is not None and phrase[2] and phrase[1] >= after:
        return Extraction(as_choice(phrase[0]), "answer_phrase"), phrase[1]
    heading = _final_heading(tail)
    if heading is not None and heading[1] >= after:
        return Extraction(as_choice(heading[0]), "final_answer"), heading[1]
    return None


def _final_heading(tail: str) -> tuple[str, int] | None:
    """The answer on the line after the last `Final Answer` heading (`**Final Answer**`, `## Final
    Answer:` alone on its line), and where the heading starts."""
    headings = list(_FINAL_HEADING.finditer(tail))
    if not headings:
        return None
    answer = _answer_in_sentence(_strip_answer_tail(headings[-1].group(1)))
    return (answer, headings[-1].start()) if answer else None


def as_choice(answer: str) -> str:
    """`(C)`, `C)`, `\\text{(C)}`, `(C) 42` -> `C`; any other answer unchanged."""
    match = _CHOICE.match(answer.strip())
    if match:
        return next(group for group in match.groups() if group)
    return answer


def extract_answer(completion: str, *, fallback_last_number: bool = False) -> Extraction:
    """The final answer of a completion (see module docstring for the forms and their order)."""
    boxes = boxed_answers(completion)
    tail_start = max(0, len(completion) - 20_000)
    tail = completion[tail_start:]
    if boxes.answers:
        answers = boxes.answers
        stated = _final_statement(tail, boxes.starts[0] + 1 - tail_start)
        if stated is not None:  # boxes before the final statement were intermediate results
            statement, start = stated
            answers = tuple(
                a for a, at in zip(boxes.answers, boxes.starts, strict=True) if at > start + tail_start
            )
            if not answers:
                return statement
        parts = tuple(as_choice(answer) for answer in answers)
        return Extraction(", ".join(dict.fromkeys(parts)), "boxed", parts if len(parts) > 1 else ())
    final_answer = _final_answer(tail)
    if final_answer is not None:
        return Extraction(as_choice(_strip_answer_tail(final_answer[0])), "final_answer")
    heading = _final_heading(tail)
    if heading is not None:
        return Extraction(as_choice(heading[0]), "final_answer")
    gsm8k = list(_GSM8K.finditer(tail))
    if gsm8k:
        return Extraction(as_choice(gsm8k[-1].group(1).strip().rstrip(".")), "gsm8k")
    phrase = _answer_phrase(tail)
    if phrase is not None:
        return Extraction(as_choice(phrase[0]), "answer_phrase")
    if fallback_last_number:
        numbers = list(_NUMBER.finditer(tail))
        if numbers:
            return Extraction(numbers[-1].group(0), "last_number")
    return Extraction(None, "none")


def reference_answers(reference: str) -> tuple[str, ...]:
    """The answer parts of a reference: after GSM8K's `####`, every `\\boxed{}` of a solution (several
    boxes are one answer list, never cut to the last), or all of it."""
    if "####" in reference:
        return (reference.rsplit("####", 1)[1].strip(),)
    boxes = boxed_answers(reference).answers
    if boxes:
        return tuple(dict.fromkeys(boxes))
    return (as_choice(reference.strip()),)


def extract_reference(reference: str) -> str:
    """The answer part of a reference as one text (several boxed answers joined by ", ")."""
    return ", ".join(reference_answers(reference))
