"""What a weight stream's tensors may be, and the error every stream check raises.

Why its own module: the dtype table, the per-tensor spec check and `WeightStreamError` are shared
by the encoder (a sender refuses a dtype the wire cannot name), the decoder (a receiver refuses a
tensor its model does not have, before claiming memory for it) and receivers that check a decoded
update against their model (`check_compatible`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

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
ITEMSIZE: dict[torch.dtype, int] = {
    dtype: torch.empty((), dtype=dtype).element_size() for dtype in DTYPES.values()
}


class WeightStreamError(ValueError):
    """The stream is malformed; the message names the tensor and what is wrong."""


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise WeightStreamError(f"dtype {dtype} cannot be sent; supported: {sorted(DTYPES)}") from None


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
