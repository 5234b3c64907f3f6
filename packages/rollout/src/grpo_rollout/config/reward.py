"""`[reward]`: the reward service this rollout service scores with, and how (`RewardClient`)."""

from __future__ import annotations

from grpo_common.addresses import parse_address
from grpo_common.channel import ChannelConfig
from grpo_common.config import ConfigSection
from pydantic import Field, field_validator


class RewardSettings(ConfigSection):
    address: str = Field(..., description="host:port of the RewardService")

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        return parse_address(address)

    timeout_s: float = Field(30.0, gt=0, description="deadline of one Score attempt")
    attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0)
    max_batch_items: int = Field(512, ge=1, description="items per Score call; larger batches are split")
    channel: ChannelConfig = Field(default_factory=ChannelConfig)
