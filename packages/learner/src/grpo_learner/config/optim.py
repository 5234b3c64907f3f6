"""`[optim]`: AdamW and its learning-rate schedule."""

from __future__ import annotations

from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field, field_validator


class OptimConfig(ConfigSection):
    lr: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(0, ge=0, description="optimizer steps of linear warm-up from 0")
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="floor of linear/cosine decay, x lr")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="None: no clipping")

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"each beta must be in [0, 1), got {betas}")
        return betas
