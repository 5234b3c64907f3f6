"""`push.transport` -> the pusher that implements it: a registry, so a transport is one function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from grpo_common.registry import Registry
from torch import nn

from grpo_learner.config import LearnerConfig
from grpo_learner.rollouts.pool import RolloutPool
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_learner.weight_sync.nccl_pusher import NcclWeightPusher
from grpo_learner.weight_sync.push_protocol import WeightPush
from grpo_learner.weight_sync.push_selection import PushSelection, select_for

PusherFactory = Callable[[LearnerConfig, RolloutPool, PushSelection], WeightPush]
PUSH_TRANSPORTS: Registry[PusherFactory] = Registry("weight push transport")
register_transport = PUSH_TRANSPORTS.register


@register_transport("grpc")
def grpc_pusher(config: LearnerConfig, pool: RolloutPool, selection: PushSelection) -> WeightPush:
    """Bucketed UpdateWeights streams to every service in parallel (see grpc_pusher.py)."""
    push = config.push
    return WeightPusher(
        pool,
        deadline_s=push.deadline_s,
        min_bytes_per_s=push.min_mb_per_s * 1e6,
        bucket_bytes=push.bucket_bytes,
        dtype=getattr(torch, push.dtype) if push.dtype else None,
        selection=selection,
        delta=push.delta,
    )


@register_transport("nccl")
def nccl_pusher(config: LearnerConfig, pool: RolloutPool, selection: PushSelection) -> WeightPush:
    """A broadcast into the SGLang engines' weight-update group (see nccl_sync.py)."""
    return NcclWeightPusher(pool, config.push, config.rollout.channel, selection=selection)


def build_pusher(config: LearnerConfig, pool: RolloutPool, policy: nn.Module | None = None) -> WeightPush:
    """The one way a run gets its pusher, over the pool its rollout client shares.

    `policy` (the training model) decides what travels: a peft LoRA model's pushes are merged or
    adapter tensors (`push.lora_mode`), anything else every tensor (see push_selection.py).
    """
    selection = select_for(policy, config.push.lora_mode)
    return PUSH_TRANSPORTS[config.push.transport](config, pool, selection)
