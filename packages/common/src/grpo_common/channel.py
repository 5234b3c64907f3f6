"""Client channels configured the same way everywhere: limits, keepalive, TLS, auth, retries.

Retries use gRPC's own service-config retry policy, so they happen inside the channel with
exponential backoff and only for the methods named as idempotent (a streaming Generate or
UpdateWeights call is retried by its caller, which knows what was already received).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc
from pydantic import Field, SecretStr

from grpo_common.config import ConfigSection
from grpo_common.security import (
    ClientTLSConfig,
    channel_credentials,
    read_token,
    token_auth_client_interceptors,
)
from grpo_common.server import DEFAULT_MAX_MESSAGE_BYTES


class ChannelConfig(ConfigSection):
    """How a client reaches a service: TLS, token, limits, keepalive and the retry backoff."""

    tls: ClientTLSConfig = Field(default_factory=ClientTLSConfig)
    auth_token: SecretStr | None = Field(None, description="bearer token; also GRPO_AUTH_TOKEN")
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    keepalive_seconds: float = Field(
        30.0, ge=5.0, description="ping interval; servers refuse pings more often than every 5 s"
    )
    retry_attempts: int = Field(5, ge=1, le=5, description="gRPC caps attempts at 5")
    retry_initial_backoff_seconds: float = Field(0.2, gt=0)
    retry_max_backoff_seconds: float = Field(5.0, gt=0)


def retry_service_config(idempotent_methods: Sequence[tuple[str, str]], config: ChannelConfig) -> str:
    """A gRPC service config retrying (service, method) pairs on UNAVAILABLE with backoff."""
    names = [{"service": service, "method": method} for service, method in idempotent_methods]
    policy = {
        "maxAttempts": config.retry_attempts,
        # Durations in the service config are decimal seconds with an "s" ("0.2s"); never "1e-05s".
        "initialBackoff": f"{config.retry_initial_backoff_seconds:.6f}s",
        "maxBackoff": f"{config.retry_max_backoff_seconds:.6f}s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]} if names else {})


def create_channel(
    target: str,
    config: ChannelConfig | None = None,
    *,
    idempotent_methods: Sequence[tuple[str, str]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to `target` ("host:port").

    `idempotent_methods` lists (full service name, method) pairs the channel may retry by itself,
    e.g. [("grpo.v1.RewardService", "Score")]. Deadlines are per call: pass `timeout=`.
    """
    config = config or ChannelConfig()
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(idempotent_methods, config)),
    ]
    if config.tls.server_name:
        options.append(("grpc.ssl_target_name_override", config.tls.server_name))
    token = read_token(config.auth_token)
    interceptors = token_auth_client_interceptors(token) if token else None
    credentials = channel_credentials(config.tls)
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
