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

from peft import PeftModel
from torch import Tensor, nn

from grpo_learner.lora.merged_weights import LoraLayout


def merged_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """{base name: tensor} with the adapters folded in; a model without adapters: its state_dict.

    `state_dict` (default `model.state_dict()`) gives the values, by the wrapped model's names (for
    FSDP2: the full tensors `gather_full_state_dict` assembled); `model` only says which modules
    carry adapters and their scales (`LoraLayout`, the one implementation the weight push uses too).
    Merged tensors are new (fp32 arithmetic, the weight's dtype); the others are the given tensors."""
    state = model.state_dict() if state_dict is None else state_dict
    if not isinstance(model, PeftModel):
        return dict(state)
    return LoraLayout.of(model).merged_state_dict(state)
