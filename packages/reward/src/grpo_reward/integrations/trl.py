"""The verifier as TRL reward functions: `GRPOTrainer(..., reward_funcs=[rewards.correctness, ...])`.

TRL calls every reward function as

    reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)

where `completions` are strings (standard datasets) or lists of messages (conversational ones), and
`columns` holds every other dataset column as a list (`solution`, `answer`, ...) plus TRL's own
`trainer_state`, `log_extra`, `log_metric` (and `environments`). It wants one float per completion,
or None where the function does not apply (TRL reads it as NaN and leaves it out of that reward).

`VerifierRewards` owns one long-lived `Verifier` (its worker processes, their parsed-reference cache)
and offers its terms as such functions, each named for TRL's logs (`rewards/correctness/mean`):

    correctness   the task's reward: 1 if the final answer equals the reference (math), graded tasks give
                  a fraction
    format        1 if the final answer was given in the task's explicit form (\\boxed{}, "The answer is"),
                  else 0

A batch is graded once for all of them: the functions TRL calls one after another on the same batch
share the verdicts. An item that ran out of time is None (no information, never a made-up 0). The
reference is the first of `reference_columns` the dataset has; a `task` column picks each row's task;
the other columns of JSON types reach the task as its fields (`choices`, `tests`, ...).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from grpo_reward.verdict import Verdict
from grpo_reward.verifier import DEFAULT_TASK, Item, Verifier

REFERENCE_COLUMNS = ("solution", "answer", "reference")
TASK_COLUMN = "task"
TRL_KEYWORDS = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"})
JSON_TYPES = (str, int, float, bool, list, dict, type(None))


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """A completion as text: itself, or the content of the last assistant message of a conversation."""
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role", "assistant") == "assistant":
            content = message.get("content", "")
            if isinstance(content, list):  # content parts: keep the text ones
                return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
            return str(content)
    return ""


def _is_json(value: Any) -> bool:
    return isinstance(value, JSON_TYPES) and not (isinstance(value, float) and not math.isfinite(value))


class VerifierRewards:
    """TRL reward functions over one long-lived Verifier (see the module docstring)."""

    def __init__(
        self,
        verifier: Verifier | None = None,
        *,
        task: str = DEFAULT_TASK,
        reference_columns: Sequence[str] = REFERENCE_COLUMNS,
        workers: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._owned = verifier is None
        self.verifier = verifier or Verifier(workers=workers)
        self.task = task
        self.reference_columns = tuple(reference_columns)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._last: tuple[tuple[Item, ...], list[Verdict]] | None = None
        self.correctness = self.term("correctness", lambda verdict: verdict.reward)
        self.format = self.term("format", lambda verdict: verdict.components.get("format", 0.0))

    def close(self) -> None:
        """Stop the worker processes (only those of a Verifier this object made)."""
        if self._owned:
            self.verifier.close()

    def __enter__(self) -> VerifierRewards:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def term(self, name: str, value: Callable[[Verdict], float]) -> Callable[..., list[float | None]]:
        """A TRL reward function called `name` whose value per completion is `value(verdict)`."""

        def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
            verdicts = self.grade(completions, columns)
            return [None if verdict.timed_out else float(value(verdict)) for verdict in verdicts]

        reward.__name__ = reward.__qualname__ = name
        return reward

    def items(self, completions: Sequence[Any], columns: Mapping[str, Any]) -> list[Item]:
        """The batch as verifier items: each completion's text, reference, task and fields."""
        column = next((name for name in self.reference_columns if name in columns), None)
        if column is None:
            data = sorted(set(columns) - TRL_KEYWORDS)
            raise ValueError(
                f"no reference column: the dataset needs one of {list(self.reference_columns)} "
                f"(its columns: {data}); or pass VerifierRewards(reference_columns=[...])"
            )
        used = {column, TASK_COLUMN, *TRL_KEYWORDS}
        extra = {name: values for name, values in columns.items() if name not in used}
        tasks = columns.get(TASK_COLUMN) or [self.task] * len(completions)
        items = []
        for index, completion in enumerate(completions):
            fields = {name: values[index] for name, values in extra.items() if _is_json(values[index])}
            reference = str(columns[column][index])
            items.append(Item(completion_text(completion), reference, tasks[index] or self.task, fields))
        return items

    def grade(self, completions: Sequence[Any], columns: Mapping[str, Any]) -> list[Verdict]:
        """The batch's verdicts, graded in parallel once for all the terms TRL asks for."""
        batch = tuple(self.items(completions, columns))
        with self._lock:
            if self._last is not None and self._last[0] == batch:
                return self._last[1]
        futures = [self.verifier.submit_item(item, timeout_s=self.timeout_s) for item in batch]
        verdicts = [future.result() for future in futures]
        with self._lock:
            self._last = (batch, verdicts)
        return verdicts
