"""The `[model.lora]` section: train low-rank adapters instead of every weight.

    W' = W + (alpha / rank) * B @ A      A: [rank, in], B: [out, rank] (B starts at 0, so W' = W)

rank 0 (the default, or no section at all) is full fine-tuning, as without LoRA.
"""

from __future__ import annotations

from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field, field_validator

ALL_LINEAR = "all-linear"


class LoraConfig(ConfigSection):
    rank: int = Field(0, ge=0, description="adapter rank r; 0: no adapters, full fine-tuning")
    alpha: float | None = Field(None, gt=0, description="scale alpha / r of B @ A; None: 2 x rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        ALL_LINEAR,
        description='module names to adapt (e.g. ["q_proj", "v_proj"]) or all-linear: every '
        "linear layer of the decoder (not lm_head)",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, targets: list[str] | str) -> list[str] | str:
        if isinstance(targets, list) and (not targets or not all(name.strip() for name in targets)):
            raise ValueError(
                f'{targets!r}: name at least one module, e.g. ["q_proj", "v_proj"], or use "all-linear"'
            )
        return targets

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale_alpha(self) -> float:
        """alpha as given, else 2 x rank (a scale of 2, the common choice)."""
        return self.alpha if self.alpha is not None else 2.0 * self.rank
