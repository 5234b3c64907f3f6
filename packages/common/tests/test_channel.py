"""Client channels: retries of idempotent calls through the gRPC service config, deadlines."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from common_fixtures import ROLLOUT_SERVICE, FakeRolloutServicer
from grpo.v1 import rollout_pb2
from grpo_common.channel import ChannelConfig, retry_service_config

FAST_RETRY = ChannelConfig(retry_initial_backoff_seconds=0.01, retry_max_backoff_seconds=0.05)
GET_INFO = [(ROLLOUT_SERVICE, "GetInfo")]


def test_idempotent_call_is_retried_through_unavailable_until_it_succeeds(serve, stub) -> None:
    servicer = FakeRolloutServicer()
    servicer.unavailable_before_success = 2

    async def scenario() -> None:
        async with (
            serve(servicer) as running,
            stub(running, FAST_RETRY, idempotent_methods=GET_INFO) as client,
        ):
            reply = await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)
            assert reply.model == "fake"
        assert servicer.calls["GetInfo"] == 3

    asyncio.run(scenario())


def test_methods_not_named_idempotent_are_not_retried(serve, stub) -> None:
    servicer = FakeRolloutServicer()
    servicer.unavailable_before_success = 2

    async def scenario() -> None:
        async with serve(servicer) as running, stub(running, FAST_RETRY) as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls["GetInfo"] == 1

    asyncio.run(scenario())


def test_retries_stop_after_the_configured_attempts(serve, stub) -> None:
    servicer = FakeRolloutServicer()
    servicer.unavailable_before_success = 10
    config = FAST_RETRY.model_copy(update={"retry_attempts": 3})

    async def scenario() -> None:
        async with serve(servicer) as running, stub(running, config, idempotent_methods=GET_INFO) as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls["GetInfo"] == 3

    asyncio.run(scenario())


def test_a_call_past_its_deadline_is_deadline_exceeded(serve, stub) -> None:
    servicer = FakeRolloutServicer()
    servicer.info_delay_seconds = 2.0

    async def scenario() -> None:
        async with serve(servicer) as running, stub(running, idempotent_methods=GET_INFO) as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=0.2)
            # the 2 s answer would have come back OK: the deadline, not the server, ended the call
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    asyncio.run(scenario())


def test_retry_service_config_is_valid_json_with_decimal_durations() -> None:
    config = ChannelConfig(retry_initial_backoff_seconds=0.00001, retry_max_backoff_seconds=2)
    parsed = json.loads(retry_service_config(GET_INFO, config))
    (method_config,) = parsed["methodConfig"]
    assert method_config["name"] == [{"service": ROLLOUT_SERVICE, "method": "GetInfo"}]
    policy = method_config["retryPolicy"]
    assert policy["initialBackoff"] == "0.000010s" and policy["maxBackoff"] == "2.000000s"
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert json.loads(retry_service_config([], config)) == {}
