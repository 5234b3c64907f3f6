"""The learner's `[reward]` section: what the reward service computes, sent as grpo.v1.RewardSpec."""

from __future__ import annotations

import math
from typing import Literal

from grpo_common.config import ConfigSection
from grpo_common.registry import MAX_NAME_CHARS
from grpo_common.reward_terms import BUILT_IN_TERMS, LENGTH, MAX_SCORE_TIMEOUT_S
from pydantic import Field, field_validator, model_validator

BUILTIN_COMPONENTS = BUILT_IN_TERMS  # the reward service registers them (grpo_reward.terms)


class RewardComponentConfig(ConfigSection):
    """One weighted term: a built-in (correctness, format, length) or a reward task by name.

    `name` may be any task the reward service knows: a built-in task, an entry point of group
    `grpo.tasks`, or `module:function`; its reward on the same completion is the term.
    """

    name: str = Field(..., min_length=1, max_length=MAX_NAME_CHARS)
    weight: float = Field(1.0, allow_inf_nan=False)
    max_completion_tokens: int | None = Field(None, gt=0, description="length only: L_max")
    overlong_buffer_tokens: int = Field(0, ge=0, description="length only: the soft buffer B")

    @model_validator(mode="after")
    def _length_fields(self) -> RewardComponentConfig:
        if self.name == LENGTH:
            if self.max_completion_tokens is None:
                raise ValueError("the length component needs max_completion_tokens (> 0)")
            if self.overlong_buffer_tokens > self.max_completion_tokens:
                raise ValueError(
                    f"length: overlong_buffer_tokens {self.overlong_buffer_tokens} exceeds "
                    f"max_completion_tokens {self.max_completion_tokens}"
                )
        elif self.max_completion_tokens is not None or self.overlong_buffer_tokens:
            raise ValueError(
                f"component {self.name!r}: max_completion_tokens / overlong_buffer_tokens apply to "
                "'length' only"
            )
        return self


class RewardConfig(ConfigSection):
    """The reward of every completion: reward = sum_k weight_k * term_k over `components`.

    Empty `components`: the reward service's default (correctness alone, weight 1).
    """

    task: str = Field(
        "", description="default reward task of every row ('' = math); a row's own `task` column wins"
    )
    components: list[RewardComponentConfig] = Field(default_factory=list)
    timeout_s: float = Field(
        0.0,
        ge=0,
        le=MAX_SCORE_TIMEOUT_S,
        description="per-item CPU-time limit of scoring; 0: the reward server's default",
    )
    fallback_last_number: bool = Field(False, description="math: take the last number if no explicit answer")
    on_timeout: Literal["drop_group", "zero"] = Field(
        "drop_group",
        description="a completion whose scoring timed out: drop its group (re-sent when the feed refills) "
        "or train on it as reward 0",
    )
    max_fields_bytes: int = Field(
        1 << 20, ge=2, description="largest JSON of a row's extra columns (the reward server's default)"
    )

    @field_validator("components")
    @classmethod
    def _unique_names(cls, components: list[RewardComponentConfig]) -> list[RewardComponentConfig]:
        names = [c.name for c in components]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"each component may appear once; repeated: {repeated}")
        return components

    @model_validator(mode="after")
    def _representable(self) -> RewardConfig:
        if not math.isfinite(sum(abs(c.weight) for c in self.components)):
            raise ValueError("the component weights' sum is not a finite number")
        return self

    def component_weights(self) -> dict[str, float]:
        """name -> weight of every component, as the reward service applies them."""
        return {c.name: c.weight for c in self.components}
