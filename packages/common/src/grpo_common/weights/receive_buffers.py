"""Where the bytes of received tensors land: fresh, pre-faulted memory, or an earlier update's.

A receiver that gets new weights every training step would otherwise map (and have the kernel
zero and fault in) a model's worth of fresh pages per update: on the 2-core test box that was the
largest single cost of receiving, more than the checksum and the copy together. A receiver that
copies updates into its model and then drops them hands them back with `recycle`, and the next
update of the same tensor writes into the same memory.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Mapping

import torch

# Tensors from this size up get their own pre-faulted mapping (see allocate).
_POPULATE_MIN_BYTES = 1024 * 1024


# Linux's MADV_POPULATE_WRITE (5.14+; Python 3.11's mmap module does not name it yet).
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


def allocate(nbytes: int) -> tuple[torch.Tensor, memoryview]:
    """Uninitialised uint8 storage for a received tensor and a writable view of it.

    Not bytearray(n): that zero-fills, touching every page once before the data lands. Large
    tensors get an anonymous mapping that holds no memory yet: `populate` commits each range just
    before its bytes are copied in, one kernel call instead of a page fault per 4 KiB (about a
    third less CPU for the receiver, measured on the 2-core test box), and only as the bytes
    arrive, so a sender that claims a big tensor and sends 100 bytes makes the receiver hold 100
    bytes, not the claim. The tensor keeps the mapping alive.
    """
    if nbytes >= _POPULATE_MIN_BYTES:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        return torch.frombuffer(mapping, dtype=torch.uint8), memoryview(mapping)
    storage = torch.empty(nbytes, dtype=torch.uint8)
    return storage, memoryview(storage.numpy()) if nbytes else memoryview(bytearray())


def populate(buffer: memoryview, start: int, stop: int) -> None:
    """Commit the pages of `buffer[start:stop]` before writing them, if `allocate` mapped it.

    Recycled or small buffers are plain memory and left alone; without MADV_POPULATE_WRITE (older
    kernels) the pages fault in as they are written, which is correct, just slower.
    """
    mapping = buffer.obj
    if not isinstance(mapping, mmap.mmap) or stop <= start:
        return
    first = start - start % mmap.PAGESIZE
    with contextlib.suppress(OSError):
        mapping.madvise(_MADV_POPULATE_WRITE, first, stop - first)


class ReceiveBuffers:
    """Storage of tensors an owner has finished with, kept by tensor name for the next update.

    Only `recycle` tensors nothing else references any more (the receiver copied them into its
    model): the next decoder overwrites them in place. Not thread-safe; one receiver owns it.
    """

    def __init__(self) -> None:
        self._free: dict[tuple[str, int], torch.Tensor] = {}

    def take(self, name: str, nbytes: int) -> tuple[torch.Tensor, memoryview]:
        """Storage for `nbytes` of tensor `name`: recycled when a same-sized one is free, else new."""
        storage = self._free.pop((name, nbytes), None)
        if storage is None:
            return allocate(nbytes)
        return storage, memoryview(storage.numpy())

    def recycle(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Keep the memory of `tensors` (CPU, contiguous; others are skipped) for the next update."""
        for name, tensor in tensors.items():
            if tensor.device.type == "cpu" and tensor.is_contiguous() and tensor.numel():
                self._free[(name, tensor.nbytes)] = tensor.detach().reshape(-1).view(torch.uint8)

    @property
    def nbytes(self) -> int:
        """Memory held for reuse."""
        return sum(storage.numel() for storage in self._free.values())
