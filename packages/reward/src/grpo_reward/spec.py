"""Reward components and how a RewardSpec weighs them (the semantics of grpo.v1.RewardSpec).

    reward = correctness_weight * correctness + format_weight * format + length_weight * length

- correctness: 1 if the extracted answer equals the reference, else 0.
- format: 1 if a final answer was given in an explicit form (\\boxed{}, "####", "The answer is", ...), else 0.
- length: DAPO's soft overlong punishment. With L = completion tokens, L_max = max_completion_tokens and
  B = overlong_buffer_tokens: 0 for L <= L_max - B, (L_max - B - L) / B for L_max - B < L <= L_max,
  and -1 beyond L_max. Unknown length (0 tokens) is never penalised.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grpo_reward.verdict import Verdict

MAX_TIMEOUT_S = 10.0


class RewardSpec(BaseModel):
    """Which components count and how much; defaults are the documented defaults of an absent spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correctness_weight: float = Field(1.0, allow_inf_nan=False)
    format_weight: float = Field(0.0, allow_inf_nan=False)
    length_weight: float = Field(0.0, allow_inf_nan=False)
    max_completion_tokens: int = Field(0, ge=0)
    overlong_buffer_tokens: int = Field(0, ge=0)
    fallback_last_number: bool = False
    timeout_s: float = Field(1.0, gt=0, le=MAX_TIMEOUT_S, description="per-item verification time limit")

    @model_validator(mode="after")
    def _length_needs_a_maximum(self) -> RewardSpec:
        if self.length_weight != 0 and self.max_completion_tokens <= 0:
            raise ValueError("length_weight needs max_completion_tokens > 0")
        if self.overlong_buffer_tokens > self.max_completion_tokens:
            raise ValueError("overlong_buffer_tokens must not exceed max_completion_tokens")
        return self


def overlong_penalty(tokens: int, max_tokens: int, buffer_tokens: int) -> float:
    """DAPO soft overlong punishment in [-1, 0] (formula in the module docstring)."""
    if tokens <= 0 or max_tokens <= 0:
        return 0.0
    start = max_tokens - buffer_tokens
    if tokens <= start:
        return 0.0
    if tokens > max_tokens or buffer_tokens == 0:
        return -1.0
    return (start - tokens) / buffer_tokens


def apply_spec(verdict: Verdict, spec: RewardSpec, completion_tokens: int = 0) -> Verdict:
    """The verdict with its reward and components computed under `spec`."""
    correctness = 1.0 if verdict.correct else 0.0
    components = {"correctness": correctness}
    reward = spec.correctness_weight * correctness
    if spec.format_weight != 0:
        components["format"] = verdict.components.get("format", 0.0)
        reward += spec.format_weight * components["format"]
    if spec.length_weight != 0:
        components["length"] = overlong_penalty(
            completion_tokens, spec.max_completion_tokens, spec.overlong_buffer_tokens
        )
        reward += spec.length_weight * components["length"]
    assert math.isfinite(reward)
    return replace(verdict, reward=reward, components=components)
