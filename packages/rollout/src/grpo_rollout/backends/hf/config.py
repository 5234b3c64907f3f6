"""`[hf]`: the transformers backend's section of the rollout config."""

from __future__ import annotations

from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field


class HFConfig(ConfigSection):
    device: str = Field("cpu", description="torch device for the model: cpu, cuda, cuda:1, ...")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    torch_threads: int | None = Field(None, ge=1, description="intra-op CPU threads (default: torch's)")
