"""Token auth and TLS on real loopback servers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import torch
from common_fixtures import ROLLOUT_SERVICE, FakeRolloutServicer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpo.v1 import rollout_pb2
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.security import ClientTLSConfig, TLSConfig
from grpo_common.weights.codec import encode_state_dict

TOKEN = "s3cret-token-0123456789"


def _weights() -> dict[str, torch.Tensor]:
    return {"w": torch.zeros(4, 4)}


async def _status_of(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


@pytest.mark.parametrize("presented", [None, "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_missing_or_wrong_token_is_unauthenticated_and_does_no_work(serve, stub, presented) -> None:
    servicer = FakeRolloutServicer(_weights())
    config = ChannelConfig(auth_token=presented)

    async def scenario() -> None:
        async with serve(servicer, auth_token=TOKEN) as running, stub(running, config) as client:
            unary = await _status_of(client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5))
            update = encode_state_dict({"w": torch.ones(4, 4)}, policy_version=1)
            streaming = await _status_of(client.UpdateWeights(update, timeout=5))
            for error in (unary, streaming):
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "authorization: Bearer" in error.details()
                assert TOKEN not in error.details() and TOKEN not in str(error)
        assert servicer.calls == {}, "a handler ran for an unauthenticated call"
        assert servicer.policy_version == 0 and torch.equal(servicer.weights["w"], torch.zeros(4, 4))

    asyncio.run(scenario())


def test_correct_token_works_for_unary_and_client_streaming(serve, stub) -> None:
    servicer = FakeRolloutServicer(_weights())

    async def scenario() -> None:
        async with (
            serve(servicer, auth_token=TOKEN) as running,
            stub(running, ChannelConfig(auth_token=TOKEN)) as c,
        ):
            assert (await c.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)).model == "fake"
            reply = await c.UpdateWeights(encode_state_dict({"w": torch.ones(4, 4)}, 1), timeout=5)
            assert reply.policy_version == 1
        assert servicer.calls == {"GetInfo": 1, "UpdateWeights": 1}
        assert torch.equal(servicer.weights["w"], torch.ones(4, 4))

    asyncio.run(scenario())


def test_health_checks_stay_open_without_a_token(serve) -> None:
    async def scenario() -> None:
        async with (
            serve(FakeRolloutServicer(), auth_token=TOKEN) as running,
            create_channel(running.address) as ch,
        ):
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=ROLLOUT_SERVICE), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    asyncio.run(scenario())


def test_token_from_the_environment_turns_auth_on_for_server_and_channel(serve, stub, monkeypatch) -> None:
    monkeypatch.setenv("GRPO_AUTH_TOKEN", TOKEN)
    servicer = FakeRolloutServicer()

    async def scenario() -> None:
        async with serve(servicer) as running:
            async with stub(running) as client:  # the channel reads the same variable
                assert (await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)).model == "fake"
            async with stub(running, ChannelConfig(auth_token="other")) as client:
                error = await _status_of(client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5))
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert servicer.calls == {"GetInfo": 1}

    asyncio.run(scenario())


def _server_tls(certs, mutual: bool = False) -> TLSConfig:
    return TLSConfig(cert=certs.server_cert, key=certs.server_key, client_ca=certs.ca if mutual else None)


def test_tls_server_accepts_a_client_that_trusts_its_ca(serve, stub, certificates) -> None:
    async def scenario() -> None:
        # Naming a CA is enough to switch the client to TLS.
        config = ChannelConfig(tls=ClientTLSConfig(ca=certificates.ca))
        async with (
            serve(FakeRolloutServicer(), tls=_server_tls(certificates)) as running,
            stub(running, config) as client,
        ):
            assert (await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)).model == "fake"

    asyncio.run(scenario())


@pytest.mark.parametrize("client_tls", ["plaintext", "untrusted-ca"])
def test_tls_server_refuses_plaintext_and_untrusting_clients(serve, stub, certificates, client_tls) -> None:
    servicer = FakeRolloutServicer()
    tls = ClientTLSConfig() if client_tls == "plaintext" else ClientTLSConfig(ca=certificates.other_ca)

    async def scenario() -> None:
        async with (
            serve(servicer, tls=_server_tls(certificates)) as running,
            stub(running, ChannelConfig(tls=tls)) as client,
        ):
            error = await _status_of(client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls == {}

    asyncio.run(scenario())


def test_mtls_requires_a_client_certificate_signed_by_the_client_ca(serve, stub, certificates) -> None:
    servicer = FakeRolloutServicer()
    without_cert = ClientTLSConfig(ca=certificates.ca)
    with_cert = ClientTLSConfig(
        ca=certificates.ca, cert=certificates.client_cert, key=certificates.client_key
    )

    async def scenario() -> None:
        async with serve(servicer, tls=_server_tls(certificates, mutual=True)) as running:
            async with stub(running, ChannelConfig(tls=without_cert)) as client:
                error = await _status_of(client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5))
                assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert servicer.calls == {}
            async with stub(running, ChannelConfig(tls=with_cert, auth_token=None)) as client:
                assert (await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)).model == "fake"
        assert servicer.calls == {"GetInfo": 1}

    asyncio.run(scenario())


def test_tls_and_token_together(serve, stub, certificates) -> None:
    config = ChannelConfig(tls=ClientTLSConfig(ca=certificates.ca), auth_token=TOKEN)

    async def scenario() -> None:
        async with (
            serve(FakeRolloutServicer(), tls=_server_tls(certificates), auth_token=TOKEN) as running,
            stub(running, config) as client,
        ):
            assert (await client.GetInfo(rollout_pb2.GetInfoRequest(), timeout=5)).model == "fake"

    asyncio.run(scenario())


def test_tls_settings_are_validated_naming_the_setting(tmp_path, serve) -> None:
    with pytest.raises(ValueError, match=r"tls\.cert and tls\.key must be given together"):
        TLSConfig(cert=tmp_path / "a.pem")
    with pytest.raises(ValueError, match="client_ca"):
        TLSConfig(client_ca=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match=r"tls\.cert and tls\.key"):
        ClientTLSConfig(cert=tmp_path / "a.pem")
    missing = TLSConfig(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key")

    async def scenario() -> None:
        with pytest.raises(ValueError, match=r"cannot read tls\.key .*missing\.key"):
            async with serve(FakeRolloutServicer(), tls=missing):
                pass

    asyncio.run(scenario())
