"""Reward tasks: the registry that the service, the CLI and the workers dispatch through by name.

A task grades one completion against its reference and the row's fields. Its function has the plugin
contract (`grpo_reward.tasks.contract`): `score(completion: str, reference: str, **fields)` returning a
float, a bool or a `TaskScore`. Built-ins register here with `@TASKS.register("name")` in their modules,
imported below; plugins are entry points in group `grpo.tasks` or what a reward service operator loaded
with `--plugin` (`grpo_reward.tasks.plugins.load_plugins`).
"""

from __future__ import annotations

from grpo_reward.tasks import choice, code, exact, math_verifier, regex
from grpo_reward.tasks.contract import TASKS, ScoreFunction, TaskScore, TaskTimedOut, Undecided

__all__ = [
    "TASKS",
    "ScoreFunction",
    "TaskScore",
    "TaskTimedOut",
    "Undecided",
    "choice",
    "code",
    "exact",
    "math_verifier",
    "regex",
]
