"""Environments for multi-turn episodes: the contract and the registry (`ENVIRONMENTS`).

Built-ins register themselves in their modules with `@ENVIRONMENTS.register("name")`; plugins are entry
points in group `grpo.environments` or what the operator loads with `grpo-rollout serve --plugin`.
"""

from grpo_rollout.environments.contract import (
    DEFAULT_MAX_TURNS,
    ENVIRONMENTS,
    SINGLE_TURN,
    Environment,
    EnvironmentFactory,
    EpisodeStart,
    ModelTurn,
    StepResult,
)

# The built-ins register themselves on import (after the contract, which they import).
from grpo_rollout.environments import calculator  # noqa: F401  isort: skip

__all__ = [
    "DEFAULT_MAX_TURNS",
    "ENVIRONMENTS",
    "SINGLE_TURN",
    "Environment",
    "EnvironmentFactory",
    "EpisodeStart",
    "ModelTurn",
    "StepResult",
]
