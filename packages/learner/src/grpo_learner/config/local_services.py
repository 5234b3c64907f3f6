"""`[local_services]`: the reward and rollout services `grpo train` starts itself when given no address."""

from __future__ import annotations

from typing import Literal

from grpo_common.config import ConfigSection
from pydantic import Field


class LocalServicesConfig(ConfigSection):
    """When rollout.addresses is empty, `grpo train` starts one reward and one rollout service itself.

    They run as child processes on free loopback ports with the same binaries and flags a user
    would start by hand (`grpo-reward serve`, `grpo-rollout serve`), serving model.name_or_path.
    """

    generator: str = Field(
        "hf", description="the rollout service's generator backend (`grpo-rollout serve --help` lists them)"
    )
    device: str = Field("cpu", description="hf backend: torch device of the rollout service")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(None, description="hf: model dtype")
    torch_threads: int | None = Field(
        None, ge=1, description="`--torch-threads` of the rollout service (None: cpu_threads.py decides)"
    )
    reward_workers: int = Field(2, ge=1, description="verification worker processes")
    rollout_args: list[str] = Field(default_factory=list, description="extra `grpo-rollout serve` flags")
    reward_args: list[str] = Field(
        default_factory=list, description="extra `grpo-reward serve` flags, e.g. --reward-model NAME=PATH"
    )
    ready_timeout_s: float = Field(600.0, gt=0, description="how long a service may take to start")
