"""Task `exact`: the stated answer equals the reference after normalisation (case, spaces, Unicode forms).

The stated answer is the explicit final answer (`\\boxed{}`, "The answer is ...") or, without one, the
whole completion. Components: `correctness`, `format` (1 if the answer was explicit).
"""

from __future__ import annotations

from typing import Any

from grpo_reward.tasks.answer_text import normalize_words, stated_answer, text_score
from grpo_reward.tasks.contract import TASKS, TaskScore


@TASKS.register("exact")
def exact(completion: str, reference: str, **_: Any) -> TaskScore:
    answer, explicit = stated_answer(completion)
    correct = normalize_words(answer) == normalize_words(reference)
    return text_score(correct, explicit, answer, "equal after normalisation" if correct else "different text")
