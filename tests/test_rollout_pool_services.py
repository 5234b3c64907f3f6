"""The learner's rollout pool against the real services: the contract it relies on, end to end.

Two real RolloutServices (hf backend, a tiny model) and a real RewardService run in this process
on loopback gRPC. The pool finds them healthy under the name "grpo.v1.RolloutService", reads
their load and policy version from GetInfo, pushes weights through UpdateWeights and spreads
prompts over both; one service stops (graceful shutdown) and is marked DOWN, its successor on the
same port is given the current weights before it generates again, as the real service reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest
import torch
from grpo_common.server import ServerConfig
from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.client import RolloutClient
from grpo_learner.rollouts.pool import MemberState, RolloutPool
from grpo_learner.weight_sync.grpc_pusher import WeightPusher
from grpo_reward.service.config import RewardServiceConfig
from grpo_reward.service.server import start_reward_server
from grpo_reward.verifier import Verifier
from grpo_rollout.app import running_rollout
from grpo_rollout.config import RewardSettings, RolloutServiceConfig

ROLLOUT_TESTS = Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"
sys.path.insert(0, str(ROLLOUT_TESTS))

from rollout_testkit import build_model_dir, other_weights  # noqa: E402

torch.set_num_threads(1)
FAST = RolloutConfig(probe_interval_s=0.05, probe_timeout_s=2.0, unhealthy_after=2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


async def wait_until(predicate, what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def prompts(prefix: str, count: int) -> list[PromptItem]:
    return [PromptItem(id=f"{prefix}{i}", reference="7", token_ids=(1, 5 + i, 6)) for i in range(count)]


def test_pool_spreads_over_real_services_marks_a_stopped_one_down_and_resyncs_its_successor(model_dir: Path):
    weights = other_weights(model_dir, seed=1)

    async def scenario():
        with Verifier(workers=1) as verifier:
            verifier.wait_ready(timeout_s=60)
            reward = await start_reward_server(
                RewardServiceConfig(server=ServerConfig(port=0, grace_seconds=0)), verifier
            )

            def rollout_config(port: int = 0) -> RolloutServiceConfig:
                return RolloutServiceConfig(
                    model=str(model_dir),
                    server=ServerConfig(port=port, grace_seconds=0),
                    reward=RewardSettings(address=reward.address, timeout_s=10),
                )

            async with contextlib.AsyncExitStack() as stack:
                first = await stack.enter_async_context(running_rollout(rollout_config()))
                second_stack = contextlib.AsyncExitStack()
                second = await second_stack.enter_async_context(running_rollout(rollout_config()))
                a, b = first.server.address, second.server.address
                pool = RolloutPool([a, b], settings=FAST)
                pusher = WeightPusher(pool, deadline_s=30)
                client = RolloutClient(
                    pool,
                    RolloutConfig(backoff_s=0.05, request_timeout_s=60),
                    group_size=2,
                    sampling=SamplingConfig(max_new_tokens=4),
                    apply_chat_template=False,
                )
                try:
                    await wait_until(lambda: all(m.info_at > 0 for m in pool.members), "GetInfo answers")
                    assert [m.state for m in pool.members] == [MemberState.READY] * 2
                    assert await pusher.push(weights, 1) == []
                    both = [g async for g in client.generate(prompts("a", 8), min_policy_version=1)]
                    await asyncio.sleep(0.3)  # several probes: the reported version matches the ack
                    steady = [(m.state, m.version, m.reported_version) for m in pool.members]

                    await second_stack.aclose()  # graceful stop of one service
                    await wait_until(lambda: pool.get(b).state is MemberState.DOWN, "DOWN")
                    sent_b = client.sent_prompts[b]
                    alone = [g async for g in client.generate(prompts("b", 4), min_policy_version=1)]
                    sent_while_down = client.sent_prompts[b] - sent_b

                    port = int(b.rpartition(":")[2])
                    successor = await stack.enter_async_context(running_rollout(rollout_config(port)))
                    await wait_until(lambda: pool.get(b).state is MemberState.READY, "READY again")
                    successor_version = successor.generator.info().weight_version
                    again = [g async for g in client.generate(prompts("c", 8), min_policy_version=1)]
                    sent_after = client.sent_prompts[b] - sent_b - sent_while_down
                finally:
                    await client.close()
                    await pusher.close()
                    await second_stack.aclose()
            await reward.stop(0)
        return both, sent_b, steady, alone, sent_while_down, successor_version, again, sent_after

    both, sent_b, steady, alone, sent_while_down, successor_version, again, sent_after = asyncio.run(
        scenario()
    )
    assert sorted(g.prompt_id for g in both) == sorted(p.id for p in prompts("a", 8))
    assert {g.policy_version for g in both} == {1}
    assert all(len(g.completions) == 2 for g in both)
    assert sent_b == 4  # idle services, equal loads: half each
    assert steady == [(MemberState.READY, 1, 1)] * 2
    assert len(alone) == 4 and sent_while_down == 0
    assert successor_version == 1  # the successor got the current weights ...
    assert len(again) == 8 and {g.policy_version for g in again} == {1}  # ... and then prompts
    assert sent_after > 0
