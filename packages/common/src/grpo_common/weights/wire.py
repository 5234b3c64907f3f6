"""`grpo.v1.WeightChunk` read and written straight from/to its protobuf wire bytes.

Why not the generated classes: protobuf's Python API copies every tensor piece at least twice
on each side (the serialised message, the `bytes` field object), and for a weight stream those
copies are most of the CPU the transfer costs. The chunk format is small and fixed by
`proto/grpo/v1/rollout.proto`, so this module reads it with slices that point into the received
message (no copy until the bytes land in the tensor's storage) and writes it with one join.
The result is byte-for-byte what protobuf itself produces and accepts: a peer using the
generated classes interoperates, and tests check both directions against protobuf.

Field numbers below are the proto's; a change to the WeightChunk or TensorPiece messages must be
made here too (tests/test_weight_wire.py fails otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from grpo.v1 import rollout_pb2

# The encoder's bucket size (here, so a config can name it without torch). Chosen with
# benchmarks/weight_transfer.py (1 GiB fp32/bf16 over gRPC loopback, 2-core box):
# 2-8 MiB buckets cost the least CPU per GiB on both sides and move the most bytes per second;
# 16-32 MiB cost 10-30% more and 64 MiB about twice as much on the sender (buffers that no longer
# stay in cache, allocations past glibc's mmap threshold). 4 MiB is also far under the 64 MiB
# default message limit, and a few hundred messages per GiB is negligible per-message overhead.
DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024

_M = TypeVar("_M", bound=Message)


class WireFormatError(ValueError):
    """The bytes are not a well-formed WeightChunk."""


@dataclass(frozen=True, slots=True)
class PieceView:
    """One TensorPiece; `data` may be a view into the message it was read from."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    data: memoryview | bytes
    crc32: int | None  # set only on the piece that completes its tensor
    encoding: int = 0  # (v1.3) TensorEncoding; not RAW: data cover a delta payload of encoded_bytes
    encoded_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ChunkView:
    """One WeightChunk without protobuf objects."""

    policy_version: int
    pieces: Sequence[PieceView]
    last: bool = False
    total_tensors: int = 0
    total_bytes: int = 0
    lora_adapter: rollout_pb2.LoraAdapterSpec | None = None  # (v1.2) an adapter stream
    delta_base: rollout_pb2.DeltaBase | None = None  # (v1.3) a delta stream's base
    full_set: bool = False  # (v1.3) the stream names every tensor of the sender's weights

    @classmethod
    def from_proto(cls, chunk: rollout_pb2.WeightChunk) -> ChunkView:
        pieces = [
            PieceView(
                p.name,
                p.dtype,
                tuple(p.shape),
                p.offset,
                p.data,
                p.crc32 if p.HasField("crc32") else None,
                p.encoding,
                p.encoded_bytes,
            )
            for p in chunk.pieces
        ]
        adapter = chunk.lora_adapter if chunk.HasField("lora_adapter") else None
        base = chunk.delta_base if chunk.HasField("delta_base") else None
        return cls(
            chunk.policy_version,
            pieces,
            chunk.last,
            chunk.total_tensors,
            chunk.total_bytes,
            adapter,
            base,
            chunk.full_set,
        )

    def to_proto(self) -> rollout_pb2.WeightChunk:
        chunk = rollout_pb2.WeightChunk(
            policy_version=self.policy_version,
            last=self.last,
            total_tensors=self.total_tensors,
            total_bytes=self.total_bytes,
        )
        if self.lora_adapter is not None:
            chunk.lora_adapter.CopyFrom(self.lora_adapter)
        if self.delta_base is not None:
            chunk.delta_base.CopyFrom(self.delta_base)
        chunk.full_set = self.full_set
        for p in self.pieces:
            piece = chunk.pieces.add(
                name=p.name,
                dtype=p.dtype,
                shape=p.shape,
                offset=p.offset,
                encoding=p.encoding,  # type: ignore[arg-type]
                encoded_bytes=p.encoded_bytes,
            )
            piece.data = bytes(p.data)
            if p.crc32 is not None:
                piece.crc32 = p.crc32
        return chunk


# Wire types and the (field number << 3 | wire type) keys of the fields we read and write.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_CHUNK_VERSION, _CHUNK_PIECE, _CHUNK_LAST, _CHUNK_TENSORS, _CHUNK_BYTES = 0x08, 0x12, 0x18, 0x20, 0x28
_CHUNK_LORA_ADAPTER, _CHUNK_DELTA_BASE, _CHUNK_FULL_SET = 0x32, 0x3A, 0x40
_PIECE_NAME, _PIECE_DTYPE, _PIECE_SHAPE_PACKED, _PIECE_SHAPE, _PIECE_OFFSET, _PIECE_DATA, _PIECE_CRC = (
    0x0A,
    0x12,
    0x1A,
    0x18,
    0x20,
    0x2A,
    0x30,
)
_PIECE_ENCODING, _PIECE_ENCODED_BYTES = 0x38, 0x40
_UINT64 = (1 << 64) - 1


# --- writing ------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= _UINT64  # negative int64 values are sent as their 64-bit two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(key: int, payload: bytes) -> bytes:
    return bytes((key,)) + _varint(len(payload)) + payload


def _piece_header(piece: PieceView) -> bytes:
    """Every field of a TensorPiece except the data (which the caller joins in without copying)."""
    parts = [_len_field(_PIECE_NAME, piece.name.encode()), _len_field(_PIECE_DTYPE, piece.dtype.encode())]
    if piece.shape:
        parts.append(_len_field(_PIECE_SHAPE_PACKED, b"".join(_varint(d) for d in piece.shape)))
    if piece.offset:
        parts.append(bytes((_PIECE_OFFSET,)) + _varint(piece.offset))
    return b"".join(parts)


def _piece_trailer(piece: PieceView) -> bytes:
    """The fields after the data, in field order as protobuf writes them (crc32, the v1.3 encoding)."""
    parts = []
    if piece.crc32 is not None:
        parts.append(bytes((_PIECE_CRC,)) + _varint(piece.crc32))
    if piece.encoding:
        parts.append(bytes((_PIECE_ENCODING,)) + _varint(piece.encoding))
    if piece.encoded_bytes:
        parts.append(bytes((_PIECE_ENCODED_BYTES,)) + _varint(piece.encoded_bytes))
    return b"".join(parts)


def write_chunk(chunk: ChunkView) -> bytes:
    """The chunk's protobuf encoding; tensor bytes are copied once, into the result."""
    parts: list[bytes | memoryview] = []
    if chunk.policy_version:
        parts.append(bytes((_CHUNK_VERSION,)) + _varint(chunk.policy_version))
    for piece in chunk.pieces:
        header = _piece_header(piece)
        size = len(piece.data)
        data_key = (bytes((_PIECE_DATA,)) + _varint(size)) if size else b""
        trailer = _piece_trailer(piece)
        parts.append(bytes((_CHUNK_PIECE,)) + _varint(len(header) + len(data_key) + size + len(trailer)))
        parts.append(header + data_key)
        if size:
            parts.append(piece.data)
        parts.append(trailer)
    if chunk.last:
        parts.append(bytes((_CHUNK_LAST, 1)))
    if chunk.total_tensors:
        parts.append(bytes((_CHUNK_TENSORS,)) + _varint(chunk.total_tensors))
    if chunk.total_bytes:
        parts.append(bytes((_CHUNK_BYTES,)) + _varint(chunk.total_bytes))
    if chunk.lora_adapter is not None:
        parts.append(_len_field(_CHUNK_LORA_ADAPTER, chunk.lora_adapter.SerializeToString()))
    if chunk.delta_base is not None:
        parts.append(_len_field(_CHUNK_DELTA_BASE, chunk.delta_base.SerializeToString()))
    if chunk.full_set:
        parts.append(bytes((_CHUNK_FULL_SET, 1)))
    return b"".join(parts)


# --- reading ------------------------------------------------------------------------------------


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireFormatError("message ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _UINT64, pos
        shift += 7
        if shift >= 70:
            raise WireFormatError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def read_len(buf: memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    size, pos = read_varint(buf, pos, end)
    if pos + size > end:
        raise WireFormatError(f"{what} claims {size} bytes, only {end - pos} remain in the message")
    return pos, pos + size


def skip_field(buf: memoryview, key: int, pos: int, end: int) -> int:
    """Skip a field this reader does not know (a newer sender may add fields)."""
    wire_type = key & 7
    if wire_type == _VARINT:
        return read_varint(buf, pos, end)[1]
    if wire_type == _LEN:
        return read_len(buf, pos, end, f"field {key >> 3}")[1]
    width = {_I64: 8, _I32: 4}.get(wire_type)
    if width is None or pos + width > end:
        raise WireFormatError(f"field {key >> 3} has an unsupported or truncated wire type {wire_type}")
    return pos + width


def _text(buf: memoryview, start: int, stop: int, what: str) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError:
        raise WireFormatError(f"{what} is not valid UTF-8") from None


def _read_piece(buf: memoryview, pos: int, end: int) -> PieceView:
    name = dtype = ""
    shape: list[int] = []
    offset = 0
    data: memoryview = buf[0:0]
    crc: int | None = None
    encoding = encoded_bytes = 0
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        if key == _PIECE_DATA:
            start, pos = read_len(buf, pos, end, "piece data")
            data = buf[start:pos]
        elif key == _PIECE_NAME:
            start, pos = read_len(buf, pos, end, "piece name")
            name = _text(buf, start, pos, "piece name")
        elif key == _PIECE_DTYPE:
            start, pos = read_len(buf, pos, end, "piece dtype")
            dtype = _text(buf, start, pos, "piece dtype")
        elif key == _PIECE_SHAPE_PACKED:
            start, pos = read_len(buf, pos, end, "piece shape")
            while start < pos:
                dim, start = read_varint(buf, start, pos)
                shape.append(_signed(dim))
        elif key == _PIECE_SHAPE:
            dim, pos = read_varint(buf, pos, end)
            shape.append(_signed(dim))
        elif key == _PIECE_OFFSET:
            offset, pos = read_varint(buf, pos, end)
        elif key == _PIECE_CRC:
            value, pos = read_varint(buf, pos, end)
            crc = value & 0xFFFFFFFF
        elif key == _PIECE_ENCODING:
            encoding, pos = read_varint(buf, pos, end)
            encoding = _signed(encoding) & 0xFFFFFFFF  # an enum is an int32 on the wire
        elif key == _PIECE_ENCODED_BYTES:
            encoded_bytes, pos = read_varint(buf, pos, end)
        else:
            pos = skip_field(buf, key, pos, end)
    return PieceView(name, dtype, tuple(shape), offset, data, crc, encoding, encoded_bytes)


def _read_message(buf: memoryview, pos: int, end: int, what: str, message: _M) -> tuple[_M, int]:
    """A small nested message (no tensor data) parsed by protobuf itself."""
    start, pos = read_len(buf, pos, end, what)
    try:
        message.ParseFromString(bytes(buf[start:pos]))
    except DecodeError:
        raise WireFormatError(f"{what} is not a well-formed {type(message).__name__}") from None
    return message, pos


def read_chunk(raw: bytes | memoryview) -> ChunkView:
    """Parse a serialised WeightChunk; piece data are views into `raw` (keep it alive)."""
    buf = memoryview(raw).cast("B")
    end = len(buf)
    pos = 0
    version = tensors = total = 0
    last = False
    pieces: list[PieceView] = []
    adapter: rollout_pb2.LoraAdapterSpec | None = None
    base: rollout_pb2.DeltaBase | None = None
    full_set = False
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        if key == _CHUNK_PIECE:
            start, pos = read_len(buf, pos, end, "tensor piece")
            pieces.append(_read_piece(buf, start, pos))
        elif key == _CHUNK_VERSION:
            value, pos = read_varint(buf, pos, end)
            version = _signed(value)
        elif key == _CHUNK_LAST:
            value, pos = read_varint(buf, pos, end)
            last = value != 0
        elif key == _CHUNK_TENSORS:
            value, pos = read_varint(buf, pos, end)
            tensors = value & 0xFFFFFFFF
        elif key == _CHUNK_BYTES:
            total, pos = read_varint(buf, pos, end)
        elif key == _CHUNK_LORA_ADAPTER:
            adapter, pos = _read_message(buf, pos, end, "lora_adapter", rollout_pb2.LoraAdapterSpec())
        elif key == _CHUNK_DELTA_BASE:
            base, pos = _read_message(buf, pos, end, "delta_base", rollout_pb2.DeltaBase())
        elif key == _CHUNK_FULL_SET:
            value, pos = read_varint(buf, pos, end)
            full_set = value != 0
        else:
            pos = skip_field(buf, key, pos, end)
    return ChunkView(version, pieces, last, tensors, total, adapter, base, full_set)
