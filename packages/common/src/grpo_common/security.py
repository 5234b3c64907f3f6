"""TLS credentials and shared-token authentication, each one setting away.

Auth is a bearer token in the `authorization` metadata, compared in constant time. The server
interceptor rejects a call before its handler runs, so an unauthenticated caller costs no work and
learns nothing about the expected token. Health checks stay open so load balancers and
orchestrators can probe a service without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field, SecretStr, model_validator

from grpo_common.config import ConfigSection

AUTH_METADATA_KEY = "authorization"
AUTH_TOKEN_ENV = "GRPO_AUTH_TOKEN"
OPEN_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)


class TLSConfig(ConfigSection):
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


class ClientTLSConfig(ConfigSection):
    """Client side: a CA bundle to trust (or the system roots), and a client cert/key for mTLS.

    Naming a CA or a client certificate turns TLS on by itself: a user who points at a CA file and
    forgets `enabled = true` must not silently get a plaintext connection.
    """

    enabled: bool = Field(False, description="use TLS with the system roots when no ca is given")
    ca: Path | None = Field(None, description="PEM CA bundle that signed the server certificate")
    cert: Path | None = Field(None, description="PEM client certificate chain (mTLS)")
    key: Path | None = Field(None, description="PEM client private key (mTLS)")
    server_name: str | None = Field(
        None, description="name to verify in the server certificate when it differs from the address"
    )

    @model_validator(mode="after")
    def _enabled_by_files(self) -> ClientTLSConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key (the client certificate for mTLS) must be given together")
        if self.ca is not None or self.cert is not None:
            self.enabled = True
        return self


def read_token(token: SecretStr | str | None) -> str | None:
    """The configured token, else the GRPO_AUTH_TOKEN environment variable, else None (auth off)."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    token = token or os.environ.get(AUTH_TOKEN_ENV) or None
    return token


def _read_pem(path: Path, what: str) -> bytes:
    """The file's bytes, or an error naming the setting and the path (not a bare FileNotFoundError)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        problem = f"cannot read {what} {path}: {exc.strerror}"
        raise ValueError(f"{problem}; check the path and its permissions") from None


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials | None:
    if tls.cert is None or tls.key is None:  # TLSConfig's validator allows only both or neither
        return None
    client_ca = _read_pem(tls.client_ca, "tls.client_ca") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(_read_pem(tls.key, "tls.key"), _read_pem(tls.cert, "tls.cert"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(tls: ClientTLSConfig) -> grpc.ChannelCredentials | None:
    if not tls.enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(tls.ca, "tls.ca") if tls.ca else None,
        private_key=_read_pem(tls.key, "tls.key") if tls.key else None,
        certificate_chain=_read_pem(tls.cert, "tls.cert") if tls.cert else None,
    )


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _token_matches(metadata: Any, expected_digest: bytes) -> bool:
    """Compare fixed-size digests in constant time, so neither content nor length of the token leaks."""
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY:
            presented = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(_digest(presented), expected_digest)
    return False


class TokenAuthServerInterceptor(grpc.aio.ServerInterceptor):
    """Rejects every call (except health checks) that lacks `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must be non-empty")
        self._expected_digest = _digest(b"Bearer " + token.encode())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if _token_matches(handler_call_details.invocation_metadata, self._expected_digest):
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


class _TokenMetadata:
    """Adds `authorization: Bearer <token>` to a call's metadata."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must be non-empty")
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


class TokenAuthClientInterceptor(_TokenMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    """Sends the bearer token on unary-unary calls.

    grpc.aio files each interceptor object under one call kind only (the first base class it
    matches), so a single object cannot cover streaming calls: use
    `token_auth_client_interceptors(token)`, which returns one interceptor per call kind.
    """

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _TokenAuthUnaryStream(_TokenMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _TokenAuthStreamUnary(_TokenMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _TokenAuthStreamStream(_TokenMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def token_auth_client_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send the bearer token on all four call kinds (unary and streaming)."""
    return [
        TokenAuthClientInterceptor(token),
        _TokenAuthUnaryStream(token),
        _TokenAuthStreamUnary(token),
        _TokenAuthStreamStream(token),
    ]
