"""Delta streams: applying one gives exactly the bits a full push would, for every dtype the wire
names; malformed deltas are refused before anything is applied; fingerprints see one flipped bit."""

from __future__ import annotations

import pytest
import torch
import zstandard
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import DTYPES, WeightStreamDecoder, WeightStreamError, encode_state_dict_wire
from grpo_common.weights.delta import EncodedTensor, Encoding, apply_delta, diff_tensor, element_bits
from grpo_common.weights.fingerprint import fingerprint

BASE = rollout_pb2.DeltaBase(policy_version=4, fingerprint=rollout_pb2.WeightFingerprint(digest=1, tensors=3))


def _random_bits(numel: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Any bit pattern at all (NaN payloads, -0.0, subnormals, float8's odd values included)."""
    width = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (numel * width,), dtype=torch.uint8, generator=generator)
    if dtype is torch.bool:
        raw &= 1  # a bool holds 0 or 1
    return raw.view(dtype)


def _changed(base: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    new = base.clone().reshape(-1)
    picks = torch.rand(base.numel(), generator=generator) < fraction
    if base.dtype is torch.bool:
        new[picks] = ~new[picks]
    else:
        bits = element_bits(new)
        bits[picks] ^= 1  # the lowest bit: what a small optimizer step flips
        new = bits.view(base.dtype)
    return new.reshape(base.shape)


def _delta_stream(base: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> tuple[list[bytes], set]:
    items: list[tuple[str, torch.Tensor | EncodedTensor]] = []
    encodings = set()
    for name in new:
        change = diff_tensor(base[name], new[name])
        if change.changed == 0:
            continue
        item = change.encoded if change.encoded is not None else new[name]
        encodings.add(change.encoded.encoding if change.encoded is not None else Encoding.RAW)
        items.append((name, item))
    return list(encode_state_dict_wire(items, 5, bucket_bytes=4096, delta_base=BASE)), encodings


@pytest.mark.parametrize("dtype_name", sorted(DTYPES))
def test_applying_a_delta_is_bit_identical_to_a_full_push(dtype_name: str) -> None:
    dtype = DTYPES[dtype_name]
    generator = torch.Generator().manual_seed(len(dtype_name))
    base = {f"t{i}": _random_bits(3000, dtype, generator).reshape(30, 100) for i in range(4)}
    new = {
        "t0": base["t0"].clone(),  # unchanged: not sent at all
        "t1": _changed(base["t1"], 0.01, generator),  # a few elements
        "t2": _changed(base["t2"], 0.9, generator),  # most elements
        "t3": _random_bits(3000, dtype, generator).reshape(30, 100),  # everything, incompressibly
    }
    chunks, encodings = _delta_stream(base, new)
    decoder = WeightStreamDecoder(allow_non_finite=True, expected=base)
    for chunk in chunks:
        decoder.feed(chunk)
    decoded = decoder.finish()
    assert decoded.delta_base == BASE
    assert "t0" not in decoded.tensors and "t0" not in decoded.deltas
    assert Encoding.SPARSE_XOR in encodings
    assert Encoding.RAW in encodings or dtype is torch.bool  # random bytes do not compress; 0/1 bools do
    for name, tensor in new.items():
        if name in decoded.deltas:
            result = apply_delta(base[name], decoded.deltas[name])
        else:
            result = decoded.tensors.get(name, base[name])
        assert result.dtype == dtype and result.shape == tensor.shape
        assert torch.equal(element_bits(result), element_bits(tensor)), name


def test_dense_small_changes_go_as_byte_planes_smaller_than_the_tensor() -> None:
    base = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    new = base + 1e-6  # every fp32 element moves, only its low mantissa bits
    change = diff_tensor(base, new)
    assert change.changed == base.numel()
    assert change.encoded is not None and change.encoded.encoding is Encoding.PLANES_XOR
    assert len(change.encoded.payload) < base.numel() * 4 // 2


def _feed_one(
    encoding: int, payload: bytes, numel: int = 8, base: rollout_pb2.DeltaBase | None = BASE
) -> None:
    item = EncodedTensor(torch.float32, (numel,), Encoding(encoding), payload)
    decoder = WeightStreamDecoder(expected={"w": torch.zeros(numel)})
    if base is None:  # an encoder refuses this, so write the chunk by hand
        chunks = list(encode_state_dict_wire([("w", item)], 1, delta_base=BASE))
        message = rollout_pb2.WeightChunk.FromString(chunks[0])
        message.ClearField("delta_base")
        chunks = [message.SerializeToString()]
    else:
        chunks = list(encode_state_dict_wire([("w", item)], 1, delta_base=base))
    for chunk in chunks:
        decoder.feed(chunk)
    decoder.finish()


def _zstd(data: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=content_size).compress(data)


def _gaps(*gaps: int) -> bytes:
    return b"".join(g.to_bytes(4, "little") for g in gaps)


@pytest.mark.parametrize(
    ("encoding", "payload", "message"),
    [
        (1, b"not zstd at all, just bytes", "not a zstd frame"),
        (1, _zstd(_gaps(1) + b"\0" * 4, content_size=False), "does not state its content size"),
        (1, _zstd(_gaps(2, 0) + b"\0" * 8), "names an element twice"),
        (1, _zstd(_gaps(3, 5) + b"\0" * 8), "names element 8 of a tensor of 8"),
        (1, _zstd(b"\0" * 7), "a multiple of 8 bytes"),
        (2, _zstd(b"\0" * 31), "exactly 32 bytes"),
        (1, _zstd(b"\0" * 8 * 9), "up to 64"),
    ],
)
def test_a_malformed_delta_is_refused_naming_the_tensor(encoding: int, payload: bytes, message: str) -> None:
    with pytest.raises(WeightStreamError, match=message) as caught:
        _feed_one(encoding, payload)
    assert "'w'" in str(caught.value)


def test_a_delta_encoded_piece_needs_a_delta_base() -> None:
    with pytest.raises(WeightStreamError, match="without delta_base"):
        _feed_one(1, _zstd(_gaps(0) + b"\0" * 4), base=None)


def test_an_unknown_encoding_is_refused() -> None:
    chunks = list(encode_state_dict_wire([("w", torch.zeros(8))], 1, delta_base=BASE))
    message = rollout_pb2.WeightChunk.FromString(chunks[0])
    message.pieces[0].encoding = 9  # type: ignore[assignment]
    with pytest.raises(WeightStreamError, match="unknown encoding 9"):
        WeightStreamDecoder().feed(message.SerializeToString())


def test_fingerprint_sees_one_flipped_bit_and_ignores_dict_order() -> None:
    tensors = {"b": torch.arange(10, dtype=torch.bfloat16), "a": torch.ones(3, 3)}
    reordered = {"a": tensors["a"].clone(), "b": tensors["b"].clone()}
    assert fingerprint(tensors) == fingerprint(reordered)
    assert fingerprint(tensors).tensors == 2
    element_bits(reordered["a"])[4] ^= 1
    assert fingerprint(reordered) != fingerprint(tensors)
    renamed = {"c": tensors["a"], "b": tensors["b"]}
    assert fingerprint(renamed) != fingerprint(tensors)
