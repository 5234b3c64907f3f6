"""One tensor's change between two pushes, as the few bytes a delta stream carries.

Why: at RL learning rates most elements of a bf16 tensor keep their bits from one step to the
next (an Adam step of lr moves an element across a bf16 rounding boundary with probability about
lr / ulp(w)), so sending every byte every step mostly resends what the rollout already holds.

Both sides work on the elements' *bits* (an integer view of the dtype), never on their values, so
the result is bit-identical to sending the tensor whole for every dtype (NaN payloads, -0.0,
bool and float8 included): with x = base XOR new (element-wise on the bits), new = base XOR x.

Per tensor the sender sends:

- nothing, when no bit changed (the tensor is left out of the stream);
- below 10% of its elements changed, SPARSE_XOR: zstd(k uint32 gaps between changed indices,
  then their k XOR values). Gaps of a sparse change are small numbers whose high bytes zstd
  squeezes away, and the XOR of a value nudged by a small step has zero high bytes too;
- from 10% on, PLANES_XOR: zstd(byte planes of the whole XOR): byte 0 of every element, then
  byte 1, ... When most elements change (fp32 pushes, where nearly every element moves every
  step), the planes holding sign and exponent are almost all zero and compress to nearly nothing;
- the tensor whole (RAW), when the payload would not be smaller.

The receiver resolves a delta against its current tensor before writing anything
(`resolve` then `write`), so a tensor that two names share (tied embeddings) ends with the
same bits whether one name or both are updated.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import zstandard

from grpo_common.weights.specs import ITEMSIZE, WeightStreamError

# zstd level 1: the sender compresses every changed tensor once per push, on one thread; higher
# levels cost several times the CPU for a few percent fewer bytes on XOR streams
# (benchmarks/delta_encodings.py; figures in benchmarks/RESULTS.md).
ZSTD_LEVEL = 1
# Below this fraction of changed elements SPARSE_XOR is tried, from it on PLANES_XOR: on trained
# weights the sparse form is the smaller at a few percent changed and the planes from about this
# fraction on; computing both and keeping the smaller would multiply the sender's compression CPU,
# which a push waits for, to save well under 1% of the bytes (benchmarks/delta_encodings.py; figures
# in benchmarks/RESULTS.md, "Delta encodings: compression by tensor").
PLANES_MIN_FRACTION = 1 / 10
_MAX_SPARSE_NUMEL = 2**32  # gaps are uint32

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}  # numpy twins of _INT_VIEW

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("grpo_common.weights.delta assumes a little-endian host (the wire is little-endian)")


class Encoding(enum.IntEnum):
    """rollout.proto's TensorEncoding."""

    RAW = 0
    SPARSE_XOR = 1
    PLANES_XOR = 2


@dataclass(frozen=True)
class EncodedTensor:
    """A changed tensor as a delta payload, with what the receiver checks it against."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    encoding: Encoding
    payload: bytes


@dataclass(frozen=True)
class TensorChange:
    """What changed in one tensor and how to send it.

    `encoded` is None when the tensor goes whole (changed > 0: no encoding was smaller) or not at
    all (changed == 0).
    """

    changed: int  # elements whose bits differ
    numel: int
    encoded: EncodedTensor | None


def element_bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as same-width integers on the CPU (flat, contiguous): its bits."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(_INT_VIEW[ITEMSIZE[flat.dtype]])


def diff_tensor(base: torch.Tensor, new: torch.Tensor) -> TensorChange:
    """The cheapest way to turn `base` into `new` (same dtype and shape), bit for bit."""
    if base.dtype != new.dtype or base.shape != new.shape:
        raise ValueError(f"cannot diff {new.dtype} {list(new.shape)} against {base.dtype} {list(base.shape)}")
    old_bits, new_bits = element_bits(base).numpy(), element_bits(new).numpy()
    differs = np.not_equal(old_bits, new_bits)
    numel, changed = differs.size, int(np.count_nonzero(differs))
    if changed == 0:
        return TensorChange(0, numel, None)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    if changed < numel * PLANES_MIN_FRACTION and numel <= _MAX_SPARSE_NUMEL:
        best = (Encoding.SPARSE_XOR, sparse_xor_payload(old_bits, new_bits, differs, compressor))
    else:
        best = (Encoding.PLANES_XOR, planes_xor_payload(old_bits, new_bits, compressor))
    if len(best[1]) >= numel * old_bits.itemsize:
        return TensorChange(changed, numel, None)
    return TensorChange(changed, numel, EncodedTensor(new.dtype, tuple(new.shape), best[0], best[1]))


def sparse_xor_payload(
    old_bits: np.ndarray, new_bits: np.ndarray, differs: np.ndarray, compressor: zstandard.ZstdCompressor
) -> bytes:
    """SPARSE_XOR: zstd(uint32 gaps between the changed indices, then their XOR values)."""
    changed_at = np.flatnonzero(differs)
    gaps = np.diff(changed_at, prepend=0).astype("<u4")
    xor = np.bitwise_xor(old_bits[changed_at], new_bits[changed_at])
    return compressor.compress(gaps.tobytes() + xor.tobytes())


def planes_xor_payload(
    old_bits: np.ndarray, new_bits: np.ndarray, compressor: zstandard.ZstdCompressor
) -> bytes:
    """PLANES_XOR: zstd(the whole XOR as byte planes: byte 0 of every element, then byte 1, ...)."""
    width, numel = old_bits.itemsize, old_bits.size
    xor = np.bitwise_xor(old_bits, new_bits).view(_UNSIGNED[width])
    planes = np.empty((width, numel), dtype=np.uint8)
    for byte in range(width):  # shifts over contiguous memory, not a strided byte transpose
        planes[byte] = xor >> (8 * byte) if byte else xor  # keeps the low byte
    return compressor.compress(planes)


@dataclass(frozen=True)
class DecodedDelta:
    """A verified delta payload: XOR values at `indices` (None: at every element, in order)."""

    indices: torch.Tensor | None  # int64, strictly increasing, < numel
    xor: torch.Tensor  # the integer view of the tensor's dtype

    @property
    def changed(self) -> int:
        return int(self.xor.numel()) if self.indices is not None else int(self.xor.count_nonzero())


def decode_delta(
    encoding: Encoding, payload: bytes | memoryview, dtype: torch.dtype, numel: int
) -> DecodedDelta:
    """Check and unpack a payload for a tensor of `numel` elements; WeightStreamError if malformed.

    The zstd frame must state its content size, and that size must fit the tensor: a sender
    cannot make the receiver inflate more than the tensor's own bytes (plus indices).
    """
    width = ITEMSIZE[dtype]
    if encoding is Encoding.SPARSE_XOR:
        limit, unit = numel * (4 + width), 4 + width
    elif encoding is Encoding.PLANES_XOR:
        limit, unit = numel * width, numel * width
    else:
        raise WeightStreamError(f"encoding {encoding!r} is not a delta encoding")
    size = _content_size(payload)
    if size > limit or (unit and size % unit) or (encoding is Encoding.PLANES_XOR and size != limit):
        raise WeightStreamError(
            f"{encoding.name} payload inflates to {size} bytes; a tensor of {numel} {width}-byte "
            f"elements needs {'exactly' if encoding is Encoding.PLANES_XOR else 'a multiple of'} "
            f"{unit} bytes{'' if encoding is Encoding.PLANES_XOR else f' up to {limit}'}"
        )
    try:
        raw = zstandard.ZstdDecompressor().decompress(bytes(payload), max_output_size=size)
    except zstandard.ZstdError as exc:
        raise WeightStreamError(f"{encoding.name} payload is not a valid zstd frame: {exc}") from None
    if len(raw) != size:
        raise WeightStreamError(
            f"{encoding.name} payload inflated to {len(raw)} bytes, its frame said {size}"
        )
    view = _INT_VIEW[width]
    if encoding is Encoding.PLANES_XOR:
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(width, numel)
        joined = planes[0].astype(_UNSIGNED[width])  # a writable copy
        for byte in range(1, width):
            joined |= planes[byte].astype(_UNSIGNED[width]) << (8 * byte)
        return DecodedDelta(None, torch.from_numpy(joined.view(_SIGNED[width])).view(view))
    count = size // unit
    gaps = np.frombuffer(raw, dtype="<u4", count=count)
    if count > 1 and not gaps[1:].all():
        raise WeightStreamError("SPARSE_XOR payload names an element twice (a gap of 0 after the first)")
    indices = np.cumsum(gaps, dtype=np.int64)
    if count and indices[-1] >= numel:
        raise WeightStreamError(f"SPARSE_XOR payload names element {indices[-1]} of a tensor of {numel}")
    xor = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=count * 4).copy()).view(view)
    return DecodedDelta(torch.from_numpy(indices), xor)


def _content_size(payload: bytes | memoryview) -> int:
    try:
        size = zstandard.frame_content_size(bytes(payload[:18]))  # a frame header is at most 18 bytes
    except zstandard.ZstdError as exc:
        raise WeightStreamError(f"delta payload is not a zstd frame: {exc}") from None
    if size < 0:
        raise WeightStreamError("delta payload's zstd frame does not state its content size")
    return size


@dataclass(frozen=True)
class ResolvedDelta:
    """New bits for a tensor, computed from its current bits: at `indices`, or whole (None)."""

    indices: torch.Tensor | None
    bits: torch.Tensor


def resolve(delta: DecodedDelta, current: torch.Tensor) -> ResolvedDelta:
    """The new bits of `current` (read only: nothing is written; see the module docstring)."""
    bits = current.detach().reshape(-1).view(_INT_VIEW[current.element_size()])
    xor = delta.xor.to(bits.device)
    if delta.indices is None:
        return ResolvedDelta(None, torch.bitwise_xor(bits, xor))
    indices = delta.indices.to(bits.device)
    return ResolvedDelta(indices, torch.bitwise_xor(bits[indices], xor))


def write(target: torch.Tensor, resolved: ResolvedDelta) -> None:
    """Write resolved bits into `target` in place (a contiguous tensor of the delta's dtype)."""
    bits = target.detach().view(-1).view(_INT_VIEW[target.element_size()])
    if resolved.indices is None:
        bits.copy_(resolved.bits)
    else:
        bits[resolved.indices] = resolved.bits


def apply_delta(current: torch.Tensor, delta: DecodedDelta) -> torch.Tensor:
    """A new tensor: `current` with the delta applied (`current` is left as it was)."""
    resolved = resolve(delta, current)
    if resolved.indices is None:
        return resolved.bits.view(current.dtype).reshape(current.shape)
    out = current.detach().clone(memory_format=torch.contiguous_format)
    write(out, resolved)
    return out


@dataclass(frozen=True)
class StateDiff:
    """A delta stream's content: the changed tensors, each encoded or whole, and what it saves."""

    items: list[tuple[str, torch.Tensor | EncodedTensor]]  # what to send, in the state dict's order
    changed: int  # elements whose bits differ, over every tensor
    numel: int  # elements of every tensor
    wire_bytes: int  # payload bytes of `items`
    full_bytes: int  # bytes of every tensor sent whole

    @property
    def fraction_changed(self) -> float:
        return self.changed / self.numel if self.numel else 0.0


def diff_state_dicts(
    base: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor], threads: int | None = None
) -> StateDiff:
    """`diff_tensor` over every tensor of `new` (each must be in `base`, same dtype and shape).

    Tensors are diffed on `threads` threads (default: one per core, at most 8): numpy and zstd
    release the GIL, and a push waits for the diff, which is memory-bound work on every element.
    """
    workers = threads or min(8, os.cpu_count() or 1)
    names = list(new)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        changes = list(pool.map(lambda name: diff_tensor(base[name], new[name]), names))
    items: list[tuple[str, torch.Tensor | EncodedTensor]] = []
    changed = numel = wire = full = 0
    for name, change in zip(names, changes, strict=True):
        tensor = new[name]
        size = tensor.numel() * tensor.element_size()
        changed, numel, full = changed + change.changed, numel + change.numel, full + size
        if change.encoded is not None:
            items.append((name, change.encoded))
            wire += len(change.encoded.payload)
        elif change.changed:
            items.append((name, tensor))
            wire += size
    return StateDiff(items, changed, numel, wire, full)
