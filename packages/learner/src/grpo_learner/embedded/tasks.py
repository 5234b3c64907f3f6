"""The tasks an embedded run can be about, found by name in `EMBEDDED_TASKS` (the `[embedded]` section).

An embedded run (`grpo train` with no model named, or `grpo train --config FILE` where FILE has an
`[embedded]` section) builds its own tokenizer and tiny model, warms it up on the task's transcripts
and trains with GRPO on the task's problems. A task says what differs between runs: its problems, its
warm-up transcripts (segments of text, each trained on or not: an environment's observations are
not), the tokens its markup needs, and the learner settings it needs on top of the embedded defaults
(e.g. the environment its episodes run in). Everything else is one code path (default_run.py).

    arithmetic  `37+45=` -> `\\boxed{82}` (the default run)
    tool-use    `347*58=` -> `<calc>347*58</calc><result>20126</result>\\boxed{20126}` (a calculator)
    preference  `17 kg=` -> `17 kg` (a reward model trained on preference pairs is the reward)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grpo_common.config import ConfigSection
from grpo_common.registry import Registry
from pydantic import Field, field_validator

from grpo_learner.embedded.preference_task import UNIT_RATE, preference_pairs, unit_problems, unit_transcript
from grpo_learner.embedded.reward_model import RewardModelRecipe
from grpo_learner.embedded.task import Problem, solution_text, split_problems
from grpo_learner.embedded.tool_task import TOOL_TOKENS, multiplication_problems, tool_transcript
from grpo_learner.embedded.warmup import Transcript
from grpo_learner.eval.runner import GREEDY_CHARS, GREEDY_REWARD


@dataclass(frozen=True)
class EmbeddedTask:
    title: str  # of the end table
    split: Callable[[int], tuple[list[Problem], list[Problem]]]  # seed -> (train, held-out)
    transcript: Transcript
    warmup_steps: int  # supervised steps before GRPO, unless [embedded] warmup_steps says otherwise
    extra_tokens: tuple[str, ...] = ()  # added to the char tokenizer, one token each
    settings: Mapping[str, Any] = field(default_factory=dict)  # learner settings over EMBEDDED_DEFAULTS
    reward_model: RewardModelRecipe | None = None  # trained before the services start, served by name
    labels: Mapping[str, str] = field(default_factory=dict)  # end-table rows: eval metric -> label


EMBEDDED_TASKS: Registry[EmbeddedTask] = Registry("embedded task")

EMBEDDED_TASKS.add(
    "arithmetic",
    EmbeddedTask(
        title="GRPO on the embedded default (tiny model, synthetic arithmetic)",
        split=split_problems,
        transcript=lambda problem, rng: [(solution_text(problem, rng), True)],
        warmup_steps=500,
    ),
)

TOOL_RATE = 0.35  # share of the tool-use warm-up transcripts that call the calculator

EMBEDDED_TASKS.add(
    "tool-use",
    EmbeddedTask(
        title="GRPO on the embedded tool-use task (tiny model, multiplication, a calculator)",
        split=multiplication_problems,
        transcript=partial(tool_transcript, tool_rate=TOOL_RATE),
        warmup_steps=200,
        extra_tokens=TOOL_TOKENS,
        # the episode budget (max_new_tokens) counts the calculator's tokens too
        settings={
            "run_dir": "runs/tool-use",
            "rollout": {
                "sampling": {"max_new_tokens": 32},
                "environment": {"name": "calculator", "max_turns": 3},
            },
        },
    ),
)


EMBEDDED_TASKS.add(
    "preference",
    EmbeddedTask(
        title="GRPO against a learned reward model (tiny model, answers that state their units)",
        split=unit_problems,
        transcript=partial(unit_transcript, unit_rate=UNIT_RATE),
        warmup_steps=200,
        reward_model=RewardModelRecipe(name="prefer", pairs=preference_pairs, steps=100),
        settings={
            "run_dir": "runs/preference",
            "rollout": {"sampling": {"max_new_tokens": 8, "temperature": 1.0}},
            "reward": {"components": [{"name": "prefer", "weight": 1.0}]},  # the reward model alone
            "loss": {"beta": 0.1},  # KL to the warm-up model: RLHF's guard against gaming the reward model
        },
        labels={
            "greedy_accuracy": "states its units (rule, greedy)",
            GREEDY_REWARD: "reward model score (greedy, mean)",
            GREEDY_CHARS: "completion length (chars, greedy)",
        },
    ),
)


class EmbeddedConfig(ConfigSection):
    """`[embedded]`: which task an embedded run is about, and how long its warm-up is."""

    task: str = Field("arithmetic", description="an EMBEDDED_TASKS name: arithmetic, tool-use, preference")
    warmup_steps: int | None = Field(None, ge=0, description="supervised warm-up steps; None: the task's")

    @field_validator("task")
    @classmethod
    def _registered(cls, name: str) -> str:
        EMBEDDED_TASKS.get_item(name)  # UnknownName lists the tasks; module:attribute is imported
        return name

    @property
    def embedded_task(self) -> EmbeddedTask:
        return EMBEDDED_TASKS[self.task]

    @property
    def steps(self) -> int:
        return self.embedded_task.warmup_steps if self.warmup_steps is None else self.warmup_steps
