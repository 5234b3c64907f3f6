"""`[sglang]`: the SGLang backend's section of the rollout config (workers to use, or one to launch)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field, model_validator


class SGLangConfig(ConfigSection):
    urls: list[str] = Field(
        default_factory=list, description="SGLang worker URLs; weight updates go to each of them"
    )
    router_url: str | None = Field(None, description="SGLang router for /generate (workers get the updates)")
    weight_dir: Path | None = Field(
        None,
        description="where pushed weights are written for update_weights_from_disk; must be readable "
        "by every worker (default: next to the model directory)",
    )
    pause_mode: Literal["abort", "retract", "in_place"] = "abort"
    host_copy: bool = Field(
        True,
        description="keep the served weights in host RAM (one model in the push dtype) so delta pushes "
        "apply here; off: full pushes only",
    )
    request_timeout_s: float = Field(600.0, gt=0)
    health_timeout_s: float = Field(900.0, gt=0, description="wait for /health at start-up")
    # Used only when no url is given: launch `python -m sglang.launch_server` as a child.
    tp_size: int = Field(1, ge=1)
    dp_size: int = Field(1, ge=1)
    mem_fraction_static: float = Field(0.7, gt=0, le=1)
    launch_port: int = Field(0, ge=0, le=65535, description="port of the launched server (0 = free)")
    extra_args: list[str] = Field(default_factory=list, description="more sglang.launch_server flags")
    lora_max_rank: int | None = Field(
        None, ge=1, description="LoRA adapter pushes: --enable-lora --max-lora-rank R (>= the learner's r)"
    )
    lora_target_modules: list[str] = Field(
        default_factory=list, description="--lora-target-modules (with lora_max_rank): the learner's targets"
    )

    @model_validator(mode="after")
    def _lora_needs_rank_and_modules(self) -> SGLangConfig:
        """SGLang started without --lora-paths needs both to size its LoRA memory pool."""
        if (self.lora_max_rank is None) != (not self.lora_target_modules):
            raise ValueError(
                "sglang.lora_max_rank and sglang.lora_target_modules go together: SGLang needs both "
                "(--max-lora-rank, --lora-target-modules) to load adapters after start-up"
            )
        return self
