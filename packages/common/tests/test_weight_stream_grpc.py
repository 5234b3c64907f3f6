"""Weight updates over a real gRPC stream: applied whole, or rejected with the receiver unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
import torch
from common_fixtures import FakeRolloutServicer
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel
from grpo_common.weights.codec import encode_state_dict, encode_state_dict_wire, update_weights_method

TOKEN = "weights-token"


def _model() -> dict[str, torch.Tensor]:
    return {
        "embed": torch.zeros(300, 8),
        "norm": torch.ones(8, dtype=torch.bfloat16),
        "step": torch.tensor(0),
    }


def _update() -> dict[str, torch.Tensor]:
    return {
        "embed": torch.randn(8, 300).t(),  # non-contiguous on the sender
        "norm": torch.full((8,), 0.5, dtype=torch.bfloat16),
        "step": torch.tensor(12),
    }


@pytest.mark.parametrize("sender", ["protobuf messages", "pre-serialised chunks"])
def test_a_stream_of_buckets_is_applied_whole(serve, stub, sender: str) -> None:
    servicer = FakeRolloutServicer(_model())
    update = _update()

    async def scenario() -> None:
        async with (
            serve(servicer, auth_token=TOKEN) as running,
            create_channel(running.address, ChannelConfig(auth_token=TOKEN)) as channel,
        ):
            if sender == "protobuf messages":
                chunks = list(encode_state_dict(update, policy_version=1, bucket_bytes=1024))
                call = rollout_pb2_grpc.RolloutServiceStub(channel).UpdateWeights
            else:
                chunks = list(encode_state_dict_wire(update, policy_version=1, bucket_bytes=1024))
                call = update_weights_method(channel)
            assert len(chunks) > 5  # the 9600-byte embedding crosses several messages
            reply = await call(iter(chunks), timeout=10)
        assert (reply.policy_version, reply.tensors, reply.bytes) == (1, 3, 9600 + 16 + 8)
        assert servicer.policy_version == 1
        for name, tensor in update.items():
            assert torch.equal(servicer.weights[name], tensor)

    asyncio.run(scenario())


def _corrupt_checksum(chunks: list[rollout_pb2.WeightChunk]) -> list[rollout_pb2.WeightChunk]:
    piece = chunks[2].pieces[0]
    piece.data = bytes([piece.data[0] ^ 0xFF]) + piece.data[1:]
    return chunks


def _truncate(chunks: list[rollout_pb2.WeightChunk]) -> list[rollout_pb2.WeightChunk]:
    return chunks[:-1]


def _bad_dtype(chunks: list[rollout_pb2.WeightChunk]) -> list[rollout_pb2.WeightChunk]:
    chunks[-1].pieces[-1].dtype = "float128"
    return chunks


def _bytes_short(chunks: list[rollout_pb2.WeightChunk]) -> list[rollout_pb2.WeightChunk]:
    piece = chunks[-1].pieces[-1]
    piece.data = piece.data[:-1]
    return chunks


def _wrong_shape_for_the_model(chunks: list[rollout_pb2.WeightChunk]) -> list[rollout_pb2.WeightChunk]:
    state = {**_update(), "norm": torch.ones(4, dtype=torch.bfloat16)}
    return list(encode_state_dict(state, policy_version=1, bucket_bytes=1024))


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (_corrupt_checksum, "tensor 'embed': checksum mismatch"),
        (_truncate, "stream truncated"),
        (_bad_dtype, "unknown dtype 'float128'"),
        (_bytes_short, "tensor 'step'"),
        (_wrong_shape_for_the_model, "tensor 'norm': shape [4] does not match the model's [8]"),
    ],
)
def test_a_malformed_stream_is_invalid_argument_and_changes_nothing(
    serve, stub, corrupt: Callable, problem: str
) -> None:
    servicer = FakeRolloutServicer(_model())
    before = servicer.weights

    async def scenario() -> None:
        async with serve(servicer) as running, stub(running) as client:
            chunks = corrupt(list(encode_state_dict(_update(), policy_version=1, bucket_bytes=1024)))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.UpdateWeights(iter(chunks), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert problem in err.value.details()
            assert "Traceback" not in err.value.details()

    asyncio.run(scenario())
    assert servicer.calls["UpdateWeights"] == 1
    assert servicer.policy_version == 0 and servicer.weights is before
    for name, tensor in _model().items():
        assert torch.equal(servicer.weights[name], tensor)


def test_bytes_that_are_not_a_weight_chunk_are_invalid_argument(serve) -> None:
    servicer = FakeRolloutServicer(_model())
    good = list(encode_state_dict_wire(_update(), policy_version=1, bucket_bytes=1024))

    async def scenario() -> None:
        async with serve(servicer) as running, create_channel(running.address) as channel:
            garbage = good[0][:-3]  # the last piece's data claims more bytes than the message has
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await update_weights_method(channel)(iter([garbage, *good[1:]]), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed chunk" in err.value.details()

    asyncio.run(scenario())
    assert servicer.policy_version == 0
