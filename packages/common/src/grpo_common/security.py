"""TLS credentials and shared-token authentication, each one setting away.

Auth is a bearer token in the `authorization` metadata, compared in constant time. The server
interceptor rejects a call before its handler runs, so an unauthenticated caller costs no work and
learns nothing about the expected token. Health checks stay open so load balancers and
orchestrators can probe a service without the secret.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, Field, SecretStr, model_validator

AUTH_METADATA_KEY = "authorization"
AUTH_TOKEN_ENV = "GRPO_AUTH_TOKEN"
OPEN_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)


class TLSConfig(BaseModel):
    """Server side: cert + key turn TLS on; client_ca additionally requires client certificates (mTLS)."""

    cert: Path | None = Field(None, description="PEM certificate chain of this server")
    key: Path | None = Field(None, description="PEM private key of this server")
    client_ca: Path | None = Field(None, description="PEM CA bundle; when set, clients must present a cert")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TLSConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key must be given together")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("tls.client_ca (mTLS) needs tls.cert and tls.key too")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None


class ClientTLSConfig(BaseModel):
    """Client side: a CA bundle to trust (or the system roots), and a client cert/key for mTLS."""

    enabled: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # Name to verify in the server certificate when it differs from the address (e.g. an IP).
    server_name: str | None = None


def read_token(token: SecretStr | str | None) -> str | None:
    """The configured token, else the GRPO_AUTH_TOKEN environment variable, else None (auth off)."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    token = token or os.environ.get(AUTH_TOKEN_ENV) or None
    return token


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials | None:
    if not tls.enabled:
        return None
    assert tls.cert is not None and tls.key is not None
    client_ca = tls.client_ca.read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(tls: ClientTLSConfig) -> grpc.ChannelCredentials | None:
    if not tls.enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes() if tls.ca else None,
        private_key=tls.key.read_bytes() if tls.key else None,
        certificate_chain=tls.cert.read_bytes() if tls.cert else None,
    )


def _token_matches(metadata: Any, expected: bytes) -> bool:
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY:
            presented = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(presented, b"Bearer " + expected)
    return False


class TokenAuthServerInterceptor(grpc.aio.ServerInterceptor):
    """Rejects every call (except health checks) that lacks `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must be non-empty")
        self._expected = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if _token_matches(handler_call_details.invocation_metadata, self._expected):
            return handler
        return _rejecting_handler(handler)


def _rejecting_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same streaming shape as `handler` that aborts with UNAUTHENTICATED."""
    message = "missing or invalid auth token: send metadata 'authorization: Bearer <token>'"

    async def reject(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def reject_stream(_request: Any, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(reject_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(reject, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(reject_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(reject, **kwargs)


class _TokenAuthClientInterceptor:
    """Adds the bearer token to every call's metadata (all four call shapes)."""

    def __init__(self, token: str) -> None:
        self._pair = (AUTH_METADATA_KEY, f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._pair)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class TokenAuthClientInterceptor(
    _TokenAuthClientInterceptor,
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    pass
