"""`[rollout]` (+ `[rollout.sampling]`): the rollout services the learner asks for groups, and how."""

from __future__ import annotations

from pathlib import Path

from grpo_common.addresses import parse_addresses
from grpo_common.channel import ChannelConfig
from grpo_common.config import ConfigSection
from pydantic import Field, field_validator

from grpo_learner.config.environment import EnvironmentConfig


class SamplingConfig(ConfigSection):
    temperature: float = Field(1.0, gt=0, description="> 0: the learner needs the sampling distribution")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1, description="-1 or 0: off")
    max_new_tokens: int = Field(256, gt=0)
    stop_token_ids: list[int] = Field(default_factory=list)


class RolloutConfig(ConfigSection):
    addresses: list[str] = Field(default_factory=list, description="host:port of every rollout service")
    group_size: int = Field(8, ge=2, description="completions per prompt (G), at least 2")
    prompts_per_step: int = Field(16, ge=1)
    max_staleness: int = Field(0, ge=0, description="k: generation for step n+k may run while training n")
    partial: bool = Field(
        False,
        description="partial rollouts (max_staleness >= 1): a weight push pauses in-flight completions at a "
        "token boundary and they continue under the new version, each token's version recorded",
    )
    request_timeout_s: float = Field(600.0, gt=0, description="deadline of one Generate call")
    # A restarted rollout service needs time to load its model and receive the current weights:
    # the defaults keep re-sending for about 3 minutes before the step fails.
    max_attempts: int = Field(40, ge=1, description="tries per prompt before the step fails")
    backoff_s: float = Field(0.5, gt=0, description="first re-send delay, doubled per attempt")
    max_backoff_s: float = Field(5.0, gt=0, description="cap of the re-send delay")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)  # environment.py
    channel: ChannelConfig = Field(default_factory=ChannelConfig)
    # Many rollout services (grpo_learner.rollouts.pool): health/load probes and hot-add/remove.
    addresses_file: Path | None = Field(
        None, description="host:port per line, re-read while training: new lines join, removed ones drain"
    )
    addresses_poll_s: float = Field(2.0, gt=0, description="how often addresses_file is checked for changes")
    probe_interval_s: float = Field(
        0.5, ge=0, description="health + load (GetInfo) probe period per service; 0: no probes"
    )
    probe_timeout_s: float = Field(2.0, gt=0, description="deadline of one probe RPC")
    unhealthy_after: int = Field(3, ge=1, description="failed probes in a row before a service is DOWN")

    @field_validator("addresses")
    @classmethod
    def _host_port(cls, addresses: list[str]) -> list[str]:
        return parse_addresses(addresses)
