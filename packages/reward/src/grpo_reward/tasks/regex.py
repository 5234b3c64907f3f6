"""Task `regex`: the stated answer must fullmatch a regular expression.

The pattern is the row's `pattern` field when given, else the reference. Python `re` cannot be
interrupted, so a catastrophic pattern (`(a+)+$` on a long answer) is contained by the worker's CPU-time
limit like any other slow task. Field `ignore_case` (bool) matches case-insensitively. Components:
`correctness`, `format` (1 if the answer was explicit).
"""

from __future__ import annotations

import re
from typing import Any

from grpo_reward.tasks.answer_text import stated_answer, text_score
from grpo_reward.tasks.contract import TASKS, TaskScore


@TASKS.register("regex")
def regex(
    completion: str, reference: str, *, pattern: str | None = None, ignore_case: bool = False, **_: Any
) -> TaskScore:
    source = reference if pattern is None else pattern
    if not isinstance(source, str):
        raise ValueError(f"the field 'pattern' must be a string, got {type(source).__name__}")
    try:
        compiled = re.compile(source, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        return TaskScore(reward=0.0, correct=False, reason=f"unusable pattern {source[:80]!r}: {error}")
    answer, explicit = stated_answer(completion)
    correct = compiled.fullmatch(answer.strip()) is not None
    return text_score(correct, explicit, answer, "matches" if correct else "does not match the pattern")
