"""Run a RolloutService in the test's event loop on a loopback port and talk to it over real gRPC."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.server import ServerConfig
from grpo_rollout.app import RunningRollout, running_rollout
from grpo_rollout.config import LimitSettings, RewardSettings, RolloutServiceConfig
from rollout_reward_standin import RewardStandin


@dataclass
class Client:
    stub: rollout_pb2_grpc.RolloutServiceStub
    rollout: RunningRollout

    async def generate(
        self, request: rollout_pb2.RolloutRequest, **kwargs: Any
    ) -> list[rollout_pb2.RolloutGroup]:
        return [group async for group in self.stub.Generate(request, timeout=60, **kwargs)]

    async def version(self) -> int:
        return (await self.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)).policy_version


def config(model_dir: Path, reward_address: str, **limits: Any) -> RolloutServiceConfig:
    return RolloutServiceConfig(
        model=str(model_dir),
        server=ServerConfig(port=0, grace_seconds=1),
        reward=RewardSettings(address=reward_address, timeout_s=5, attempts=2, backoff_s=0.05),
        limits=LimitSettings(**limits),
    )


def sglang_config(
    model_dir: Path, reward: RewardStandin, urls: list[str], tmp_path: Path, **server: Any
) -> RolloutServiceConfig:
    """`config` for the sglang backend on `urls` (stand-ins), pushed weights under tmp_path/w."""
    cfg = config(model_dir, reward.address)
    return type(cfg).model_validate(
        cfg.model_dump()
        | {"generator": "sglang", "sglang": {"urls": urls, "weight_dir": str(tmp_path / "w")}}
        | {"server": cfg.server.model_dump() | server}
    )


@contextlib.asynccontextmanager
async def serving(cfg: RolloutServiceConfig, channel_options: list | None = None) -> AsyncIterator[Client]:
    async with (
        running_rollout(cfg) as rollout,
        grpc.aio.insecure_channel(rollout.server.address, options=channel_options) as channel,
    ):
        yield Client(rollout_pb2_grpc.RolloutServiceStub(channel), rollout)


def request(
    prompts: list[rollout_pb2.Prompt], group_size: int = 2, max_new_tokens: int = 6, **sampling: Any
) -> rollout_pb2.RolloutRequest:
    return rollout_pb2.RolloutRequest(
        prompts=prompts,
        group_size=group_size,
        sampling=rollout_pb2.SamplingParams(max_new_tokens=max_new_tokens, **sampling),
    )


def token_prompt(pid: str, token_ids: list[int], reference: str = "7") -> rollout_pb2.Prompt:
    return rollout_pb2.Prompt(id=pid, token_ids=token_ids, reference=reference)
