"""GetInfo's host_cpu_threads (v1.5) over real gRPC: each backend says whether it computes on this CPU.

A learner on the same host sizes its threads from this answer instead of deciding by backend name.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from grpo.v1 import rollout_pb2
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, serving, sglang_config
from rollout_sglang_standin import StandinServer


def host_cpu_threads(cfg) -> int | None:  # type: ignore[no-untyped-def]
    async def scenario() -> rollout_pb2.RolloutInfo:
        async with serving(cfg) as client:
            return await client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)

    info = asyncio.run(scenario())
    return info.host_cpu_threads if info.HasField("host_cpu_threads") else None


def test_hf_on_the_cpu_reports_the_torch_threads_it_computes_with(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    cfg = config(tiny_model_dir, reward.address)
    cfg = cfg.model_copy(update={"hf": cfg.hf.model_copy(update={"torch_threads": 1})})
    assert host_cpu_threads(cfg) == 1 == torch.get_num_threads()


def test_sglang_reports_that_it_computes_elsewhere(
    tiny_model_dir: Path, reward: RewardStandin, tmp_path: Path
) -> None:
    with StandinServer() as engine:
        assert host_cpu_threads(sglang_config(tiny_model_dir, reward, [engine.url], tmp_path)) == 0
