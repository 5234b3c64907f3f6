"""The contract between the reward service and a reward task (built-in or plugin).

    def score(completion: str, reference: str, **fields) -> float | bool | TaskScore

`fields` are the dataset row's extra columns (grpo.v1.ScoreItem.fields_json), e.g. `tests` for code or
`choices` for multiple choice. A float is the reward (correct when >= 1); a bool is correct/incorrect
(reward 1/0); a `TaskScore` carries components and a reason as well. A task runs inside a killable worker
process under the item's CPU-time limit, so it may be slow or crash: that costs its item, never the service.

A task may also have a `quick(completion, reference, **fields)` method returning a `TaskScore` or
`Undecided`: it runs in the service process, before any worker, so it must be provably cheap (linear in
the input, no sympy, no user code). The math task uses it to grade plain numbers without a worker.

A task may name its `lane` (a string attribute): the group of worker processes that grades it. Tasks
without one share lane `DEFAULT_LANE`. A slow task (one that runs programs, like `code`, or calls a model)
takes its own lane, so that a burst of it never holds cheap items in a queue (`grpo_reward.pool`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grpo_common.registry import Registry

from grpo_reward.verdict import Verdict


@dataclass(frozen=True)
class TaskScore:
    """A task's verdict on one completion.

    `reward` is the task's score (1 = fully right, 0 = wrong; a graded task may give a fraction);
    `correct` defaults to reward >= 1; `components` are named sub-scores logged as rewards/<name>/mean;
    `extracted` is the answer the task read from the completion, if it reads one.
    """

    reward: float
    correct: bool | None = None
    components: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    extracted: str | None = None


class TaskTimedOut(Exception):
    """Raised by a task whose own wall-clock backstop fired (a sandboxed program that slept or starved):
    the item comes back `timed_out` with this message, like one the worker pool killed, never as wrong."""


@dataclass(frozen=True)
class Undecided:
    """A quick path that could not decide; what it learned stays for the item's timeout verdict."""

    extracted: str | None = None


ScoreFunction = Callable[..., "float | bool | TaskScore"]

TASKS: Registry[ScoreFunction] = Registry("reward task", "grpo.tasks")

DEFAULT_LANE = "default"


def lane_of(task: ScoreFunction) -> str:
    """The worker lane a task asked for with its `lane` attribute; DEFAULT_LANE when it names none."""
    lane = getattr(task, "lane", None)
    return lane if isinstance(lane, str) and lane else DEFAULT_LANE


def as_task_score(result: Any) -> TaskScore:
    """A task's return value as a TaskScore; TypeError for anything the contract does not allow."""
    if isinstance(result, TaskScore):
        return result
    if isinstance(result, bool):
        return TaskScore(reward=1.0 if result else 0.0, correct=result)
    if isinstance(result, int | float):
        return TaskScore(reward=float(result))
    raise TypeError(f"a reward task must return float, bool or TaskScore, not {type(result).__name__}")


def score_verdict(score: TaskScore) -> Verdict:
    """The Verdict of a task's score; ValueError when the reward or a component is not a finite number."""
    values = {"reward": score.reward, **{f"components[{name!r}]": v for name, v in score.components.items()}}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    correct = score.reward >= 1 if score.correct is None else bool(score.correct)
    components = {str(name): float(value) for name, value in score.components.items()}
    return Verdict(correct, float(score.reward), score.extracted, score.reason, components)
