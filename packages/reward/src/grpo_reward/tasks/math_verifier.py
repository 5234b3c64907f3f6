"""Task `math` (the default): the sympy-based answer verifier, with its in-process quick path.

Components: `correctness` (1 if the extracted answer equals the reference) and `format` (1 if the answer
came in an explicit form such as \\boxed{}). The field `fallback_last_number` (set by RewardSpec, or by a
row) grades the last number when no explicit answer is found.
"""

from __future__ import annotations

from typing import Any

from grpo_reward.check import check, quick_check
from grpo_reward.tasks.contract import TASKS, TaskScore, Undecided
from grpo_reward.verdict import Verdict


def _task_score(verdict: Verdict) -> TaskScore:
    return TaskScore(
        reward=verdict.reward,
        correct=verdict.correct,
        components=verdict.components,
        reason=verdict.reason,
        extracted=verdict.extracted,
    )


class MathTask:
    """`math`: `check` in the worker; `quick_check` (plain numbers, identical strings) in the service."""

    def __call__(
        self, completion: str, reference: str, *, fallback_last_number: bool = False, **_: Any
    ) -> TaskScore:
        return _task_score(check(completion, reference, fallback_last_number=bool(fallback_last_number)))

    def quick(
        self, completion: str, reference: str, *, fallback_last_number: bool = False, **_: Any
    ) -> TaskScore | Undecided:
        """Cheap and bounded: size checks, extraction, and exact comparison of plain numbers only."""
        outcome = quick_check(completion, reference, fallback_last_number=bool(fallback_last_number))
        if isinstance(outcome, Verdict):
            return _task_score(outcome)
        return Undecided(extracted=outcome.answer)


MATH = TASKS.register("math")(MathTask())
