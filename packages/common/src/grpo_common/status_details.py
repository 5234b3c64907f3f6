"""Every status message a service sends fits in gRPC's metadata, whatever a handler put in it.

A refusal often quotes the caller's value ("unknown environment '...'"). A hostile or careless caller
can make that value megabytes long, and a status message over gRPC's metadata limits (8 KiB soft,
16 KiB hard per value) is not delivered: the caller sees RESOURCE_EXHAUSTED "Stream removed" instead
of the INVALID_ARGUMENT that names its mistake. So every handler runs with a context whose `abort`
and `set_details` cut the message to `MAX_DETAILS_BYTES`, saying how much was left out: the one
wrapper every method of every service is registered through (`request_decoding.guard_handler`) passes
it, so methods added later are covered too.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

# gRPC percent-encodes each non-ASCII byte of a status message (3 characters on the wire), so
# 1500 bytes stay well inside the 8 KiB soft limit with the rest of the trailers.
MAX_DETAILS_BYTES = 1500


def bounded(details: str) -> str:
    """`details`, cut to MAX_DETAILS_BYTES of UTF-8 (on a character boundary) with a note of the rest."""
    encoded = details.encode("utf-8", errors="replace")
    if len(encoded) <= MAX_DETAILS_BYTES:
        return details
    kept = encoded[:MAX_DETAILS_BYTES].decode("utf-8", errors="ignore")
    return f"{kept}... ({len(details) - len(kept)} more characters not shown)"


class BoundedContext:
    """A ServicerContext whose status messages are `bounded`; everything else is the real one's."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        if trailing_metadata:
            await self._context.abort(code, bounded(details), trailing_metadata)
        else:
            await self._context.abort(code, bounded(details))
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def set_details(self, details: str) -> None:
        self._context.set_details(bounded(details))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
