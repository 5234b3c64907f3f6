"""The weight codec: bit-exact round trips, bucketing, and every malformed stream rejected by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import (
    DEFAULT_BUCKET_BYTES,
    WeightStreamDecoder,
    WeightStreamError,
    check_compatible,
    decode_stream,
    encode_state_dict,
)
from grpo_common.weights.wire import ChunkView, PieceView, write_chunk

Chunks = list[rollout_pb2.WeightChunk]


def _bits(tensor: torch.Tensor) -> bytes:
    """The exact bytes of a tensor, so NaN payloads and -0.0 compare too."""
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _assert_bit_exact(decoded: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
    assert list(decoded) == list(original)
    for name, tensor in original.items():
        got = decoded[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
        assert _bits(got) == _bits(tensor), name


def _special_values(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        values = torch.randn(257, generator=generator) * 1e3
        values[:6] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40])
        return values.to(dtype)
    return torch.randint(-(2**62), 2**62, (257,), generator=generator, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
@pytest.mark.parametrize("bucket_bytes", [64, 4096, DEFAULT_BUCKET_BYTES])
def test_round_trip_is_bit_exact(dtype, bucket_bytes) -> None:
    state = {
        "embed.weight": _special_values(dtype).reshape(1, 257),
        "scalar": _special_values(dtype)[7].clone(),  # 0-d
        "empty": torch.empty(0, 3, dtype=dtype),
        "transposed": _special_values(dtype)[:256].reshape(16, 16).t(),  # non-contiguous
        "strided": _special_values(dtype)[::3],  # non-contiguous, with storage offset gaps
    }
    assert not state["transposed"].is_contiguous() and not state["strided"].is_contiguous()
    chunks = encode_state_dict(state, policy_version=5, bucket_bytes=bucket_bytes)
    decoded = decode_stream(chunks, allow_non_finite=True)  # NaN and inf travel bit-exact when allowed
    assert decoded.policy_version == 5
    assert decoded.total_bytes == sum(t.numel() * t.element_size() for t in state.values())
    _assert_bit_exact(decoded.tensors, state)
    # Fresh memory: the receiver's tensors share nothing with the sender's.
    assert decoded.tensors["embed.weight"].data_ptr() != state["embed.weight"].data_ptr()


def test_other_dtypes_round_trip() -> None:
    state = {
        "mask": torch.tensor([True, False, True]),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "f64": torch.tensor([1e300, -2.5], dtype=torch.float64),
        "i32": torch.tensor([2**31 - 1], dtype=torch.int32),
    }
    _assert_bit_exact(decode_stream(encode_state_dict(state, 1)).tensors, state)


def test_a_tensor_larger_than_the_bucket_is_split_across_chunks() -> None:
    big = torch.arange(10_000, dtype=torch.float32)  # 40 000 bytes
    chunks = list(encode_state_dict({"big": big, "after": torch.ones(3)}, 1, bucket_bytes=4096))
    big_pieces = [piece for chunk in chunks for piece in chunk.pieces if piece.name == "big"]
    assert len(big_pieces) >= 10 and len(chunks) >= 10
    assert [p.offset for p in big_pieces] == sorted({p.offset for p in big_pieces})
    assert sum(len(p.data) for p in big_pieces) == 40_000
    assert [p.HasField("crc32") for p in big_pieces] == [False] * (len(big_pieces) - 1) + [True]
    assert all(sum(len(p.data) for p in chunk.pieces) <= 4096 for chunk in chunks)
    assert [chunk.last for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    _assert_bit_exact(decode_stream(chunks).tensors, {"big": big, "after": torch.ones(3)})


def test_many_small_tensors_share_one_chunk() -> None:
    state = {f"layers.{i}.norm.weight": torch.full((4,), float(i)) for i in range(100)}
    chunks = list(encode_state_dict(state, 3, bucket_bytes=64 * 1024))
    assert len(chunks) == 1 and len(chunks[0].pieces) == 100
    assert chunks[0].last and chunks[0].total_tensors == 100 and chunks[0].total_bytes == 1600
    _assert_bit_exact(decode_stream(chunks).tensors, state)


def test_an_empty_state_dict_is_one_final_chunk() -> None:
    (chunk,) = encode_state_dict({}, 9)
    assert chunk.last and chunk.total_tensors == 0
    decoded = decode_stream([chunk])
    assert decoded.tensors == {} and decoded.policy_version == 9


def test_unsupported_dtypes_and_bucket_sizes_are_refused_by_the_sender() -> None:
    with pytest.raises(WeightStreamError, match=r"dtype torch\.complex64 cannot be sent"):
        list(encode_state_dict({"z": torch.zeros(2, dtype=torch.complex64)}, 1))
    with pytest.raises(ValueError, match="bucket_bytes must be positive"):
        list(encode_state_dict({"w": torch.zeros(2)}, 1, bucket_bytes=0))


def _stream() -> Chunks:
    """Three tensors over several chunks: 'a' split in pieces, then 'b' and 'c' small."""
    state = {"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(2, 3), "c": torch.zeros(1)}
    return list(encode_state_dict(state, policy_version=4, bucket_bytes=100))


def _piece(chunks: Chunks, name: str, index: int = 0) -> rollout_pb2.TensorPiece:
    return [piece for chunk in chunks for piece in chunk.pieces if piece.name == name][index]


def _bad_dtype(chunks: Chunks) -> None:
    _piece(chunks, "b").dtype = "float33"


def _too_many_bytes(chunks: Chunks) -> None:
    piece = _piece(chunks, "b")
    piece.data = piece.data + b"\0\0\0\0"


def _too_few_bytes(chunks: Chunks) -> None:
    piece = _piece(chunks, "b")
    piece.data = piece.data[:-4]
    piece.ClearField("crc32")


def _crc_before_the_end(chunks: Chunks) -> None:
    piece = _piece(chunks, "b")
    piece.data = piece.data[:-4]


def _flipped_bit(chunks: Chunks) -> None:
    piece = _piece(chunks, "a", 1)
    piece.data = bytes([piece.data[0] ^ 1]) + piece.data[1:]


def _version_change(chunks: Chunks) -> None:
    chunks[1].policy_version = 5


def _duplicate(chunks: Chunks) -> None:
    chunks[-1].pieces.append(_piece(chunks, "b"))


def _totals(chunks: Chunks) -> None:
    chunks[-1].total_tensors = 4


def _total_bytes(chunks: Chunks) -> None:
    chunks[-1].total_bytes += 4


def _gap(chunks: Chunks) -> None:
    _piece(chunks, "a", 1).offset += 4


def _shape_changes(chunks: Chunks) -> None:
    _piece(chunks, "a", 1).shape[:] = [8, 8]


def _dropped_piece(chunks: Chunks) -> None:
    for chunk in chunks:
        for piece in chunk.pieces:
            if piece.name == "a" and piece.offset > 0:
                chunk.pieces.remove(piece)
                return


def _negative_shape(chunks: Chunks) -> None:
    _piece(chunks, "c").shape[:] = [-1]


def _missing_crc(chunks: Chunks) -> None:
    _piece(chunks, "c").ClearField("crc32")


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (_bad_dtype, r"tensor 'b': unknown dtype 'float33'"),
        (_too_many_bytes, r"tensor 'b': 28 bytes received but dtype float32 and shape \[2, 3\] need 24"),
        (_too_few_bytes, r"tensor 'b' ended after 20 of 24 bytes"),
        (_crc_before_the_end, r"tensor 'b': crc32 sent after 20 of 24 bytes"),
        (_flipped_bit, r"tensor 'a': checksum mismatch"),
        (_version_change, r"policy_version changed inside one stream: 4 then 5"),
        (_duplicate, r"tensor 'b' appears twice"),
        (_totals, r"totals mismatch: sender sent 4 tensors"),
        (_total_bytes, r"totals mismatch: sender sent 3 tensors / 288 bytes, received 3 / 284"),
        (_gap, r"tensor 'a': piece at byte \d+, expected byte \d+"),
        (
            _shape_changes,
            r"tensor 'a': a piece says dtype float32 shape \[8, 8\], earlier pieces said float32 \[64\]",
        ),
        (_dropped_piece, r"tensor 'a'"),
        (_negative_shape, r"tensor 'c': negative dimension"),
        (_missing_crc, r"tensor 'c': the completing piece has no crc32"),
    ],
)
def test_a_malformed_stream_is_rejected_naming_what_is_wrong(
    corrupt: Callable[[Chunks], None], problem
) -> None:
    chunks = _stream()
    corrupt(chunks)
    decoder = WeightStreamDecoder()
    with pytest.raises(WeightStreamError, match=problem):
        for chunk in chunks:
            decoder.feed(chunk)
        decoder.finish()
    with pytest.raises(WeightStreamError):  # and nothing can be taken out of it afterwards
        decoder.finish()


def test_a_stream_without_its_final_chunk_is_truncated() -> None:
    chunks = _stream()[:-1]
    decoder = WeightStreamDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
    with pytest.raises(WeightStreamError, match=r"stream truncated.*final chunk \(last=true\) never arrived"):
        decoder.finish()
    with pytest.raises(WeightStreamError, match="stream truncated"):
        decode_stream([])


def test_a_final_chunk_inside_a_tensor_is_rejected() -> None:
    chunks = _stream()
    first = chunks[0]
    first.last, first.total_tensors, first.total_bytes = True, 0, 256
    with pytest.raises(WeightStreamError, match=r"stream ended inside tensor 'a'"):
        decode_stream(chunks[:1])


def test_chunks_after_the_final_one_are_rejected() -> None:
    chunks = _stream()
    with pytest.raises(WeightStreamError, match="after the final chunk"):
        decode_stream([*chunks, chunks[-1]])


def test_the_receiver_bounds_what_a_sender_can_make_it_allocate() -> None:
    with pytest.raises(WeightStreamError, match="exceeds the receiver's limit of 100 bytes at tensor 'a'"):
        decode_stream(_stream(), max_total_bytes=100)
    huge = rollout_pb2.WeightChunk(policy_version=1)
    huge.pieces.add(name="huge", dtype="float32", shape=[2**62, 2**62])
    with pytest.raises(WeightStreamError, match="tensor 'huge'"):
        decode_stream([huge])


def test_check_compatible_names_unknown_tensors_and_shape_or_dtype_mismatches() -> None:
    model = {"w": torch.zeros(2, 3), "b": torch.zeros(3)}
    check_compatible({"w": torch.ones(2, 3)}, model)  # a subset is fine
    with pytest.raises(WeightStreamError, match="unknown tensor name 'x'"):
        check_compatible({"x": torch.ones(1)}, model)
    with pytest.raises(
        WeightStreamError, match=r"tensor 'w': shape \[3, 2\] does not match the model's \[2, 3\]"
    ):
        check_compatible({"w": torch.ones(3, 2)}, model)
    with pytest.raises(
        WeightStreamError, match="tensor 'b': dtype bfloat16 does not match the model's float32"
    ):
        check_compatible({"b": torch.ones(3, dtype=torch.bfloat16)}, model)


def test_the_wire_format_is_plain_protobuf_without_pickle() -> None:
    (chunk,) = encode_state_dict({"w": torch.tensor([1.0, 2.0])}, 1)
    wire = chunk.SerializeToString()
    assert b"\x80\x04" not in wire[:2]  # not a pickle stream
    piece = rollout_pb2.WeightChunk.FromString(wire).pieces[0]
    assert (piece.name, piece.dtype, list(piece.shape)) == ("w", "float32", [2])
    assert piece.data == torch.tensor([1.0, 2.0]).numpy().tobytes()


def test_large_tensors_decode_into_writable_memory_that_outlives_the_decoder() -> None:
    big = torch.randn(3, 300_000)  # 3.6 MB: stored in its own pre-faulted mapping
    decoder = WeightStreamDecoder()
    for chunk in encode_state_dict({"big": big}, 1, bucket_bytes=1024 * 1024):
        decoder.feed(chunk)
    received = decoder.finish().tensors["big"]
    del decoder
    assert torch.equal(received, big)
    received.mul_(2)  # writable in place, like a parameter the receiver copies into its model
    assert torch.equal(received, big * 2)


def _peak_rss_after_reset() -> int:
    """VmHWM right after resetting it to the current RSS (Linux: `5 > /proc/self/clear_refs`)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _peak_rss()


def _peak_rss() -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_memory_is_committed_as_bytes_arrive_not_as_claimed() -> None:
    """A tensor the receiver does expect, 512 MiB of it claimed, 64 bytes sent: 64 bytes held."""
    shape = (128 * 1024 * 1024,)
    expected = {"embed.weight": SimpleNamespace(shape=shape, dtype=torch.float32)}
    decoder = WeightStreamDecoder(expected=expected)
    start = _peak_rss_after_reset()
    decoder.feed(write_chunk(ChunkView(1, [PieceView("embed.weight", "float32", shape, 0, bytes(64), None)])))
    assert _peak_rss() - start < 32 * 1024 * 1024


def test_non_finite_floats_are_refused_naming_the_tensor_and_element() -> None:
    values = torch.arange(5000, dtype=torch.float32)
    values[4321] = float("nan")
    with pytest.raises(
        WeightStreamError, match=r"tensor 'w' holds non-finite values \(element 4321 is nan\)"
    ):
        decode_stream(encode_state_dict({"w": values}, 1, bucket_bytes=4097))  # pieces end mid-element
    huge = torch.full((1000,), 3e38)  # every element finite, their sum is not: the exact test decides
    assert (
        decode_stream(encode_state_dict({"h": huge, "i": torch.tensor([2**62])}, 1)).tensors["h"].equal(huge)
    )


def test_a_nan_in_the_last_element_of_a_bf16_tensor_split_across_chunks_is_refused() -> None:
    """A bf16 tensor over several 256 KiB check blocks, split across two chunks mid-element."""
    values = torch.linspace(-1.0, 1.0, 300_000).to(torch.bfloat16)  # 600 KB: three check blocks
    values[-1] = float("nan")
    bucket = values.nbytes // 2 + 1  # an odd bucket: the first piece ends inside an element
    chunks = list(encode_state_dict({"w": values}, 1, bucket_bytes=bucket))
    assert len([p for c in chunks for p in c.pieces if p.name == "w"]) == 2
    with pytest.raises(
        WeightStreamError, match=r"tensor 'w' holds non-finite values \(element 299999 is nan\)"
    ):
        decode_stream(chunks)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_an_infinity_straddling_a_check_block_boundary_is_refused(dtype: torch.dtype) -> None:
    """The element cut by the first 256 KiB check block boundary of a piece starting mid-element."""
    values = torch.zeros(400_000, dtype=dtype)
    bucket = 300_001  # pieces at bytes 0, 300001, ...: the second starts inside an element
    bad = (bucket + 256 * 1024) // values.element_size()
    assert bad * values.element_size() < bucket + 256 * 1024  # the element spans the boundary
    values[bad] = float("-inf")
    with pytest.raises(
        WeightStreamError, match=rf"tensor 'w' holds non-finite values \(element {bad} is -inf\)"
    ):
        decode_stream(encode_state_dict({"w": values}, 1, bucket_bytes=bucket))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_negative_zero_subnormals_and_the_largest_finite_values_are_accepted(dtype: torch.dtype) -> None:
    info = torch.finfo(dtype)
    subnormals = [info.smallest_normal / 4, -info.smallest_normal * info.eps]  # the last: the smallest
    edge = [0.0, -0.0, *subnormals, info.max, -info.max, info.max]
    values = torch.tensor(edge, dtype=dtype).repeat(40_000)
    assert (values[2:4] != 0).all() and (values[2:4].abs() < info.smallest_normal).all()
    assert torch.isfinite(values).all() and not torch.isfinite(values.sum())  # the exact test decides
    tensors = {"w": values}
    decoded = decode_stream(encode_state_dict(tensors, 1, bucket_bytes=100_001)).tensors
    _assert_bit_exact(decoded, tensors)
