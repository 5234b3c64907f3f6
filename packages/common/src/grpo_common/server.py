"""The one way every GRPO service starts a gRPC server.

What every service gets without asking: `grpc.health.v1` (per service and overall), server
reflection (so `grpcurl` works), explicit message size limits (over-limit messages are refused with
RESOURCE_EXHAUSTED naming the limit), undecodable request bodies answered INVALID_ARGUMENT naming
the field (`grpo_common.request_decoding`; never UNKNOWN), keepalive, TLS and token auth when
configured, a loopback bind by default, and a graceful shutdown on SIGTERM/SIGINT that marks the
service NOT_SERVING first and lets in-flight calls finish within a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from pydantic import Field, SecretStr

from grpo_common.config import ConfigSection
from grpo_common.request_decoding import guard_handler
from grpo_common.security import TLSConfig, TokenAuthServerInterceptor, read_token, server_credentials

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServerConfig(ConfigSection):
    """Network settings shared by every service (each service picks its own default port)."""

    # A misspelt setting ("max_mesage_bytes") is an error, not a silently ignored key.

    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 exposes the service to the network")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (see port_file)")
    port_file: Path | None = Field(None, description="write the bound port here once serving")
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES, ge=1024, description="largest message received or sent, in bytes"
    )
    grace_seconds: float = Field(10.0, ge=0, description="time in-flight calls get on shutdown")
    keepalive_seconds: float = Field(30.0, gt=0)
    keepalive_timeout_seconds: float = Field(10.0, gt=0)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    auth_token: SecretStr | None = Field(None, description="shared bearer token; also GRPO_AUTH_TOKEN")


@dataclass(frozen=True)
class ServiceRegistration:
    """A servicer and the generated function that adds it to a server."""

    full_name: str  # e.g. "grpo.v1.RewardService"
    add_to_server: Callable[[grpc.aio.Server], None]


def registration(
    servicer: object,
    add_fn: Callable[[Any, grpc.aio.Server], None],
    full_name: str,
    request_deserializers: Mapping[str, Callable[[bytes], Any]] | None = None,
) -> ServiceRegistration:
    """Pair a servicer with its generated `add_XServicer_to_server` function.

    `full_name` is the proto service name ("grpo.v1.RewardService"): it is what health checks and
    reflection report, e.g. `registration(servicer, reward_pb2_grpc.add_RewardServiceServicer_to_server,
    reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name)`.
    `request_deserializers` replaces the generated deserializer of the named methods
    ({"UpdateWeights": read_weight_chunk}). Every method's deserializer is made safe
    (`request_decoding.guard_handler`): a body it cannot decode is answered INVALID_ARGUMENT.
    """

    def add_to_server(server: grpc.aio.Server) -> None:
        rewriter = _DeserializerRewriter(server, full_name, dict(request_deserializers or {}))
        add_fn(servicer, rewriter)
        rewriter.check_applied(full_name)

    return ServiceRegistration(full_name=full_name, add_to_server=add_to_server)


class _DeserializerRewriter:
    """Stands in for the server while generated code registers a service's method handlers.

    Generated `add_XServicer_to_server` functions build one `{method: handler}` dict and pass it to
    `add_generic_rpc_handlers` (wrapped) and to `add_registered_method_handlers` (as is); the dict
    is the public part, so handlers are rewritten there and both registrations made from it. Each
    method's input type comes from the service's descriptor, so a new method is guarded unasked.
    """

    def __init__(
        self, server: grpc.aio.Server, full_name: str, deserializers: dict[str, Callable[[bytes], Any]]
    ) -> None:
        self._server = server
        self._methods = descriptor_pool.Default().FindServiceByName(full_name).methods_by_name
        self._deserializers = deserializers
        self._applied = False

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: the same handlers arrive as a dict in add_registered_method_handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        unknown = set(self._deserializers) - set(handlers)
        if unknown:
            raise ValueError(f"{service} has no method(s) {sorted(unknown)} to give a deserializer")
        rewritten = {
            name: guard_handler(
                handler._replace(
                    request_deserializer=self._deserializers.get(name, handler.request_deserializer)
                ),
                self._methods[name].input_type,
            )
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, rewritten),))
        self._server.add_registered_method_handlers(service, rewritten)
        self._applied = True

    def check_applied(self, service: str) -> None:
        if not self._applied:
            raise RuntimeError(
                f"the generated code for {service} did not call add_registered_method_handlers; "
                "regenerate the stubs with the grpcio-tools version in uv.lock (proto/generate.py)"
            )


@dataclass
class RunningServer:
    """A started server: its bound address, and the health servicer that graceful shutdown flips."""

    server: grpc.aio.Server
    host: str
    port: int
    health: health_aio.HealthServicer
    service_names: tuple[str, ...]
    grace_seconds: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Mark every service NOT_SERVING, refuse new calls, let in-flight calls finish within grace."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace_seconds if grace_seconds is None else grace_seconds)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


async def start_server(services: Sequence[ServiceRegistration], config: ServerConfig) -> RunningServer:
    """Create, bind and start a server for `services`; returns once it accepts calls."""
    token = read_token(config.auth_token)
    interceptors = [TokenAuthServerInterceptor(token)] if token else []
    server = grpc.aio.server(interceptors=interceptors, options=server_options(config))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for service in services:
        service.add_to_server(server)
    names = tuple(s.full_name for s in services)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    bind = f"{config.host}:{config.port}"
    credentials = server_credentials(config.tls)
    try:
        port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise OSError(f"cannot bind {bind}: {exc}; is the port in use?") from exc
    if port == 0:  # older grpcio reports a failed bind by returning 0 instead of raising
        raise OSError(f"cannot bind {bind}; is the port in use or the address not local?")
    await server.start()
    for name in (*names, ""):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, config.host, port, health, names, config.grace_seconds)
    if config.port_file is not None:
        _write_port_file(config.port_file, port)
    logger.info(
        "serving %s on %s (tls=%s, auth=%s, max message %d bytes)",
        ", ".join(names),
        running.address,
        config.tls.enabled,
        bool(token),
        config.max_message_bytes,
    )
    return running


def _write_port_file(path: Path, port: int) -> None:
    """Atomic, so a launcher polling the file never reads a half-written number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


async def serve_until_signalled(running: RunningServer) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        logger.info("signal received: draining in-flight calls for up to %.1f s", running.grace_seconds)
        await running.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("server on %s stopped", running.address)
