"""One token, both directions (issue 11, item 8): the rollout service sends the token it requires."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpo_rollout.cli import build_parser, config_from_args
from rollout_reward_standin import RewardStandin
from rollout_service_harness import config, request, serving, token_prompt


@pytest.fixture
def reward():
    standin = RewardStandin().start()
    yield standin
    standin.stop()


def test_the_token_the_service_requires_is_sent_to_the_reward_service(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    cfg = config(tiny_model_dir, reward.address)
    cfg = type(cfg).model_validate(
        cfg.model_dump() | {"server": cfg.server.model_dump() | {"auth_token": "s3cret"}}
    )

    async def scenario():
        async with serving(cfg) as client:
            return await client.generate(
                request([token_prompt("p", [1, 5])]), metadata=(("authorization", "Bearer s3cret"),)
            )

    groups = asyncio.run(scenario())
    assert len(groups) == 1
    assert reward.authorizations == ["Bearer s3cret"]


def test_flags_set_the_reward_token_and_ca_and_an_explicit_reward_token_wins(
    tiny_model_dir: Path, reward: RewardStandin
) -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--model",
            "m",
            "--reward-address",
            "r:1",
            "--auth-token",
            "mine",
            "--reward-tls-ca",
            "ca.pem",
        ]
    )
    args_config = config_from_args(args)
    assert args_config.reward.channel.auth_token.get_secret_value() == "mine"
    assert args_config.reward.channel.tls.enabled and args_config.reward.channel.tls.ca == Path("ca.pem")
    cfg = config(tiny_model_dir, reward.address)
    cfg = type(cfg).model_validate(
        cfg.model_dump()
        | {"server": cfg.server.model_dump() | {"auth_token": "mine"}}
        | {"reward": cfg.reward.model_dump() | {"channel": {"auth_token": "theirs"}}}
    )
    assert cfg.reward.channel.auth_token.get_secret_value() == "theirs"
