"""One factory builds every pusher over the rollout pool the client shares; both speak WeightPush."""

from __future__ import annotations

import asyncio

import pytest
from grpo_learner.rollouts.pool import RolloutPool
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_learner.weight_sync.nccl_pusher import NcclWeightPusher
from grpo_learner.weight_sync.transports import PUSH_TRANSPORTS, build_pusher
from learner_fixtures import default_config


@pytest.mark.parametrize(
    ("push", "kind"),
    [
        ({"transport": "grpc"}, WeightPusher),
        ({"transport": "nccl", "nccl": {"master_address": "10.0.0.1"}}, NcclWeightPusher),
    ],
)
def test_each_transport_is_built_over_the_shared_pool_and_releases_it(push, kind):
    config = default_config(push=push, rollout={"addresses": ["127.0.0.1:1"]})

    async def scenario():
        pool = RolloutPool.from_config(config.rollout)
        pool.retain()  # the rollout client's share
        pusher = build_pusher(config, pool)
        metrics = pusher.metrics()
        await pusher.close()
        still_open = pool.members != []
        await pool.release()
        return pusher, metrics, still_open, pool

    pusher, metrics, still_open, pool = asyncio.run(scenario())
    assert isinstance(pusher, kind) and pusher.pool is pool
    assert metrics["rollout/services_ready"] == 1.0
    assert still_open and pool.members == []  # the pusher released its share; the last user closed it


def test_every_configurable_transport_has_a_factory():
    assert set(PUSH_TRANSPORTS) == {"grpc", "nccl"}


def test_adapter_mode_needs_the_grpc_transport():
    import pytest
    from pydantic import ValidationError

    assert default_config(push={"lora_mode": "adapter"}).push.lora_mode == "adapter"
    with pytest.raises(ValidationError, match="needs push\\.transport = 'grpc'"):
        default_config(
            push={"lora_mode": "adapter", "transport": "nccl", "nccl": {"master_address": "127.0.0.1"}}
        )
