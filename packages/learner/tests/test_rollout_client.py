"""RolloutClient against real grpc.aio servers streaming deterministic groups."""

from __future__ import annotations

import asyncio

import pytest
from grpo_learner.config import RolloutConfig, SamplingConfig
from grpo_learner.data.prompts import PromptItem
from grpo_learner.rollouts.client import RolloutClient, RolloutError
from recording_rollout import RecordingRollout, start_recording_rollout

PROMPTS = [PromptItem(id=f"q{i}", reference=str(i), token_ids=(1, 2, i + 3)) for i in range(10)]


async def collect(services, prompts=PROMPTS, min_version=0, **kwargs):
    servers = [await start_recording_rollout(s) for s in services]
    client = RolloutClient(
        [s.address for s in servers],
        RolloutConfig(backoff_s=0.01, **kwargs.pop("settings", {})),
        group_size=kwargs.pop("group_size", 3),
        sampling=SamplingConfig(temperature=0.8, max_new_tokens=16),
        apply_chat_template=kwargs.pop("apply_chat_template", True),
        **kwargs,
    )
    try:
        return [g async for g in client.generate(prompts, min_policy_version=min_version)]
    finally:
        await client.close()
        for server in servers:
            await server.stop(0)


def test_every_prompt_comes_back_once_spread_over_services():
    services = [RecordingRollout(), RecordingRollout()]
    groups = asyncio.run(collect(services))
    assert sorted(g.prompt_id for g in groups) == sorted(p.id for p in PROMPTS)
    assert all(len(g.completions) == 3 for g in groups)
    sent = [sorted(p.id for p in s.requests[0].prompts) for s in services]
    assert len(sent[0]) == 5 and len(sent[1]) == 5 and not set(sent[0]) & set(sent[1])
    request = services[0].requests[0]
    assert request.group_size == 3 and request.sampling.max_new_tokens == 16
    assert request.sampling.temperature == pytest.approx(0.8)
    assert list(request.prompts[0].token_ids)[:2] == [1, 2]


def test_prompts_whose_groups_never_came_back_are_re_sent_alone():
    service = RecordingRollout(drop_once={"q3", "q7"})
    groups = asyncio.run(collect([service]))
    assert sorted(g.prompt_id for g in groups) == sorted(p.id for p in PROMPTS)
    assert [sorted(p.id for p in r.prompts) for r in service.requests[1:]] == [["q3", "q7"]]


def test_a_broken_stream_is_retried_on_another_service():
    flaky, healthy = RecordingRollout(fail_next_generates=1), RecordingRollout()
    groups = asyncio.run(collect([flaky, healthy]))
    assert sorted(g.prompt_id for g in groups) == sorted(p.id for p in PROMPTS)
    # the retry round prefers the service that did not fail
    assert len(healthy.requests) == 2 and len(flaky.requests) == 1


def test_service_behind_min_policy_version_is_avoided():
    behind, current = RecordingRollout(policy_version=0), RecordingRollout(policy_version=4)
    groups = asyncio.run(collect([behind, current], min_version=3))
    assert {g.policy_version for g in groups} == {4}
    assert len(groups) == len(PROMPTS)


def test_prompts_lost_every_time_raise_after_max_attempts():
    service = RecordingRollout(drop_prompt_ids={"q2"})
    with pytest.raises(RolloutError, match=r"1 prompt\(s\) got no group after 3 attempts \(q2\)"):
        asyncio.run(collect([service], settings={"max_attempts": 3}))
    assert len(service.requests) == 3


def test_invalid_request_fails_at_once_naming_the_problem():
    service = RecordingRollout()
    with pytest.raises(RolloutError, match="INVALID_ARGUMENT: group_size must be at least 2"):
        asyncio.run(collect([service], group_size=1))
    assert len(service.requests) == 1


def test_duplicate_prompt_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        asyncio.run(collect([RecordingRollout()], prompts=[PROMPTS[0], PROMPTS[0]]))
