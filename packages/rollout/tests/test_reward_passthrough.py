"""What the rollout service carries between learner and reward service (contract v1.1), over real gRPC.

A prompt's `fields_json` reaches every ScoreItem of its group, the request's RewardSpec reaches the
reward service as sent, a timed-out score arrives as `reward_timed_out` (not as a plain wrong
answer), and `fields_json` that is not one JSON object is refused before anything is generated.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import grpc
import pytest
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def test_fields_spec_and_timeouts_pass_through(tiny_model_dir: Path, reward: RewardStandin) -> None:
    fields = json.dumps({"tests": ["assert f(1) == 2"], "choices": ["A", "B"]})
    with_fields = token_prompt("coded", [1, 10, 11])
    with_fields.fields_json = fields
    with_fields.task = "code"
    plain = token_prompt("plain", [1, 12])
    req = request([with_fields, plain], group_size=3, temperature=1.0, seed=1)
    req.reward_spec.components.add(name="correctness", weight=1.0)
    req.reward_spec.components.add(name="my_rewards:brevity", weight=0.5)
    req.reward_spec.timeout_s = 2.0
    reward.timed_out_ids = {"coded#1"}

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            return await client.generate(req)

    groups = {g.prompt_id: g for g in asyncio.run(scenario())}
    items = {item.id: item for r in reward.requests for item in r.items}
    assert {items[f"coded#{j}"].fields_json for j in range(3)} == {fields}
    assert {items[f"coded#{j}"].task for j in range(3)} == {"code"}
    assert {items[f"plain#{j}"].fields_json for j in range(3)} == {""}
    assert [r.spec for r in reward.requests] == [req.reward_spec]
    timed_out = [c.reward_timed_out for c in groups["coded"].completions]
    assert timed_out == [False, True, False]
    assert groups["coded"].completions[1].reward_reason == "timeout after 1 s"
    assert not any(c.reward_timed_out for c in groups["plain"].completions)


@pytest.mark.parametrize(
    ("fields_json", "message"),
    [
        ("{not json", r"prompts\[1\]\.fields_json is not valid JSON"),
        ("[1, 2]", r"prompts\[1\]\.fields_json must be a JSON object"),
        ('"text"', r"prompts\[1\]\.fields_json must be a JSON object"),
        ("[" * 100_000, r"prompts\[1\]\.fields_json is (nested deeper than 32|not valid JSON)"),
        # what the reward service refuses, refused here before generating (one validator: grpo_common)
        ('{"x": NaN}', r"prompts\[1\]\.fields_json .*NaN is not a finite number"),
        ('{"x": 1e999}', r"prompts\[1\]\.fields_json .*1e999 is not a finite number"),
        ('{"x": ' + "[" * 32 + "]" * 32 + "}", r"prompts\[1\]\.fields_json is nested deeper than 32"),
        ('{"completion": "forged"}', r"prompts\[1\]\.fields_json must not contain the key 'completion'"),
        ('{"x": "' + "y" * (1 << 20) + '"}', r"prompts\[1\]\.fields_json is 1048585 bytes, over .* 1048576"),
    ],
)
def test_malformed_fields_json_is_refused_before_generating(
    tiny_model_dir: Path, reward: RewardStandin, fields_json: str, message: str
) -> None:
    bad = token_prompt("bad", [1, 10])
    bad.fields_json = fields_json
    req = request([token_prompt("good", [1, 11]), bad])

    async def scenario():
        async with serving(config(tiny_model_dir, reward.address)) as client:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.generate(req)
            return caught.value

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, error.details()), error.details()
    assert reward.requests == []  # nothing was generated or scored
