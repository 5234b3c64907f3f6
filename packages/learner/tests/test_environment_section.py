"""The learner's [rollout.environment] section and the `env` column, and what the rollout client sends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from grpo_common.config import ConfigError
from grpo_learner.config import RolloutConfig, SamplingConfig, load_learner_config
from grpo_learner.data.prompts import PromptItem, load_prompt_file
from grpo_learner.rollouts.client import RolloutClient, environment_to_proto
from recording_rollout import RecordingRollout, start_recording_rollout

TOML = """
[model]
name_or_path = "does/not/exist"
[rollout.environment]
name = "calculator"
max_turns = 4
max_turn_tokens = 64
[rollout.environment.config]
time_limit_s = 2.5
operators = ["+", "*"]
"""


def test_the_section_from_a_file_becomes_the_environment_spec(tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    environment = load_learner_config(path, environ={}).rollout.environment
    spec = environment_to_proto(environment)
    assert (spec.name, spec.max_turns, spec.max_turn_tokens) == ("calculator", 4, 64)
    assert json.loads(spec.config_json) == {"time_limit_s": 2.5, "operators": ["+", "*"]}


def test_no_section_is_single_turn_with_the_protos_defaults():
    environment = load_learner_config(overrides={"model.name_or_path": "m"}, environ={}).rollout.environment
    spec = environment_to_proto(environment)
    assert (spec.name, spec.max_turns, spec.max_turn_tokens, spec.config_json) == ("", 8, 0, "")


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("max_turns", 0, "rollout.environment.max_turns"),
        ("max_turn_tokens", 0, "rollout.environment.max_turn_tokens"),
        ("name", " calculator", "rollout.environment.name"),
        ("config", {"limit": float("nan")}, "rollout.environment.config"),
        ("turns", 3, "rollout.environment.turns"),  # misspelt
    ],
)
def test_bad_values_name_the_field(key, value, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_learner_config(
            overrides={"model.name_or_path": "m", f"rollout.environment.{key}": value}, environ={}
        )


def test_an_env_column_picks_the_rows_environment_and_is_not_a_reward_field(tmp_path: Path):
    rows = [
        {"question": "2*3", "answer": "6", "env": "calculator", "level": 1},
        {"question": "1+1", "answer": "2", "env": "none"},
        {"question": "5-1", "answer": "4", "env": ""},
        {"question": "7*8", "answer": "56"},
    ]
    source = load_prompt_file(tmp_path / "p.jsonl", rows=rows)
    assert [source[i].environment for i in range(4)] == ["calculator", "none", "", ""]
    assert json.loads(source[0].fields_json) == {"level": 1}
    assert source[1].fields_json == ""
    with pytest.raises(ValueError, match=r"row 0 .*column 'env' must be an environment name"):
        load_prompt_file(tmp_path / "p.jsonl", rows=[{"question": "q", "answer": "1", "env": 3}])


async def one_request(service: RecordingRollout, prompts, environment):
    server = await start_recording_rollout(service)
    client = RolloutClient(
        [server.address],
        RolloutConfig(backoff_s=0.01),
        group_size=2,
        sampling=SamplingConfig(max_new_tokens=8),
        apply_chat_template=True,
        environment=environment,
    )
    try:
        return [g async for g in client.generate(prompts)]
    finally:
        await client.close()
        await server.stop(0)


def test_the_client_sends_the_spec_and_each_rows_environment(tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text(TOML)
    spec = environment_to_proto(load_learner_config(path, environ={}).rollout.environment)
    prompts = [
        PromptItem(id="a", reference="6", token_ids=(1, 2)),
        PromptItem(id="b", reference="2", token_ids=(3,), environment="none"),
    ]
    service = RecordingRollout()
    groups = asyncio.run(one_request(service, prompts, spec))
    assert len(groups) == 2
    (request,) = service.requests
    assert request.HasField("environment") and request.environment == spec
    assert {p.id: p.environment for p in request.prompts} == {"a": "", "b": "none"}


def test_without_a_spec_the_request_has_no_environment():
    service = RecordingRollout()
    asyncio.run(one_request(service, [PromptItem(id="a", reference="1", token_ids=(1,))], None))
    assert not service.requests[0].HasField("environment")
