"""The learner's `[rollout.environment]` section: multi-turn episodes, sent as grpo.v1.EnvironmentSpec.

With a `name`, every completion is an episode in that environment on the rollout service (the model
acts, the environment answers, until the model stops, the environment is done, `max_turns` model
turns were taken or rollout.sampling.max_new_tokens, which counts model and environment tokens, is
spent). A row's own `env` column overrides the name for that row ("none": single-turn). The rollout
service finds environments by name (built-ins, entry points, `grpo-rollout serve --plugin`): the
learner cannot check a name it does not run, so the service does (a refused request stops the run
with its message).
"""

from __future__ import annotations

import json
from typing import Any

from grpo_common.config import ConfigSection
from pydantic import Field, field_validator


class EnvironmentConfig(ConfigSection):
    name: str = Field(
        "",
        max_length=200,
        description="registered environment of every row ('' or 'none': single-turn); a row's `env` wins",
    )
    max_turns: int = Field(8, ge=1, le=1024, description="most model turns per episode")
    max_turn_tokens: int | None = Field(
        None, gt=0, description="most tokens of one model turn; None: the episode's remaining budget"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="the environment's settings, sent as one JSON object"
    )

    @field_validator("name")
    @classmethod
    def _no_surrounding_space(cls, name: str) -> str:
        if name != name.strip():
            raise ValueError(f"{name!r}: an environment name has no leading or trailing spaces")
        return name

    @field_validator("config")
    @classmethod
    def _json_object(cls, config: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot be sent as JSON ({exc}); use strings, numbers, booleans, lists and tables"
            ) from None
        return config

    @property
    def enabled(self) -> bool:
        """Whether rows without an `env` column run as episodes (the embedded tool-use run asks)."""
        return self.name not in ("", "none")

    def config_json(self) -> str:
        """`config` as EnvironmentSpec.config_json ("" for an empty table: the proto's {})."""
        if not self.config:
            return ""
        return json.dumps(self.config, allow_nan=False, separators=(",", ":"), sort_keys=True)
