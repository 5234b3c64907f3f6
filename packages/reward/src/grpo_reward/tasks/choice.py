"""Task `choice`: multiple choice, graded by option letter or by option text.

The reference is a letter (`C`, `(C)`) or an option's text. The row's `choices` field, when given, is
the options in order (a list: A, B, C, ...) or a mapping letter -> text; with it a completion may answer
with the text of an option instead of its letter, and a text reference is turned into its letter.
The answer is the explicit final answer (`\\boxed{C}`, "The answer is (C)"), else the last parenthesised
letter `(C)` in the completion. Components: `correctness`, `format` (1 if the answer was explicit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from grpo_reward.tasks.answer_text import normalize_words, stated_answer, text_score
from grpo_reward.tasks.contract import TASKS, TaskScore

_LETTER = re.compile(r"\(?\s*([A-Za-z])\s*\)?\s*[.):]?")
_LEADING_LETTER = re.compile(r"\(?([A-Z])(?:\)|[.:])\s")
_PARENTHESISED = re.compile(r"\(([A-Z])\)")


def _options(choices: object) -> dict[str, str]:
    """{letter: normalised text} from the `choices` field (list in order, or mapping letter -> text)."""
    if choices is None:
        return {}
    if isinstance(choices, Mapping):
        pairs = [(str(letter).strip().upper(), text) for letter, text in choices.items()]
    elif isinstance(choices, Sequence) and not isinstance(choices, str) and len(choices) <= 26:
        pairs = [(chr(ord("A") + index), text) for index, text in enumerate(choices)]
    else:
        raise ValueError("the field 'choices' must be a list of at most 26 options or a letter -> text map")
    return {letter: normalize_words(str(text)) for letter, text in pairs}


def _letter(answer: str, options: dict[str, str]) -> str | None:
    """The option letter an answer names: a bare letter, a leading `C)`/`C.`, or an option's text."""
    text = answer.strip()
    bare = _LETTER.fullmatch(text)
    if bare and (not options or bare.group(1).upper() in options):
        return bare.group(1).upper()
    leading = _LEADING_LETTER.match(text)
    if leading and (not options or leading.group(1) in options):
        return leading.group(1)
    words = normalize_words(text)
    named = [letter for letter, option in options.items() if option == words]
    return named[0] if len(named) == 1 else None


@TASKS.register("choice")
def choice(completion: str, reference: str, *, choices: object = None, **_: Any) -> TaskScore:
    options = _options(choices)
    expected = _letter(reference, options)
    answer, explicit = stated_answer(completion)
    if not explicit:
        marked = _PARENTHESISED.findall(completion)
        answer = marked[-1] if marked else answer
    predicted = _letter(answer, options)
    if expected is None:  # a text reference that is no option: compare the texts
        correct = normalize_words(answer) == normalize_words(reference)
    else:
        correct = predicted == expected
    reason = f"{'right' if correct else 'wrong'} option {predicted or '?'} vs {expected or reference[:40]!r}"
    return text_score(correct, explicit, predicted or answer[:200], reason)
