"""`[model]`: the policy to train (and `[model.lora]`, config/lora.py)."""

from __future__ import annotations

from grpo_common.config import ConfigSection
from pydantic import Field

from grpo_learner.config.lora import LoraConfig


class ModelConfig(ConfigSection):
    name_or_path: str = Field(..., min_length=1, description="HF hub name or local directory")
    tokenizer: str | None = Field(None, description="defaults to name_or_path")
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    lora: LoraConfig = Field(default_factory=LoraConfig)  # [model.lora], see config/lora.py
