"""The server factory on real loopback servers: health, reflection, limits, binding, keepalive."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from common_fixtures import ROLLOUT_SERVICE, FakeRolloutServicer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpo.v1 import rollout_pb2
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.server import ServerConfig, server_options

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_reports_serving_for_the_service_and_overall(serve) -> None:
    async def scenario() -> None:
        async with serve(FakeRolloutServicer()) as running, create_channel(running.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in (ROLLOUT_SERVICE, ""):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health.Check(health_pb2.HealthCheckRequest(service="grpo.v1.Nope"), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(scenario())


def test_health_turns_not_serving_as_soon_as_graceful_stop_begins(serve) -> None:
    async def scenario() -> None:
        async with serve(FakeRolloutServicer()) as running, create_channel(running.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=ROLLOUT_SERVICE), timeout=10
            )
            assert (await watch.read()).status == SERVING
            stopping = asyncio.create_task(running.stop(grace_seconds=2))
            # The watcher hears NOT_SERVING while the server drains, so a balancer moves away first.
            assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
            await stopping

    asyncio.run(scenario())


def test_reflection_lists_every_service_and_serves_their_descriptors(serve) -> None:
    async def scenario() -> None:
        async with serve(FakeRolloutServicer()) as running, create_channel(running.address) as channel:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=ROLLOUT_SERVICE),
            ]
            replies = [reply async for reply in reflection.ServerReflectionInfo(iter(requests), timeout=5)]
            names = {service.name for service in replies[0].list_services_response.service}
            assert names == {
                ROLLOUT_SERVICE,
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            }
            files = replies[1].file_descriptor_response.file_descriptor_proto
            assert any(b"UpdateWeights" in blob for blob in files)

    asyncio.run(scenario())


def test_binds_to_loopback_by_default_and_writes_the_port_file(serve, tmp_path) -> None:
    assert ServerConfig().host == "127.0.0.1"
    port_file = tmp_path / "run" / "rollout.port"

    async def scenario() -> None:
        async with serve(FakeRolloutServicer(), port_file=port_file) as running:
            assert running.host == "127.0.0.1" and running.port > 0
            assert port_file.read_text() == f"{running.port}\n"

    asyncio.run(scenario())


def test_a_taken_port_is_an_error_naming_the_address(serve) -> None:
    async def scenario() -> None:
        async with serve(FakeRolloutServicer()) as first:
            with pytest.raises(OSError, match=rf"cannot bind 127\.0\.0\.1:{first.port}"):
                async with serve(FakeRolloutServicer(), port=first.port):
                    pass

    asyncio.run(scenario())


def test_message_over_the_limit_is_resource_exhausted_naming_the_limit(serve, stub) -> None:
    limit = 256 * 1024
    big = rollout_pb2.WeightChunk(policy_version=1, last=True)
    big.pieces.add(name="w", dtype="uint8", shape=[limit * 2], data=b"\0" * (limit * 2))
    servicer = FakeRolloutServicer()

    async def scenario() -> None:
        async with serve(servicer, max_message_bytes=limit) as running, stub(running) as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.UpdateWeights(iter([big]), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert str(limit) in err.value.details()
            # A message under the limit still goes through on the same server.
            small = rollout_pb2.WeightChunk(policy_version=1, last=True)
            assert (await client.UpdateWeights(iter([small]), timeout=10)).policy_version == 1

    asyncio.run(scenario())


def test_reply_over_the_client_limit_is_resource_exhausted(serve, stub) -> None:
    servicer = FakeRolloutServicer()

    async def scenario() -> None:
        async with serve(servicer) as running, stub(running, ChannelConfig(max_message_bytes=1024)) as client:
            servicer.model_name = "m" * 4096  # a reply bigger than the client's 1 KiB limit
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1024" in err.value.details()

    asyncio.run(scenario())


def test_server_options_carry_limits_and_keepalive() -> None:
    options = dict(server_options(ServerConfig(max_message_bytes=5_000_000, keepalive_seconds=7)))
    assert options["grpc.max_receive_message_length"] == 5_000_000
    assert options["grpc.max_send_message_length"] == 5_000_000
    assert options["grpc.keepalive_time_ms"] == 7000
    assert options["grpc.keepalive_timeout_ms"] == 10_000


def test_unknown_server_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_mesage_bytes"):
        ServerConfig(max_mesage_bytes=1)  # type: ignore[call-arg]
