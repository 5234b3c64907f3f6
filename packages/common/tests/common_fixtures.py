"""Helpers for grpo_common's tests: a small real RolloutService, loopback servers, test certificates.

The tests run real grpc.aio servers and channels on 127.0.0.1; the servicer below is the smallest
thing that behaves like a rollout service at the wire: UpdateWeights decodes with the real codec
and applies atomically, GetInfo can be told to fail or to be slow. Every test drives its own event
loop with asyncio.run, so no async pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.server import RunningServer, ServerConfig, registration, start_server
from grpo_common.weights.codec import (
    WeightStreamDecoder,
    WeightStreamError,
    check_compatible,
    read_weight_chunk,
)

ROLLOUT_SERVICE = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name


class FakeRolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    """Counts every handler call; UpdateWeights swaps in the decoded weights only when all verified."""

    def __init__(self, weights: dict[str, torch.Tensor] | None = None) -> None:
        self.weights: dict[str, torch.Tensor] = weights if weights is not None else {}
        self.policy_version = 0
        self.calls: Counter[str] = Counter()
        self.unavailable_before_success = 0
        self.info_delay_seconds = 0.0
        self.model_name = "fake"
        self.info_started = asyncio.Event()

    async def UpdateWeights(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        self.calls["UpdateWeights"] += 1
        decoder = WeightStreamDecoder(max_total_bytes=64 * 1024 * 1024)
        try:
            async for chunk in request_iterator:
                decoder.feed(chunk)
            decoded = decoder.finish()
            check_compatible(decoded.tensors, self.weights)
        except WeightStreamError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"weight stream rejected: {exc}")
        if decoded.policy_version <= self.policy_version:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"policy_version {decoded.policy_version} is not newer than {self.policy_version}",
            )
        # One assignment: a reader sees the old dict or the new one, never a mix.
        self.weights = {**self.weights, **decoded.tensors}
        self.policy_version = decoded.policy_version
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=decoded.policy_version, tensors=len(decoded.tensors), bytes=decoded.total_bytes
        )

    async def GetInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.calls["GetInfo"] += 1
        self.info_started.set()
        if self.unavailable_before_success > 0:
            self.unavailable_before_success -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up, try again")
        if self.info_delay_seconds:
            await asyncio.sleep(self.info_delay_seconds)
        return rollout_pb2.RolloutInfo(
            model=self.model_name, backend="test", policy_version=self.policy_version
        )


@asynccontextmanager
async def serving(servicer: FakeRolloutServicer, **config: Any) -> AsyncIterator[RunningServer]:
    """A started loopback server for `servicer`; stopped (without grace) on exit.

    UpdateWeights is registered as the real rollout service registers it: chunks arrive as bytes
    and the decoder reads them (grpo_common.weights.wire).
    """
    service = registration(
        servicer,
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server,
        ROLLOUT_SERVICE,
        request_deserializers={"UpdateWeights": read_weight_chunk},
    )
    running = await start_server([service], ServerConfig(**config))
    try:
        yield running
    finally:
        await running.stop(0)


@asynccontextmanager
async def rollout_stub(
    running: RunningServer, config: ChannelConfig | None = None, **kwargs: Any
) -> AsyncIterator[rollout_pb2_grpc.RolloutServiceStub]:
    async with create_channel(running.address, config, **kwargs) as channel:
        yield rollout_pb2_grpc.RolloutServiceStub(channel)


@pytest.fixture
def serve() -> Callable[..., Any]:
    return serving


@pytest.fixture
def stub() -> Callable[..., Any]:
    return rollout_stub


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRPO_AUTH_TOKEN in the developer's shell must not switch auth on in every test."""
    monkeypatch.delenv("GRPO_AUTH_TOKEN", raising=False)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip


def _make_leaf(directory: Path, name: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made by openssl."""
    directory = tmp_path_factory.mktemp("pki")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _make_leaf(
        directory, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _make_leaf(directory, "client", "extendedKeyUsage=clientAuth\n")
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
