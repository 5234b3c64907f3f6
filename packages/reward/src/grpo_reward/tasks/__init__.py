"""Reward tasks: the registry that the service, the CLI and the workers dispatch through by name.

A task grades one completion against its reference and the row's fields. Its function has the plugin
contract (`grpo_reward.tasks.contract`): `score(completion: str, reference: str, **fields)` returning a
float, a bool or a `TaskScore`. Built-ins register here with `@TASKS.register("name")`; plugins are entry
points in group `grpo.tasks` or the `module:function` a reward service operator loaded with `--plugin`.
"""

from __future__ import annotations

from grpo_reward.tasks import code as _code  # noqa: F401  (registers "code")
from grpo_reward.tasks.contract import TASKS, ScoreFunction, TaskScore

__all__ = ["TASKS", "ScoreFunction", "TaskScore"]
