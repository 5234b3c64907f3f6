"""weight_wire reads and writes exactly what protobuf does and refuses what is not a chunk; received
tensors can land in recycled memory."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import torch
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.server import registration
from grpo_common.weights.codec import (
    WeightStreamDecoder,
    WeightStreamError,
    encode_chunk_views,
    encode_state_dict,
    encode_state_dict_wire,
)
from grpo_common.weights.receive_buffers import ReceiveBuffers
from grpo_common.weights.wire import ChunkView, PieceView, WireFormatError, read_chunk, write_chunk

CHUNKS = {
    "empty stream end": ChunkView(0, [], last=True),
    "negative version and shape": ChunkView(
        -3, [PieceView("w", "float32", (-1, 2**40), 2**33, b"\x00\x01", 0xFFFFFFFF)]
    ),
    "0-d and empty pieces": ChunkView(
        7,
        [
            PieceView("scalar", "int64", (), 0, b"\x01" * 8, 5),
            PieceView("empty", "bfloat16", (0, 4), 0, b"", 0),
        ],
        last=True,
        total_tensors=2,
        total_bytes=8,
    ),
    "a middle piece without crc": ChunkView(
        2**62, [PieceView("größe.weight", "float16", (3,), 6, b"abcdef", None)], total_bytes=2**63
    ),
    "a v1.3 delta chunk": ChunkView(
        9,
        [
            PieceView("w", "bfloat16", (4, 4), 0, b"zstd", 7, encoding=1, encoded_bytes=4),
            PieceView("v", "float32", (2**20,), 3, b"pl", None, encoding=2, encoded_bytes=2**33),
        ],
        last=True,
        total_tensors=2,
        total_bytes=6,
        delta_base=rollout_pb2.DeltaBase(
            policy_version=8, fingerprint=rollout_pb2.WeightFingerprint(digest=2**64 - 1, tensors=2)
        ),
        full_set=True,
    ),
}


def _as_tuple(view: ChunkView) -> tuple:
    pieces = [
        (p.name, p.dtype, p.shape, p.offset, bytes(p.data), p.crc32, p.encoding, p.encoded_bytes)
        for p in view.pieces
    ]
    base = view.delta_base.SerializeToString() if view.delta_base is not None else None
    return (view.policy_version, pieces, view.last, view.total_tensors, view.total_bytes, base, view.full_set)


@pytest.mark.parametrize("name", list(CHUNKS))
def test_written_bytes_equal_protobufs_own(name: str) -> None:
    view = CHUNKS[name]
    assert write_chunk(view) == view.to_proto().SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", list(CHUNKS))
def test_protobufs_bytes_read_back_to_the_same_chunk(name: str) -> None:
    view = CHUNKS[name]
    assert _as_tuple(read_chunk(view.to_proto().SerializeToString())) == _as_tuple(view)
    assert _as_tuple(
        ChunkView.from_proto(rollout_pb2.WeightChunk.FromString(write_chunk(view)))
    ) == _as_tuple(view)


def test_unknown_fields_from_a_newer_sender_are_skipped() -> None:
    view = CHUNKS["0-d and empty pieces"]
    extra = bytes([9 << 3 | 0, 0x96, 0x01])  # field 9, varint
    extra += bytes([10 << 3 | 2, 3]) + b"xyz"  # field 10, length-delimited
    extra += bytes([11 << 3 | 1]) + b"12345678"  # field 11, fixed64
    extra += bytes([12 << 3 | 5]) + b"1234"  # field 12, fixed32
    extra += bytes([0x80 | (16 << 3 | 2) & 0x7F, (16 << 3 | 2) >> 7, 1]) + b"z"  # field 16: a 2-byte key
    assert _as_tuple(read_chunk(write_chunk(view) + extra)) == _as_tuple(view)
    assert rollout_pb2.WeightChunk.FromString(write_chunk(view) + extra).policy_version == 7


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (bytes([0x08, 0x80]), "ends inside a varint"),
        (bytes([0x12, 0x05, 0x0A]), "tensor piece claims 5 bytes"),
        (bytes([0x12, 0x03, 0x0A, 0x05, 0x61]), "piece name claims 5 bytes"),
        (bytes([0x12, 0x03, 0x0A, 0x01, 0xFF]), "piece name is not valid UTF-8"),
        (bytes([0x08]) + b"\xff" * 11, "longer than 10 bytes"),
        (bytes([3 << 3 | 3]), "unsupported or truncated wire type"),
    ],
)
def test_malformed_bytes_are_refused_by_name(raw: bytes, problem: str) -> None:
    with pytest.raises(WireFormatError, match=problem):
        read_chunk(raw)
    decoder = WeightStreamDecoder()
    with pytest.raises(WeightStreamError, match="malformed chunk"):
        decoder.feed(raw)


def test_a_stream_decodes_the_same_from_bytes_and_from_messages() -> None:
    state = {
        "embed": torch.randn(40, 30).t(),
        "norm": torch.randn(30, dtype=torch.float32).to(torch.bfloat16),
        "count": torch.tensor(3),
        "nothing": torch.empty(0, 5),
    }
    from_bytes = WeightStreamDecoder()
    for raw in encode_state_dict_wire(state, 4, bucket_bytes=1000):
        from_bytes.feed(raw)
    from_messages = WeightStreamDecoder()
    for chunk in encode_state_dict(state, 4, bucket_bytes=1000):
        from_messages.feed(chunk)
    a, b = from_bytes.finish(), from_messages.finish()
    assert a.policy_version == b.policy_version == 4
    for name, tensor in state.items():
        assert torch.equal(a.tensors[name], tensor) and a.tensors[name].dtype == tensor.dtype
        assert torch.equal(b.tensors[name], tensor)
    wire = [bytes(c) for c in encode_state_dict_wire(state, 4, bucket_bytes=1000)]
    protos = [c.SerializeToString(deterministic=True) for c in encode_state_dict(state, 4, bucket_bytes=1000)]
    assert wire == protos
    assert len(list(encode_chunk_views(state, 4, bucket_bytes=1000))) == len(wire)


def test_recycled_memory_receives_the_next_update_in_place() -> None:
    buffers = ReceiveBuffers()
    first = {"big": torch.randn(600, 500), "small": torch.randn(7)}
    decoder = WeightStreamDecoder(buffers=buffers)
    for raw in encode_state_dict_wire(first, 1, bucket_bytes=100_000):
        decoder.feed(raw)
    decoded = decoder.finish().tensors
    addresses = {name: tensor.data_ptr() for name, tensor in decoded.items()}
    buffers.recycle(decoded)
    assert buffers.nbytes == sum(t.nbytes for t in first.values())
    del decoded

    second = {"big": torch.randn(600, 500), "small": torch.randn(8)}  # "small" changed size
    decoder = WeightStreamDecoder(buffers=buffers)
    for raw in encode_state_dict_wire(second, 2, bucket_bytes=100_000):
        decoder.feed(raw)
    decoded = decoder.finish().tensors
    assert decoded["big"].data_ptr() == addresses["big"]  # written into the first update's memory
    for name, tensor in second.items():
        assert torch.equal(decoded[name], tensor)
    assert buffers.nbytes == 7 * 4  # the 7-float buffer waits for a tensor of its size


def test_a_deserializer_for_a_method_the_service_lacks_is_refused() -> None:
    registration_ = registration(
        rollout_pb2_grpc.RolloutServiceServicer(),
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server,
        "grpo.v1.RolloutService",
        {"Nope": bytes},
    )

    async def scenario() -> None:
        server = grpc.aio.server()
        with pytest.raises(ValueError, match=r"no method\(s\) \['Nope'\]"):
            registration_.add_to_server(server)

    asyncio.run(scenario())
