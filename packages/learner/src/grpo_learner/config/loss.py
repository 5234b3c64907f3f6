"""`[loss]` (+ `[loss.advantage]`, `[loss.sampler_correction]`): the GRPO objective.

Registry names (`loss_type`, `scaling`, `combine`, `level`) are plain strings here, so the config
imports no torch; `grpo_learner.training.registered_names` checks them against their registries
before anything is built."""

from __future__ import annotations

from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field


class AdvantageConfig(ConfigSection):
    scaling: str = Field("group", description="a registered advantage estimator (grpo/advantages.py)")
    eps: float = Field(1e-4, gt=0)
    reward_weights: dict[str, float] = Field(
        default_factory=dict, description="component name -> weight; empty: the completion's scalar reward"
    )
    combine: str = Field("sum_then_normalize", description="a registered combine mode (grpo/advantages.py)")


class SamplerCorrectionConfig(ConfigSection):
    """Importance weight pi_old / pi_sampler against the sampler's logprobs (TIS / masking)."""

    mode: Literal["none", "truncate", "mask"] = "none"
    level: str = Field("token", description="a registered sampler weight level (grpo/losses.py)")
    cap: float = Field(2.0, gt=1, description="truncate: w <- min(w, cap); mask: drop w outside [1/cap, cap]")
    tokens: Literal["all", "stale"] = Field(
        "all",
        description="all: every token's sampler mismatch (numerics and staleness); stale: only tokens "
        "an older policy version sampled (a token of the learner's own version weighs 1)",
    )


class LossConfig(ConfigSection):
    loss_type: str = Field("grpo", description="a registered loss (grpo/losses.py; `grpo train --help`)")
    epsilon_low: float = Field(0.2, ge=0, lt=1)
    epsilon_high: float = Field(0.2, ge=0, description="clip-higher (DAPO: 0.28)")
    delta: float | None = Field(None, gt=1, description="two-sided clip: ratio capped at delta when A < 0")
    beta: float = Field(0.0, ge=0, description="k3 KL weight; 0 creates no reference model")
    num_iterations: int = Field(1, ge=1, description="mu: optimizer steps on each batch")
    mask_truncated: bool = Field(False, description="completions that hit max_new_tokens get no loss")
    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig)
    sampler_correction: SamplerCorrectionConfig = Field(default_factory=SamplerCorrectionConfig)
