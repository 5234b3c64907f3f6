"""What a weight push sends: one small strategy, shared by every transport.

A push hands the policy's state dict to the pusher; the selection turns it into the tensors a
rollout service needs. Two moments differ:

- `everything(weights)`: a service that has nothing of ours yet (the first push, a restarted or
  resynced service) gets the whole model;
- `changed(weights)`: a service that already took one of our pushes gets only what training can
  have changed since. The names are the same on every call, so a service that missed versions
  catches up from any later one.

Full fine-tuning changes every tensor (`changed` is everything). Names that alias one tensor (a
tied embedding: `lm_head.weight` is `model.embed_tokens.weight`) are sent once, under the first
name: the receiver's model ties them too (hf: one storage; SGLang skips a tied lm_head), so the
second copy was 0.54 GB of every 0.5B push (151,936 x 896 x 4 B) for nothing. A LoRA policy changes only its
targeted tensors: `merged` sends them merged under the base names (W + s * B @ A), `adapter` sends
the adapter itself under peft's names, marked with `lora_adapter` so the service loads it as a LoRA
adapter (SGLang's /load_lora_adapter). `push.lora_mode` picks the LoRA selection from a registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch
from grpo.v1 import rollout_pb2
from grpo_common.registry import Registry
from torch import nn

from grpo_learner.lora.merged_weights import LoraLayout


class PushSelection(Protocol):
    @property
    def lora_adapter(self) -> rollout_pb2.LoraAdapterSpec | None:
        """Set when the stream is a LoRA adapter (every chunk carries it)."""

    def everything(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        """What a service with none of our weights needs."""

    def changed(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        """What a service that took an earlier push needs (the same names every time)."""


def without_aliases(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` less every name whose tensor is the same memory as an earlier name's (same data
    pointer, shape, strides and dtype: tied weights), so each tensor is sent once."""
    seen: set[tuple] = set()
    unique = {}
    for name, tensor in weights.items():
        key = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        unique[name] = tensor
    return unique


class FullWeights:
    """Full fine-tuning: every tensor (each once), every time."""

    lora_adapter = None

    def everything(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return without_aliases(weights)

    def changed(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return without_aliases(weights)


class LoraMerged:
    """LoRA, merged: the whole merged model once, then the merged targeted tensors only."""

    lora_adapter = None

    def __init__(self, layout: LoraLayout) -> None:
        self.layout = layout

    def everything(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return without_aliases(self.layout.merged_state_dict(weights))

    def changed(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return self.layout.merged_targeted(weights)


class LoraAdapter:
    """LoRA, adapter only: the adapter tensors under peft's names, every time (the rollout's base
    model is the learner's base model, which never changes)."""

    def __init__(self, layout: LoraLayout) -> None:
        layout.check_uniform_scale()
        if layout.saved:
            raise ValueError(
                "an adapter with modules_to_save cannot be served as a LoRA adapter; "
                "use push.lora_mode = 'merged'"
            )
        self.layout = layout
        self.lora_adapter = rollout_pb2.LoraAdapterSpec(
            rank=layout.rank, alpha=layout.alpha, target_modules=layout.target_modules()
        )

    def everything(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return self.layout.adapter_tensors(weights)

    def changed(self, weights: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        return self.layout.adapter_tensors(weights)


LORA_SELECTIONS: Registry[Callable[[LoraLayout], PushSelection]] = Registry("push.lora_mode")
LORA_SELECTIONS.add("merged", LoraMerged)
LORA_SELECTIONS.add("adapter", LoraAdapter)


def select_for(policy: nn.Module | None, lora_mode: str) -> PushSelection:
    """The selection for this policy: FullWeights unless it is a peft LoRA model."""
    if policy is None or not _is_peft(policy):
        return FullWeights()
    return LORA_SELECTIONS[lora_mode](LoraLayout.of(policy))


def _is_peft(policy: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a learner dependency
        return False
    return isinstance(policy, PeftModel)
