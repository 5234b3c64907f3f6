"""The receiver's half of the weight stream: `grpo.v1.WeightChunk` buckets -> verified tensors.

Why its own module: everything a receiver is protected by lives here (offsets, sizes, CRC-32s,
totals, the memory bound, expected specs, the NaN/inf check); the sender's half is
`weight_encoder`. The stream format itself is described in `grpo_common.weights.codec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from grpo.v1 import rollout_pb2
from isal.isal_zlib import crc32

from grpo_common.weights.allocator import keep_freed_buffers
from grpo_common.weights.delta import DecodedDelta, Encoding, decode_delta
from grpo_common.weights.receive_buffers import ReceiveBuffers, allocate, populate
from grpo_common.weights.specs import DTYPE_NAMES, DTYPES, ITEMSIZE, TensorLike, WeightStreamError, check_spec
from grpo_common.weights.wire import ChunkView, PieceView, WireFormatError, read_chunk

# A received piece is copied, checksummed and checked for NaN/inf in blocks of this size, so the
# second and third pass read the block from L2 instead of memory (measured on the 2-core box:
# 256 KiB blocks cost less receiver CPU than 64 KiB, 1 MiB or whole 4 MiB pieces).
_BLOCK_BYTES = 256 * 1024


def read_weight_chunk(raw: bytes) -> bytes:
    """Request deserializer for UpdateWeights servers: keep the message as bytes.

    `WeightStreamDecoder.feed` parses them itself (`weight_wire`), reading tensor data in place
    instead of through protobuf's copies; malformed bytes then surface as a WeightStreamError
    (INVALID_ARGUMENT) rather than as an opaque deserialization failure.
    """
    return raw


@dataclass
class DecodedWeights:
    policy_version: int
    tensors: dict[str, torch.Tensor]
    total_bytes: int  # bytes the stream carried (a delta's encoded payloads, not the tensors')
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None  # an adapter stream: peft names
    # (v1.3) A delta stream: the base it applies on, and its delta-encoded tensors (`tensors` holds
    # those it sent whole; a name in neither is unchanged).
    delta_base: rollout_pb2.DeltaBase | None = None
    deltas: dict[str, DecodedDelta] = field(default_factory=dict)
    full_set: bool = False  # the stream names every tensor of the sender's weights


@dataclass
class _PartialTensor:
    """A tensor being received: its final storage, written in place piece by piece."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    storage: torch.Tensor  # uint8, uninitialised: each byte is written exactly once
    buffer: memoryview  # writable view of `storage`
    encoding: Encoding = Encoding.RAW  # not RAW: `storage` receives a delta payload
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
    _delta_base: rollout_pb2.DeltaBase | None = None
    _full_set: bool = False
    _done: dict[str, torch.Tensor] = field(default_factory=dict)
    _deltas: dict[str, DecodedDelta] = field(default_factory=dict)
    _partial: _PartialTensor | None = None
    _bytes: int = 0
    _claimed: int = 0  # the tensors' own bytes, whole or delta-encoded: what max_total_bytes bounds
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
        elif chunk.delta_base != self._delta_base or chunk.full_set != self._full_set:
            raise WeightStreamError(
                "delta_base or full_set changed inside one stream; send them on every chunk"
            )
        for piece in chunk.pieces:
            self._feed_piece(piece)
        if chunk.last:
            self._finish_stream(chunk)

    def _start_stream(self, chunk: ChunkView) -> None:
        self._version = chunk.policy_version
        self._delta_base, self._full_set = chunk.delta_base, chunk.full_set
        if chunk.delta_base is not None and chunk.lora_adapter is not None:
            raise WeightStreamError("a LoRA adapter stream cannot be a delta (delta_base is set)")
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
        elif piece.encoding != partial.encoding or (
            partial.encoding and piece.encoded_bytes != len(partial.buffer)
        ):
            raise WeightStreamError(
                f"tensor {piece.name!r}: a piece says encoding {piece.encoding} of {piece.encoded_bytes} "
                f"bytes, earlier pieces said {int(partial.encoding)} of {len(partial.buffer)}"
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
        # a delta's payload holds no values: its result is checked where it is applied (see resolve)
        check = not self.allow_non_finite and partial.dtype.is_floating_point and not partial.encoding
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
            if partial.encoding:
                numel = math.prod(partial.shape)
                try:
                    self._deltas[partial.name] = decode_delta(
                        partial.encoding, partial.buffer, partial.dtype, numel
                    )
                except WeightStreamError as exc:
                    raise WeightStreamError(f"tensor {partial.name!r}: {exc}") from None
            else:
                self._done[partial.name] = _to_tensor(partial)
            self._partial = None
        elif piece.crc32 is not None:
            raise WeightStreamError(
                f"tensor {piece.name!r}: crc32 sent after {end} of {len(partial.buffer)} bytes"
            )

    def _start_tensor(self, piece: PieceView) -> _PartialTensor:
        if piece.name in self._done or piece.name in self._deltas:
            raise WeightStreamError(f"tensor {piece.name!r} appears twice in the stream")
        try:
            encoding = Encoding(piece.encoding)
        except ValueError:
            raise WeightStreamError(
                f"tensor {piece.name!r}: unknown encoding {piece.encoding}; known: "
                f"{[e.value for e in Encoding]} (a newer sender? send it RAW)"
            ) from None
        if encoding and self._delta_base is None:
            raise WeightStreamError(
                f"tensor {piece.name!r} is delta-encoded ({encoding.name}) in a stream without delta_base"
            )
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
        nbytes = numel * ITEMSIZE[dtype]
        self._claimed += nbytes
        if encoding:  # what arrives is the payload; inflating it is bounded by the tensor's size
            if not 0 < piece.encoded_bytes <= numel * (4 + ITEMSIZE[dtype]) + 1024:
                raise WeightStreamError(
                    f"tensor {piece.name!r}: encoded_bytes {piece.encoded_bytes} is not a plausible "
                    f"{encoding.name} payload for {numel} elements"
                )
            nbytes = piece.encoded_bytes
        self._bytes += nbytes
        if self.max_total_bytes is not None and self._claimed > self.max_total_bytes:
            raise WeightStreamError(
                f"stream exceeds the receiver's limit of {self.max_total_bytes} bytes "
                f"at tensor {piece.name!r}"
            )
        try:
            if self.buffers is not None and not encoding:
                storage, buffer = self.buffers.take(piece.name, nbytes)
            else:
                storage, buffer = allocate(nbytes)
        except (MemoryError, OverflowError, ValueError, TypeError, RuntimeError, OSError):
            raise WeightStreamError(
                f"tensor {piece.name!r}: shape {list(shape)} needs {nbytes} bytes, more than this "
                "receiver can allocate"
            ) from None
        return _PartialTensor(piece.name, dtype, shape, storage, buffer, encoding)

    def _finish_stream(self, chunk: ChunkView) -> None:
        if self._partial is not None:
            raise WeightStreamError(
                f"stream ended inside tensor {self._partial.name!r} "
                f"({self._partial.filled} of {len(self._partial.buffer)} bytes)"
            )
        received = len(self._done) + len(self._deltas)
        if chunk.total_tensors != received or chunk.total_bytes != self._bytes:
            raise WeightStreamError(
                f"stream totals mismatch: sender sent {chunk.total_tensors} tensors / {chunk.total_bytes} "
                f"bytes, received {received} / {self._bytes}"
            )
        self._finished = True

    def finish(self) -> DecodedWeights:
        """The decoded tensors; raises if the final chunk never arrived (a truncated stream)."""
        if not self._finished:
            where = f" inside tensor {self._partial.name!r}" if self._partial else ""
            raise WeightStreamError(
                f"stream truncated{where}: the final chunk (last=true) never arrived after "
                f"{len(self._done) + len(self._deltas)} complete tensors"
            )
        return DecodedWeights(
            self._version or 0,
            self._done,
            self._bytes,
            self._adapter,
            self._delta_base,
            self._deltas,
            self._full_set,
        )


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
    size = ITEMSIZE[partial.dtype]
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
