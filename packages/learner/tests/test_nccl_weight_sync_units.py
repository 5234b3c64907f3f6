"""NCCL weight sync, the parts that need no group: bucketing, look-ahead, config."""

from __future__ import annotations

import asyncio

import pytest
import torch
from grpo_learner.config import PushConfig
from grpo_learner.weight_sync.nccl_streaming import iter_buckets, with_last
from grpo_learner.weight_sync.nccl_sync import NcclWeightSync, WeightSyncError
from pydantic import ValidationError


def tensors(*sizes: int) -> list[tuple[str, torch.Tensor]]:
    return [(f"t{i}", torch.zeros(size, dtype=torch.float32)) for i, size in enumerate(sizes)]


def test_buckets_keep_order_fill_up_to_the_cap_and_never_split_a_tensor() -> None:
    # float32: 4 bytes per element; cap 40 bytes = 10 elements
    buckets = list(iter_buckets(iter(tensors(4, 4, 3, 20, 1, 10)), bucket_bytes=40))
    assert [[name for name, _ in b] for b in buckets] == [["t0", "t1"], ["t2"], ["t3"], ["t4"], ["t5"]]
    assert [name for b in buckets for name, _ in b] == [f"t{i}" for i in range(6)]
    assert list(iter_buckets([], 40)) == []


def test_with_last_flags_only_the_final_item() -> None:
    assert list(with_last("abc")) == [("a", False), ("b", False), ("c", True)]
    assert list(with_last(["x"])) == [("x", True)]
    assert list(with_last([])) == []


def test_nccl_transport_needs_the_address_the_engines_reach_the_learner_at() -> None:
    with pytest.raises(ValidationError, match=r"nccl\.master_address"):
        PushConfig(transport="nccl")
    push = PushConfig(
        transport="nccl", nccl={"master_address": "10.0.0.2", "backend": "gloo"}, dtype="bfloat16"
    )
    sync = NcclWeightSync.from_config(push)
    assert sync.settings.master_address == "10.0.0.2" and sync.dtype is torch.bfloat16
    assert sync.settings.bucket_bytes == 1 << 30 and sync.settings.group_name == "weight_update_group"


def test_push_before_connect_and_negative_versions_are_refused() -> None:
    sync = NcclWeightSync.from_config(PushConfig(transport="nccl", nccl={"master_address": "127.0.0.1"}))

    async def scenario():
        with pytest.raises(ValueError, match="negative"):
            await sync.push(tensors(1), version=-1)
        with pytest.raises(WeightSyncError, match="not connected"):
            await sync.push(tensors(1), version=1)
        with pytest.raises(ValueError, match="no rollout addresses"):
            await sync.connect([])

    asyncio.run(scenario())
