"""The sender's half of the weight stream: a state dict -> `grpo.v1.WeightChunk` buckets.

Why its own module: a learner only encodes, a rollout service only decodes (`weight_decoder`);
the bucketing and its measured default live here, next to the client-side method that sends
pre-serialised chunks. The stream format itself is described in `grpo_common.weights.codec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import grpc
import torch
from grpo.v1 import rollout_pb2
from isal.isal_zlib import crc32

from grpo_common.weights.allocator import keep_freed_buffers
from grpo_common.weights.delta import EncodedTensor
from grpo_common.weights.specs import dtype_name
from grpo_common.weights.wire import DEFAULT_BUCKET_BYTES, ChunkView, PieceView, write_chunk

UPDATE_WEIGHTS_METHOD = "/grpo.v1.RolloutService/UpdateWeights"


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's row-major bytes without an extra copy when it is already contiguous on CPU."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


StreamTensors = (
    Mapping[str, torch.Tensor | EncodedTensor] | Iterable[tuple[str, torch.Tensor | EncodedTensor]]
)


def encode_chunk_views(
    tensors: StreamTensors,
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None,
    delta_base: rollout_pb2.DeltaBase | None = None,
    full_set: bool = False,
) -> Iterator[ChunkView]:
    """The chunks of one update as views on the tensors' bytes; the last has `last=True` and totals.

    With `lora_adapter` every chunk carries it: the tensors are that adapter's, under peft's names.
    With `delta_base` (v1.3) the stream is a delta on top of that base, and a tensor may be an
    `EncodedTensor` (grpo_common.weights.delta): its pieces carry the payload and its encoding.
    `full_set` says the stream names every tensor of the sender's weights.

    Tensors are converted one at a time, so peak extra memory is about one tensor plus one bucket.
    A chunk's data stay valid until the next chunk is requested.
    """
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    keep_freed_buffers()
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    pieces: list[PieceView] = []
    used = 0
    total_tensors = 0
    total_bytes = 0
    for name, tensor in items:
        dtype = dtype_name(tensor.dtype)
        shape = tuple(tensor.shape)
        if isinstance(tensor, EncodedTensor):
            if delta_base is None:
                raise ValueError(f"tensor {name!r} is delta-encoded but the stream has no delta_base")
            data, encoding = memoryview(tensor.payload), int(tensor.encoding)
        else:
            data, encoding = _raw_bytes(tensor), 0
        encoded_bytes = len(data) if encoding else 0
        crc = 0
        offset = 0
        while True:
            if used >= bucket_bytes:
                yield ChunkView(
                    policy_version,
                    pieces,
                    lora_adapter=lora_adapter,
                    delta_base=delta_base,
                    full_set=full_set,
                )
                pieces = []
                used = 0
            take = min(bucket_bytes - used, len(data) - offset)
            piece_bytes = data[offset : offset + take]
            crc = crc32(piece_bytes, crc)
            done = offset + take == len(data)
            pieces.append(
                PieceView(
                    name, dtype, shape, offset, piece_bytes, crc if done else None, encoding, encoded_bytes
                )
            )
            offset += take
            used += take + 64  # a piece costs its header even when empty
            if done:
                break
        total_tensors += 1
        total_bytes += len(data)
    yield ChunkView(
        policy_version, pieces, True, total_tensors, total_bytes, lora_adapter, delta_base, full_set
    )


def encode_state_dict(
    tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> Iterator[rollout_pb2.WeightChunk]:
    """The chunks of one update as protobuf messages (for `stub.UpdateWeights(...)`)."""
    for view in encode_chunk_views(tensors, policy_version, bucket_bytes):
        yield view.to_proto()


def encode_state_dict_wire(
    tensors: StreamTensors,
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None,
    delta_base: rollout_pb2.DeltaBase | None = None,
    full_set: bool = False,
) -> Iterator[bytes]:
    """The chunks of one update already serialised, for `update_weights_method(channel)`.

    The same bytes protobuf would produce, with one copy of the tensor data instead of three.
    """
    for view in encode_chunk_views(tensors, policy_version, bucket_bytes, lora_adapter, delta_base, full_set):
        yield write_chunk(view)


def update_weights_method(channel: grpc.aio.Channel) -> grpc.aio.StreamUnaryMultiCallable:
    """`RolloutService.UpdateWeights` taking pre-serialised chunks (`encode_state_dict_wire`)."""
    return channel.stream_unary(
        UPDATE_WEIGHTS_METHOD,
        request_serializer=None,  # the chunks are bytes already
        response_deserializer=rollout_pb2.UpdateWeightsResponse.FromString,
    )
