"""describe_undecodable names the field protobuf refused, walking any message by its descriptor."""

from __future__ import annotations

import asyncio

import grpc
from grpo.v1 import reward_pb2, rollout_pb2
from grpo_common.request_decoding import (
    UndecodableRequest,
    describe_undecodable,
    guard_handler,
    safe_deserializer,
)
from grpo_common.status_details import MAX_DETAILS_BYTES, bounded


def _with_bad_text(message: bytes, good: str) -> bytes:
    """`message` with the UTF-8 of `good` replaced by the same number of invalid bytes."""
    encoded = good.encode()
    assert message.count(encoded) == 1
    return message.replace(encoded, b"\xff" * len(encoded))


def test_nested_and_repeated_string_fields_are_named_with_their_index() -> None:
    request = rollout_pb2.RolloutRequest(
        prompts=[
            rollout_pb2.Prompt(id="a", text="fine", reference="1"),
            rollout_pb2.Prompt(id="b", text="BROKEN", reference="2"),
        ],
        reward_spec=reward_pb2.RewardSpec(),
    ).SerializeToString()
    bad = _with_bad_text(request, "BROKEN")
    message = describe_undecodable(bad, rollout_pb2.RolloutRequest.DESCRIPTOR)
    assert message.startswith("prompts[1].text is not valid UTF-8")
    score = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(id="x", completion="ok", task="TASKNAME")])
    bad = _with_bad_text(score.SerializeToString(), "TASKNAME")
    assert describe_undecodable(bad, reward_pb2.ScoreRequest.DESCRIPTOR).startswith("items[0].task is not")


def test_malformed_bytes_say_what_is_wrong_and_the_deserializer_never_raises() -> None:
    decode = safe_deserializer(rollout_pb2.RolloutRequest.FromString, rollout_pb2.RolloutRequest.DESCRIPTOR)
    for garbage in (b"\x08\xff\xff", b"\x0a\x7fabc", b"\x0f", b"\xff" * 11):
        answer = decode(garbage)
        assert isinstance(answer, UndecodableRequest)
        assert "not a valid grpo.v1.RolloutRequest (malformed protobuf" in answer.message, answer.message
    assert decode(b"") == rollout_pb2.RolloutRequest()


def test_a_streaming_handler_that_writes_with_context_write_still_works() -> None:
    """guard_handler wraps both styles of server-streaming handler: async generators and coroutines."""

    class Context:
        def __init__(self) -> None:
            self.written: list[str] = []

        async def write(self, message: str) -> None:
            self.written.append(message)

        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(f"{code.name}: {details}")

    async def writes(request: str, context: Context) -> None:
        await context.write(request + "!")

    async def yields(request: str, context: Context):
        yield request + "?"

    async def scenario() -> tuple[list[str], list[str], str]:
        outputs = []
        for behaviour in (writes, yields):
            handler = guard_handler(
                grpc.unary_stream_rpc_method_handler(behaviour, request_deserializer=bytes.decode),
                rollout_pb2.GetInfoRequest.DESCRIPTOR,
            )
            context = Context()
            yielded = [response async for response in handler.unary_stream("hi", context)]
            outputs.append(context.written + yielded)
        try:
            async for _ in handler.unary_stream(UndecodableRequest("broken"), Context()):
                pass
        except RuntimeError as refused:
            return outputs[0], outputs[1], str(refused)
        return outputs[0], outputs[1], ""

    wrote, yielded, refused = asyncio.run(scenario())
    assert wrote == ["hi!"] and yielded == ["hi?"] and refused == "INVALID_ARGUMENT: broken"


def test_a_status_message_quoting_a_huge_value_is_cut_to_fit_grpc_metadata() -> None:
    class Context:
        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(details)

    async def refuses(request: str, context: Context) -> str:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown environment {request!r}")
        return "unreachable"

    handler = guard_handler(
        grpc.unary_unary_rpc_method_handler(refuses, request_deserializer=bytes.decode),
        rollout_pb2.GetInfoRequest.DESCRIPTOR,
    )

    async def scenario(request: str) -> str:
        try:
            await handler.unary_unary(request, Context())
        except RuntimeError as refused:
            return str(refused)
        return ""

    short = asyncio.run(scenario("calc"))
    assert short == "unknown environment 'calc'"
    cut = asyncio.run(scenario("é" * 100_000))  # 2 bytes each in UTF-8
    assert cut.startswith("unknown environment 'éé") and cut.endswith("more characters not shown)")
    assert len(cut.encode()) <= MAX_DETAILS_BYTES + 60
    assert bounded("x" * MAX_DETAILS_BYTES) == "x" * MAX_DETAILS_BYTES
