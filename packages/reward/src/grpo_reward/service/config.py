"""The reward service's one typed config: file < environment (GRPO_REWARD_*) < CLI flags."""

from __future__ import annotations

from typing import Annotated

from grpo_common.config import ConfigSection
from grpo_common.row_fields import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH
from grpo_common.sandbox.slots import SandboxSlotsConfig
from grpo_common.server import ServerConfig
from pydantic import Field

from grpo_reward.models.config import JudgeConfig, RewardModelConfig
from grpo_reward.pool import DEFAULT_MEMORY_LIMIT_MB

DEFAULT_PORT = 50053
ENV_PREFIX = "GRPO_REWARD_"


class RewardServiceConfig(ConfigSection):
    """Settings of `grpo-reward serve`."""

    server: ServerConfig = Field(default_factory=lambda: ServerConfig(port=DEFAULT_PORT))
    workers: int | None = Field(None, ge=1, description="verification worker processes (default: CPU count)")
    lane_workers: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="worker processes of a task lane (e.g. code) when not `workers`; each lane has its own",
    )
    task_lanes: dict[str, str] = Field(
        default_factory=dict,
        description='task name -> worker lane, over the lane the task asks for (e.g. {"my_judge": "slow"})',
    )
    max_batch_items: int = Field(4096, ge=1, description="largest number of items one Score call may carry")
    default_timeout_s: float = Field(
        1.0, gt=0, le=10, description="per-item CPU-time limit in seconds when a spec gives 0"
    )
    plugins: list[str] = Field(
        default_factory=list, description="modules (or module:function) whose reward tasks to load"
    )
    worker_memory_mb: int = Field(DEFAULT_MEMORY_LIMIT_MB, ge=64, description="address-space cap per worker")
    max_fields_bytes: int = Field(DEFAULT_MAX_BYTES, ge=2, description="largest ScoreItem.fields_json")
    max_fields_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, description="deepest nesting in fields_json")
    reward_models: list[RewardModelConfig] = Field(
        default_factory=list, description="sequence classifiers requests may name (needs grpo-reward[models])"
    )
    judges: list[JudgeConfig] = Field(
        default_factory=list, description="OpenAI-compatible judges requests may name (grpo-reward[models])"
    )
    log_level: str = "INFO"
    sandbox: SandboxSlotsConfig = Field(default_factory=SandboxSlotsConfig)
    allow_unsafe_code: bool = Field(
        False,
        description="run `code` programs with rlimits only, network open, where namespaces are unavailable",
    )
