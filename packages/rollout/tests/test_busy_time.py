"""GetInfo's uptime_seconds / busy_seconds (v1.1): what the learner's idle fraction is made of."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from grpo.v1 import rollout_pb2
from grpo_rollout.busy_clock import BusyClock
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_overlapping_work_counts_once_and_idle_time_not_at_all() -> None:
    clock = SteppedClock()
    busy = BusyClock(clock)
    clock.now += 2.0  # idle
    with busy.busy():
        clock.now += 1.0
        with busy.busy():  # a second batch overlaps the first
            clock.now += 1.0
            assert busy.read() == (4.0, 2.0)  # running work counts up to now
        clock.now += 0.5
    clock.now += 3.0  # idle again
    assert busy.read() == (7.5, 2.5)


def test_busy_seconds_grow_with_generation_and_stay_put_while_idle(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            info = lambda: client.stub.GetInfo(rollout_pb2.GetInfoRequest(), timeout=10)  # noqa: E731
            before = await info()
            prompts = [token_prompt(f"p{i}", [1, 10 + i, 11]) for i in range(4)]
            groups = await client.generate(request(prompts, group_size=3, max_new_tokens=12))
            after = await info()
            await asyncio.sleep(0.3)
            later = await info()
            return before, groups, after, later

    started = time.monotonic()
    before, groups, after, later = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert 0 < before.uptime_seconds < elapsed and before.busy_seconds == 0
    worked = groups[0].generate_seconds + groups[0].score_seconds  # one batch: every group shares them
    assert after.busy_seconds >= 0.99 * worked
    assert after.busy_seconds <= after.uptime_seconds
    assert later.busy_seconds == after.busy_seconds  # nothing ran
    assert later.uptime_seconds - after.uptime_seconds >= 0.3
