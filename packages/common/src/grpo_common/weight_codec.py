"""A `{name: tensor}` state dict <-> a stream of `grpo.v1.WeightChunk` buckets. No pickle.

Why buckets: one RPC per parameter costs a round trip each (hundreds for a real model), one
message for the whole model exceeds any sane message limit. A bucket packs many small tensors
into one message up to `bucket_bytes`; a tensor bigger than that is split into consecutive pieces.
Every tensor travels as its raw row-major bytes with dtype and shape, and a CRC-32 of all its
bytes on the piece that completes it. The final chunk carries totals, so a truncated stream is
detected. The decoder builds fresh tensors and hands them over only when the whole stream has
verified, so a receiver that applies the result never ends up half-updated.

What a receiver is protected from: a stream that claims tensors its model does not have (with
`expected`, refused at the first piece, before any memory is claimed; memory is committed only as
bytes arrive), and floating tensors holding NaN or infinities (one diverged learner step would
otherwise become every rollout's weights; refused unless `allow_non_finite`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import torch
from grpo.v1 import rollout_pb2
from isal.isal_zlib import crc32

from grpo_common.allocator import keep_freed_buffers
from grpo_common.receive_buffers import ReceiveBuffers, allocate, populate
from grpo_common.weight_wire import ChunkView, PieceView, WireFormatError, read_chunk, write_chunk

# Chosen with benchmarks/weight_transfer.py (1 GiB fp32/bf16 over gRPC loopback, 2-core box):
# 2-8 MiB buckets cost the least CPU per GiB on both sides and move the most bytes per second;
# 16-32 MiB cost 10-30% more and 64 MiB about twice as much on the sender (buffers that no longer
# stay in cache, allocations past glibc's mmap threshold). 4 MiB is also far under the 64 MiB
# default message limit, and a few hundred messages per GiB is negligible per-message overhead.
DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024
# A received piece is copied, checksummed and checked for NaN/inf in blocks of this size, so the
# second and third pass read the block from L2 instead of memory (measured on the 2-core box:
# 256 KiB blocks cost less receiver CPU than 64 KiB, 1 MiB or whole 4 MiB pieces).
_BLOCK_BYTES = 256 * 1024

UPDATE_WEIGHTS_METHOD = "/grpo.v1.RolloutService/UpdateWeights"


def read_weight_chunk(raw: bytes) -> bytes:
    """Request deserializer for UpdateWeights servers: keep the message as bytes.

    `WeightStreamDecoder.feed` parses them itself (`weight_wire`), reading tensor data in place
    instead of through protobuf's copies; malformed bytes then surface as a WeightStreamError
    (INVALID_ARGUMENT) rather than as an opaque deserialization failure.
    """
    return raw


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}
_ITEMSIZE: dict[torch.dtype, int] = {
    dtype: torch.empty((), dtype=dtype).element_size() for dtype in DTYPES.values()
}


class WeightStreamError(ValueError):
    """The stream is malformed; the message names the tensor and what is wrong."""


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise WeightStreamError(f"dtype {dtype} cannot be sent; supported: {sorted(DTYPES)}") from None


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's row-major bytes without an extra copy when it is already contiguous on CPU."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def encode_chunk_views(
    tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None,
) -> Iterator[ChunkView]:
    """The chunks of one update as views on the tensors' bytes; the last has `last=True` and totals.

    With `lora_adapter` every chunk carries it: the tensors are that adapter's, under peft's names.

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
        data = _raw_bytes(tensor)
        crc = 0
        offset = 0
        while True:
            if used >= bucket_bytes:
                yield ChunkView(policy_version, pieces, lora_adapter=lora_adapter)
                pieces = []
                used = 0
            take = min(bucket_bytes - used, len(data) - offset)
            piece_bytes = data[offset : offset + take]
            crc = crc32(piece_bytes, crc)
            done = offset + take == len(data)
            pieces.append(PieceView(name, dtype, shape, offset, piece_bytes, crc if done else None))
            offset += take
            used += take + 64  # a piece costs its header even when empty
            if done:
                break
        total_tensors += 1
        total_bytes += len(data)
    yield ChunkView(policy_version, pieces, True, total_tensors, total_bytes, lora_adapter)


def encode_state_dict(
    tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> Iterator[rollout_pb2.WeightChunk]:
    """The chunks of one update as protobuf messages (for `stub.UpdateWeights(...)`)."""
    for view in encode_chunk_views(tensors, policy_version, bucket_bytes):
        yield view.to_proto()


def encode_state_dict_wire(
    tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    policy_version: int,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None,
) -> Iterator[bytes]:
    """The chunks of one update already serialised, for `update_weights_method(channel)`.

    The same bytes protobuf would produce, with one copy of the tensor data instead of three.
    """
    for view in encode_chunk_views(tensors, policy_version, bucket_bytes, lora_adapter):
        yield write_chunk(view)


def update_weights_method(channel: grpc.aio.Channel) -> grpc.aio.StreamUnaryMultiCallable:
    """`RolloutService.UpdateWeights` taking pre-serialised chunks (`encode_state_dict_wire`)."""
    return channel.stream_unary(
        UPDATE_WEIGHTS_METHOD,
        request_serializer=None,  # the chunks are bytes already
        response_deserializer=rollout_pb2.UpdateWeightsResponse.FromString,
    )


@dataclass
class DecodedWeights:
    policy_version: int
    tensors: dict[str, torch.Tensor]
    total_bytes: int
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None  # an adapter stream: peft names


@dataclass
class _PartialTensor:
    """A tensor being received: its final storage, written in place piece by piece."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    storage: torch.Tensor  # uint8, uninitialised: each byte is written exactly once
    buffer: memoryview  # writable view of `storage`
    filled: int = 0
    crc: int = 0


@dataclass
class WeightStreamDecoder:
    """Feed chunks in order, then `finish()`; any inconsistency raises WeightStreamError.

    `max_total_bytes` bounds the memory a sender can make the receiver allocate. With `expected`
    (the receiver's tensor specs; empty = unknown), a tensor the model does not have, or has with
    another shape or dtype, is refused at its first piece, before its memory is claimed. With
    `buffers`, tensors are written into memory an earlier update left there (see ReceiveBuffers).
    Floating tensors with a NaN or an infinity are refused unless `allow_non_finite`: the check
    runs on each 256 KiB block of a piece right after it is copied in, while it is in L2.
    """

    max_total_bytes: int | None = None
    buffers: ReceiveBuffers | None = None
    expected: Mapping[str, TensorLike] | None = None
    allow_non_finite: bool = False
    # An adapter stream's expected tensors from its spec (raise ValueError to refuse the spec);
    # None: this receiver takes no adapter streams.
    adapter_expected: Callable[[rollout_pb2.LoraAdapterSpec], Mapping[str, TensorLike]] | None = None
    _version: int | None = None
    _adapter: rollout_pb2.LoraAdapterSpec | None = None
    _done: dict[str, torch.Tensor] = field(default_factory=dict)
    _partial: _PartialTensor | None = None
    _bytes: int = 0
    _finished: bool = False

    def __post_init__(self) -> None:
        keep_freed_buffers()

    def feed(self, chunk: rollout_pb2.WeightChunk | ChunkView | bytes) -> None:
        """One chunk: a message, a view, or its serialised bytes (see `read_weight_chunk`)."""
        if isinstance(chunk, bytes | memoryview):
            try:
                chunk = read_chunk(chunk)
            except WireFormatError as exc:
                raise WeightStreamError(f"malformed chunk: {exc}") from None
        elif isinstance(chunk, rollout_pb2.WeightChunk):
            chunk = ChunkView.from_proto(chunk)
        if self._finished:
            raise WeightStreamError("chunk received after the final chunk (last=true)")
        if self._version is None:
            self._start_stream(chunk)
        elif chunk.lora_adapter != self._adapter:
            raise WeightStreamError("lora_adapter changed inside one stream; send it on every chunk")
        elif chunk.policy_version != self._version:
            raise WeightStreamError(
                f"policy_version changed inside one stream: {self._version} then {chunk.policy_version}"
            )
        for piece in chunk.pieces:
            self._feed_piece(piece)
        if chunk.last:
            self._finish_stream(chunk)

    def _start_stream(self, chunk: ChunkView) -> None:
        self._version = chunk.policy_version
        if chunk.lora_adapter is None:
            return
        if self.adapter_expected is None:
            raise WeightStreamError(
                "this receiver cannot serve a LoRA adapter stream (lora_adapter is set); send merged weights"
            )
        try:
            self.expected = self.adapter_expected(chunk.lora_adapter)
        except ValueError as exc:
            raise WeightStreamError(f"lora_adapter: {exc}") from None
        self._adapter = chunk.lora_adapter

    def _feed_piece(self, piece: PieceView) -> None:
        partial = self._partial
        if partial is None or piece.name != partial.name:
            if partial is not None:
                raise WeightStreamError(
                    f"tensor {partial.name!r} ended after {partial.filled} of {len(partial.buffer)} bytes"
                )
            partial = self._partial = self._start_tensor(piece)
        elif piece.dtype != DTYPE_NAMES[partial.dtype] or tuple(piece.shape) != partial.shape:
            raise WeightStreamError(
                f"tensor {piece.name!r}: a piece says dtype {piece.dtype} shape {list(piece.shape)}, "
                f"earlier pieces said {DTYPE_NAMES[partial.dtype]} {list(partial.shape)}"
            )
        if piece.offset != partial.filled:
            raise WeightStreamError(
                f"tensor {piece.name!r}: piece at byte {piece.offset}, expected byte {partial.filled}"
            )
        end = partial.filled + len(piece.data)
        if end > len(partial.buffer):
            raise WeightStreamError(
                f"tensor {piece.name!r}: {end} bytes received but dtype {piece.dtype} and shape "
                f"{list(partial.shape)} need {len(partial.buffer)}"
            )
        populate(partial.buffer, partial.filled, end)
        check = not self.allow_non_finite and partial.dtype.is_floating_point
        data = memoryview(piece.data)
        for first in range(0, len(data), _BLOCK_BYTES):
            part = data[first : first + _BLOCK_BYTES]
            lo = partial.filled + first
            partial.buffer[lo : lo + len(part)] = part
            partial.crc = crc32(part, partial.crc)
            if check:
                _check_finite(partial, lo, lo + len(part))
        partial.filled = end
        if end == len(partial.buffer):
            if piece.crc32 is None:
                raise WeightStreamError(f"tensor {piece.name!r}: the completing piece has no crc32")
            if piece.crc32 != partial.crc:
                raise WeightStreamError(
                    f"tensor {piece.name!r}: checksum mismatch (got crc32 {partial.crc:#010x}, "
                    f"sender said {piece.crc32:#010x}); the data was corrupted in transit"
                )
            self._done[partial.name] = _to_tensor(partial)
            self._partial = None
        elif piece.crc32 is not None:
            raise WeightStreamError(
                f"tensor {piece.name!r}: crc32 sent after {end} of {len(partial.buffer)} bytes"
            )

    def _start_tensor(self, piece: PieceView) -> _PartialTensor:
        if piece.name in self._done:
            raise WeightStreamError(f"tensor {piece.name!r} appears twice in the stream")
        if piece.offset != 0:
            raise WeightStreamError(f"tensor {piece.name!r} starts at byte {piece.offset}, expected 0")
        dtype = DTYPES.get(piece.dtype)
        if dtype is None:
            raise WeightStreamError(
                f"tensor {piece.name!r}: unknown dtype {piece.dtype!r}; supported: {sorted(DTYPES)}"
            )
        shape = tuple(piece.shape)
        if any(dim < 0 for dim in shape):
            raise WeightStreamError(f"tensor {piece.name!r}: negative dimension in shape {list(shape)}")
        if self.expected:
            check_spec(piece.name, shape, dtype, self.expected)
        numel = 1
        for dim in shape:
            numel *= dim
        nbytes = numel * _ITEMSIZE[dtype]
        self._bytes += nbytes
        if self.max_total_bytes is not None and self._bytes > self.max_total_bytes:
            raise WeightStreamError(
                f"stream exceeds the receiver's limit of {self.max_total_bytes} bytes "
                f"at tensor {piece.name!r}"
            )
        try:
            if self.buffers is not None:
                storage, buffer = self.buffers.take(piece.name, nbytes)
            else:
                storage, buffer = allocate(nbytes)
        except (MemoryError, OverflowError, ValueError, TypeError, RuntimeError, OSError):
            raise WeightStreamError(
                f"tensor {piece.name!r}: shape {list(shape)} needs {nbytes} bytes, more than this "
                "receiver can allocate"
            ) from None
        return _PartialTensor(piece.name, dtype, shape, storage, buffer)

    def _finish_stream(self, chunk: ChunkView) -> None:
        if self._partial is not None:
            raise WeightStreamError(
                f"stream ended inside tensor {self._partial.name!r} "
                f"({self._partial.filled} of {len(self._partial.buffer)} bytes)"
            )
        if chunk.total_tensors != len(self._done) or chunk.total_bytes != self._bytes:
            raise WeightStreamError(
                f"stream totals mismatch: sender sent {chunk.total_tensors} tensors / {chunk.total_bytes} "
                f"bytes, received {len(self._done)} / {self._bytes}"
            )
        self._finished = True

    def finish(self) -> DecodedWeights:
        """The decoded tensors; raises if the final chunk never arrived (a truncated stream)."""
        if not self._finished:
            where = f" inside tensor {self._partial.name!r}" if self._partial else ""
            raise WeightStreamError(
                f"stream truncated{where}: the final chunk (last=true) never arrived after "
                f"{len(self._done)} complete tensors"
            )
        return DecodedWeights(self._version or 0, self._done, self._bytes, self._adapter)


def _check_finite(partial: _PartialTensor, start: int, stop: int) -> None:
    """Raise if an element completed by the bytes [start, stop) is NaN or infinite.

    Elements are checked once, when their last byte lands (a piece may end inside an element):
    [floor(start / size), floor(stop / size)) in elements. A finite sum proves every element
    finite (NaN and inf propagate) at the cost of one read from L2 (20-40 GB/s on one core for
    bf16/fp32; isfinite(values).all() runs ~1 GB/s, and an fp32 accumulator for bf16 4x slower),
    in the tensor's own dtype, read back with .item() (a tensor-level isfinite costs more than the
    sum of a block). Only a non-finite sum, which huge but finite values can also give (fp16
    overflows at 65504), pays for the exact element-wise test.
    """
    size = _ITEMSIZE[partial.dtype]
    first, last = start // size, stop // size
    if last <= first:
        return
    values = partial.storage[first * size : last * size].view(partial.dtype)
    try:
        total = values.sum().item()
    except RuntimeError:  # float8 has no sum on CPU
        values = values.float()
        total = values.sum().item()
    if math.isfinite(total) or bool(torch.isfinite(values).all()):
        return
    bad = int((~torch.isfinite(values)).nonzero()[0, 0]) + first
    raise WeightStreamError(
        f"tensor {partial.name!r} holds non-finite values (element {bad} is "
        f"{values.float()[bad - first].item()}); a diverged training step? refused, nothing was applied"
    )


def _to_tensor(partial: _PartialTensor) -> torch.Tensor:
    if not len(partial.buffer):
        return torch.empty(partial.shape, dtype=partial.dtype)
    return partial.storage.view(partial.dtype).reshape(partial.shape)


def decode_stream(
    chunks: Iterable[rollout_pb2.WeightChunk | ChunkView | bytes],
    max_total_bytes: int | None = None,
    *,
    allow_non_finite: bool = False,
) -> DecodedWeights:
    decoder = WeightStreamDecoder(max_total_bytes=max_total_bytes, allow_non_finite=allow_non_finite)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.finish()


class TensorLike(Protocol):
    """A tensor, or just its description (shape and dtype): what a receiver checks updates against."""

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def dtype(self) -> torch.dtype: ...


def check_compatible(received: Mapping[str, torch.Tensor], expected: Mapping[str, TensorLike]) -> None:
    """Raise unless every received tensor names a known tensor with the same shape and dtype.

    A receiver calls this before applying anything; a partial update (a subset of names) is allowed.
    """
    for name, tensor in received.items():
        check_spec(name, tuple(tensor.shape), tensor.dtype, expected)


def check_spec(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, expected: Mapping[str, TensorLike]
) -> None:
    """Raise unless `expected` has a tensor `name` of this shape and dtype."""
    target = expected.get(name)
    if target is None:
        raise WeightStreamError(f"unknown tensor name {name!r}: the model has no such parameter")
    if tuple(target.shape) != tuple(shape):
        raise WeightStreamError(
            f"tensor {name!r}: shape {list(shape)} does not match the model's {list(target.shape)}"
        )
    if target.dtype != dtype:
        raise WeightStreamError(
            f"tensor {name!r}: dtype {dtype_name(dtype)} does not match the model's "
            f"{DTYPE_NAMES.get(target.dtype, str(target.dtype))}"
        )
