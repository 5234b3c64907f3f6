"""The policy's weights with the LoRA adapters folded in, under the base model's Hugging Face names.

For every adapted linear layer (peft's `lora.Linear`, adapter `default`):

    W' = W + (alpha / r) * B @ A        (transposed for fan_in_fan_out layers, e.g. GPT-2's Conv1D)

and the names lose peft's wrapping: `base_model.model.` in front and `.base_layer` inside, while
`lora_A` / `lora_B` disappear. The result is what `merge_and_unload()` would leave, computed from
tensors alone without touching (or copying) the model: so it works on a state dict gathered from
FSDP2 shards too, and the rollout services and `grpo export --merge` get an ordinary model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

PEFT_PREFIX = "base_model.model."
BASE_LAYER = ".base_layer"


def merged_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """{base name: tensor} with the adapters folded in; a model without adapters: its state_dict.

    `state_dict` (default `model.state_dict()`) gives the values, by the wrapped model's names (for
    FSDP2: the full tensors `gather_full_state_dict` assembled); `model` only says which modules
    carry adapters and their scales. Merged tensors are new (fp32 arithmetic, the weight's dtype);
    the others are the given tensors themselves."""
    state = model.state_dict() if state_dict is None else state_dict
    if not isinstance(model, PeftModel):
        return dict(state)
    adapter = model.active_adapter
    merged: dict[str, Tensor] = {}
    folded = set()
    for prefix, layer in _lora_layers(model):
        weight_key = f"{prefix}{BASE_LAYER}.weight"
        a = state[f"{prefix}.lora_A.{adapter}.weight"]
        b = state[f"{prefix}.lora_B.{adapter}.weight"]
        delta = (b.to(torch.float32) @ a.to(torch.float32)) * layer.scaling[adapter]
        if layer.fan_in_fan_out:
            delta = delta.T
        weight = state[weight_key]
        merged[weight_key] = (weight.to(torch.float32) + delta.to(weight.device)).to(weight.dtype)
        folded.add(prefix)
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if ".lora_" in name:
            if name.split(".lora_", 1)[0] not in folded:
                raise ValueError(f"{name}: an adapter tensor of a layer merged_state_dict does not know")
            continue
        out[base_name(name)] = merged.get(name, tensor)
    return out


def base_name(name: str) -> str:
    """`base_model.model.model.layers.0.mlp.up.base_layer.weight` -> `model.layers.0.mlp.up.weight`."""
    return name.removeprefix(PEFT_PREFIX).replace(f"{BASE_LAYER}.", ".")


def _lora_layers(model: PeftModel) -> list[tuple[str, LoraLayer]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
