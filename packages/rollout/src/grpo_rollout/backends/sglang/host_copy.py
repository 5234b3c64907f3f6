"""The served weights kept in host memory, so a delta push applies here and SGLang gets full tensors.

Why: the engines' weights live in GPU memory behind HTTP and cannot be read back cheaply, but a
delta (grpo_common.weights.delta) needs the exact current bits. With a host copy the network
carries the delta and only the local hop (checkpoint on disk -> update_weights_from_disk) carries
whole tensors. Cost: one model in the push dtype in host RAM (e.g. 1 GB for 0.5B parameters in
bf16, 16 GB for 8B), plus, during a delta update, new copies of the tensors it changes. Turn it
off with `sglang.host_copy = false`: the service then takes full pushes only.

The copy is tied to the version it holds: an update by another path (an NCCL broadcast, a LoRA
adapter) moves the generator's version past it, and it is no longer offered (`tensors` is None)
until a push has refreshed it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class HostCopy:
    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}
        self._version: int | None = None

    def tensors(self, version: int) -> Mapping[str, torch.Tensor] | None:
        """The copy if it holds `version` (the generator's current one), else None."""
        return self._tensors if self._tensors and self._version == version else None

    def store(
        self,
        before: int,
        after: int,
        received: Mapping[str, torch.Tensor],
        fresh: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """The engines went from version `before` to `after` with these tensors: copy `received`
        (the service reuses their memory), keep `fresh` as they are (made for the copy)."""
        if self._version != before:  # stale: start over from what this update named
            self._tensors = {}
        for name, tensor in received.items():
            self._tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
        self._tensors.update(fresh or {})
        self._version = after

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())
