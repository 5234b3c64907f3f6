"""The rollout side's idle fraction: GetInfo's uptime/busy seconds (v1.1) turned into a step metric.

A real RewardService and a real RolloutService (hf backend, tiny model) run in this process on
loopback gRPC; the learner's pool probes them and `pool.metrics()` reports
`rollout/idle_fraction` = 1 - Δbusy / Δuptime between two calls.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import torch
from grpo_common.server import ServerConfig
from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.client import RolloutClient
from grpo_learner.rollouts.pool import RolloutPool
from grpo_reward.service.config import RewardServiceConfig
from grpo_reward.service.server import start_reward_server
from grpo_reward.verifier import Verifier
from grpo_rollout.app import running_rollout
from grpo_rollout.config import RewardSettings, RolloutServiceConfig

ROLLOUT_TESTS = Path(__file__).resolve().parents[1] / "packages" / "rollout" / "tests"
sys.path.insert(0, str(ROLLOUT_TESTS))

from rollout_testkit import build_model_dir  # noqa: E402

torch.set_num_threads(1)
FAST = RolloutConfig(probe_interval_s=0.05, probe_timeout_s=2.0)
IDLE = "rollout/idle_fraction"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-qwen2"))


async def next_probe(pool: RolloutPool, after: float, timeout_s: float = 20.0) -> None:
    """Wait until every member answered a GetInfo sent after `after` (time.monotonic())."""
    deadline = time.monotonic() + timeout_s
    while not all(m.info_at > after and m.busy_latest is not None for m in pool.members):
        if time.monotonic() > deadline:
            raise AssertionError("no fresh GetInfo answer")
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)  # a probe sent after `after`, not only answered after it


def test_idle_fraction_is_below_one_while_generating_and_one_when_nothing_runs(model_dir: Path) -> None:
    async def scenario() -> tuple[dict, dict, dict, float, float]:
        with Verifier(workers=1) as verifier:
            verifier.wait_ready(timeout_s=60)
            reward = await start_reward_server(
                RewardServiceConfig(server=ServerConfig(port=0, grace_seconds=0)), verifier
            )
            config = RolloutServiceConfig(
                model=str(model_dir),
                server=ServerConfig(port=0, grace_seconds=0),
                reward=RewardSettings(address=reward.address, timeout_s=10),
            )
            async with running_rollout(config) as rollout:
                pool = RolloutPool([rollout.server.address], settings=FAST)
                client = RolloutClient(
                    pool,
                    RolloutConfig(request_timeout_s=60),
                    group_size=4,
                    sampling=SamplingConfig(max_new_tokens=24),
                    apply_chat_template=False,
                )
                try:
                    pool.start()
                    await next_probe(pool, time.monotonic())
                    first = pool.metrics()  # sets the mark: no interval yet
                    window_start = time.monotonic()
                    items = [PromptItem(id=f"p{i}", reference="7", token_ids=(1, 5 + i, 6)) for i in range(8)]
                    groups = [g async for g in client.generate(items)]
                    generating = max(g.generate_seconds for g in groups)
                    await next_probe(pool, time.monotonic())
                    busy_window = pool.metrics()
                    window = time.monotonic() - window_start
                    await asyncio.sleep(0.3)
                    await next_probe(pool, time.monotonic())
                    idle_window = pool.metrics()
                finally:
                    await client.close()
                    await pool.close()
            await reward.stop(0)
        return first, busy_window, idle_window, generating, window

    first, busy_window, idle_window, generating, window = asyncio.run(scenario())
    assert IDLE not in first  # one poll is not an interval
    assert 0.0 <= busy_window[IDLE] < 1.0
    # The service was busy at least while it generated the batch, inside the window we measured.
    assert 1.0 - busy_window[IDLE] >= 0.9 * generating / window
    assert idle_window[IDLE] == 1.0  # nothing ran between those two polls
