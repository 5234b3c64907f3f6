"""Request bodies protobuf refuses to decode become INVALID_ARGUMENT naming the field, never UNKNOWN.

gRPC answers a request deserializer that raises with an opaque status (`UNKNOWN: Unexpected
DecodeError`), and the handler never learns why. So every method of every service is registered
(by `grpo_common.server.registration`) with `safe_deserializer`: it returns an `UndecodableRequest`
instead of raising, and `guard_handler` answers that with INVALID_ARGUMENT before the servicer runs.
It also hands the servicer a `status_details.BoundedContext`, so no status message outgrows gRPC's
metadata limit however long the value it quotes.

protobuf refuses a message with invalid UTF-8 in a string field as a whole, so to say *which* field
(`prompts[3].text`) `describe_undecodable` walks the wire format itself, guided by the message
descriptor: nested messages, repeated fields (with their index) and map entries alike.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from grpo_common.status_details import BoundedContext
from grpo_common.weights.wire import WireFormatError, read_len, read_varint, skip_field

_LEN = 2


@dataclass(frozen=True)
class UndecodableRequest:
    """What a safe deserializer returns for bytes protobuf refused; `message` says what is wrong."""

    message: str


def _find_invalid_utf8(
    buf: memoryview, start: int, end: int, descriptor: Descriptor, prefix: str
) -> str | None:
    """The path of the first string field whose bytes are not UTF-8, or None; raises WireFormatError."""
    seen: dict[int, int] = {}
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number)
        if wire_type != _LEN or field is None:
            pos = skip_field(buf, key, pos, end)
            continue
        value_start, pos = read_len(buf, pos, end, f"field {prefix}{field.name}")
        index = seen.get(number, 0)
        seen[number] = index + 1
        name = f"{prefix}{field.name}[{index}]" if field.is_repeated else f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                str(buf[value_start:pos], "utf-8")
            except UnicodeDecodeError:
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            found = _find_invalid_utf8(buf, value_start, pos, field.message_type, f"{name}.")
            if found:
                return found
    return None


def describe_undecodable(data: bytes, descriptor: Descriptor) -> str:
    """E.g. "prompts[3].text is not valid UTF-8; ...", or what is malformed about the bytes."""
    buf = memoryview(data).cast("B")
    try:
        field = _find_invalid_utf8(buf, 0, len(buf), descriptor, "")
    except WireFormatError as exc:
        return (
            f"the request body is not a valid {descriptor.full_name} (malformed protobuf: {exc}); "
            "send the message serialised by a protobuf library"
        )
    if field:
        return f"{field} is not valid UTF-8; send text encoded as UTF-8"
    return (
        f"the request body is not a valid {descriptor.full_name} (protobuf refused it: a field has "
        "the wrong wire type or a value is out of range); send the message serialised by a protobuf library"
    )


def safe_deserializer(
    deserialize: Callable[[bytes], Any], descriptor: Descriptor
) -> Callable[[bytes], Any | UndecodableRequest]:
    """`deserialize`, returning an UndecodableRequest instead of raising."""

    def decode(data: bytes) -> Any | UndecodableRequest:
        try:
            return deserialize(data)
        except Exception:  # protobuf's DecodeError type differs between implementations
            pass
        try:
            return UndecodableRequest(describe_undecodable(data, descriptor))
        except Exception:  # never let the description itself fail the call
            return UndecodableRequest(f"the request body is not a valid {descriptor.full_name}")

    return decode


async def _refuse(context: grpc.aio.ServicerContext, request: UndecodableRequest) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A streaming handler's responses: it yields them, or (a coroutine) writes them with context.write."""
    if inspect.isawaitable(result):
        await result
        return
    async for response in result:
        yield response


async def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, UndecodableRequest):
            await _refuse(context, request)
        yield request


def guard_handler(handler: grpc.RpcMethodHandler, descriptor: Descriptor) -> grpc.RpcMethodHandler:
    """`handler` with a safe deserializer, answering undecodable requests with INVALID_ARGUMENT."""
    deserializer = safe_deserializer(handler.request_deserializer, descriptor)
    if handler.request_streaming:
        kind = "stream_stream" if handler.response_streaming else "stream_unary"
        behaviour = getattr(handler, kind)
        if handler.response_streaming:

            async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                context = BoundedContext(context)
                async for response in _responses(behaviour(_checked(requests, context), context)):
                    yield response

            wrapped: Callable[..., Any] = stream_stream
        else:

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                context = BoundedContext(context)
                return await behaviour(_checked(requests, context), context)

            wrapped = stream_unary
    elif handler.response_streaming:
        kind, behaviour = "unary_stream", handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            context = BoundedContext(context)
            if isinstance(request, UndecodableRequest):
                await _refuse(context, request)
            async for response in _responses(behaviour(request, context)):
                yield response

        wrapped = unary_stream
    else:
        kind, behaviour = "unary_unary", handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            context = BoundedContext(context)
            if isinstance(request, UndecodableRequest):
                await _refuse(context, request)
            return await behaviour(request, context)

        wrapped = unary_unary
    if not (inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
        # a generated "Method not implemented!" stub, or a synchronous handler: left as it is
        return handler._replace(request_deserializer=deserializer)
    return handler._replace(request_deserializer=deserializer, **{kind: wrapped})
