"""What a LoRA policy looks like to a rollout service: merged tensors under the base model's names.

A rollout service holds a plain model (`model.layers.0.self_attn.q_proj.weight`), the learner a
peft model whose targeted Linear layers keep the frozen base weight W and the adapter pair (A, B).
The weights the policy computes with are, per targeted Linear,

    W' = W + s * B @ A        s = lora_alpha / r   (lora_alpha / sqrt(r) with use_rslora)

(transposed when the layer is `fan_in_fan_out`), and a `modules_to_save` module's trained copy in
place of the original. Only those tensors change during training: everything else is the base
model, so after a rollout service has the whole model once, these are all it needs again.

`LoraLayout` reads the structure once from the peft model (names, scales, adapter name) and then
works on a state dict, not on the modules: the live parameters are never touched (no
`merge_and_unload` on the training model), and the same code serves a state dict gathered from
FSDP shards. Peft's own `get_delta_weight` is not used for that reason: it reads the modules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

PEFT_PREFIX = "base_model.model."  # a PeftModel's state-dict names = this + the base model's names


@dataclass(frozen=True)
class LoraLinear:
    """One targeted Linear: where its pieces are in the peft state dict, and its scale s."""

    base_name: str  # "model.layers.0.self_attn.q_proj"
    peft_name: str  # "base_model.model.model.layers.0.self_attn.q_proj"
    adapter: str  # peft's adapter name ("default")
    scale: float
    fan_in_fan_out: bool

    def weight_key(self) -> str:
        return f"{self.peft_name}.base_layer.weight"

    def lora_key(self, which: str) -> str:
        return f"{self.peft_name}.lora_{which}.{self.adapter}.weight"


@dataclass(frozen=True)
class SavedModule:
    """A `modules_to_save` module: its trained copy replaces the original under the base names."""

    base_name: str  # "lm_head"
    peft_name: str
    adapter: str
    parameter_names: tuple[str, ...]  # "weight", "bias", ...


@dataclass(frozen=True)
class LoraLayout:
    linears: tuple[LoraLinear, ...]
    saved: tuple[SavedModule, ...]
    rank: int
    alpha: float
    use_rslora: bool

    @classmethod
    def of(cls, model: nn.Module) -> LoraLayout:
        """The layout of a peft LoRA model's active adapter; ValueError for what it cannot merge."""
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
        from peft.utils import ModulesToSaveWrapper

        if not isinstance(model, PeftModel):
            raise ValueError(f"{type(model).__name__} is not a peft model")
        adapter = model.active_adapter
        config = model.peft_config[adapter]
        if getattr(config, "use_dora", False):
            raise ValueError("DoRA adapters cannot be pushed as merged Linear deltas; use plain LoRA")
        linears: list[LoraLinear] = []
        saved: list[SavedModule] = []
        for name, module in model.named_modules():
            base_name = name.removeprefix(PEFT_PREFIX)
            if isinstance(module, LoraLayer) and adapter in module.lora_A:
                if not isinstance(module.get_base_layer(), nn.Linear):
                    raise ValueError(f"{base_name}: only LoRA on Linear layers is supported, not {module}")
                if adapter in module.merged_adapters:
                    raise ValueError(f"{base_name}: the adapter is merged into the base weight already")
                fan_in_fan_out = bool(getattr(module, "fan_in_fan_out", False))
                linears.append(LoraLinear(base_name, name, adapter, module.scaling[adapter], fan_in_fan_out))
            elif isinstance(module, ModulesToSaveWrapper) and adapter in module.modules_to_save:
                params = tuple(n for n, _ in module.modules_to_save[adapter].named_parameters())
                saved.append(SavedModule(base_name, name, adapter, params))
        if not linears and not saved:
            raise ValueError("the peft model has no LoRA Linear layer and no modules_to_save")
        return cls(tuple(linears), tuple(saved), int(config.r), float(config.lora_alpha), config.use_rslora)

    # --- what changes ---------------------------------------------------------------------------
    def changed_names(self) -> list[str]:
        """Base-model names of every tensor training can change (the targeted tensors)."""
        names = [f"{linear.base_name}.weight" for linear in self.linears]
        names += [f"{m.base_name}.{p}" for m in self.saved for p in m.parameter_names]
        return names

    def merged_targeted(
        self, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """The targeted tensors, merged, under base names, as new tensors (in `dtype` if given).

        `state_dict` is the peft model's (peft names); a state dict that is already merged (base
        names) is accepted too: its targeted tensors are then taken as they are.
        """
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for linear in self.linears:
                name = f"{linear.base_name}.weight"
                if linear.weight_key() not in state_dict and name in state_dict:
                    out[name] = _cast(state_dict[name], dtype, copy=True)
                    continue
                weight = state_dict[linear.weight_key()]
                a, b = state_dict[linear.lora_key("A")], state_dict[linear.lora_key("B")]
                compute = torch.promote_types(weight.dtype, torch.float32)  # bf16 deltas lose bits
                delta = (b.to(compute) @ a.to(compute)) * linear.scale
                if linear.fan_in_fan_out:
                    delta = delta.T
                out[name] = (weight.to(compute) + delta).to(dtype or weight.dtype)
            for module in self.saved:
                for param in module.parameter_names:
                    name = f"{module.base_name}.{param}"
                    key = f"{module.peft_name}.modules_to_save.{module.adapter}.{param}"
                    out[name] = _cast(state_dict[key] if key in state_dict else state_dict[name], dtype, True)
        return out

    def merged_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Every tensor of the merged model under base names: the base model, then the merged ones.

        Untouched tensors are the state dict's own (cast only when `dtype` differs); callers that
        keep them past the next optimizer step copy them (the weight push snapshots).
        """
        out: dict[str, torch.Tensor] = {}
        saved_prefixes = tuple(f"{m.peft_name}." for m in self.saved)
        for key, tensor in state_dict.items():
            if ".lora_" in key or ".modules_to_save." in key:
                continue
            name = key.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
            if key.startswith(saved_prefixes):
                name = name.replace(".original_module.", ".")
            out[name] = _cast(tensor, dtype, copy=False)
        out.update(self.merged_targeted(state_dict, dtype))
        return out

    # --- the adapter itself ---------------------------------------------------------------------
    def adapter_tensors(
        self, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """The adapter under peft's saved names (`...q_proj.lora_A.weight`: no adapter name)."""
        out: dict[str, torch.Tensor] = {}
        for linear in self.linears:
            for which in ("A", "B"):
                out[f"{linear.peft_name}.lora_{which}.weight"] = _cast(
                    state_dict[linear.lora_key(which)], dtype, copy=True
                )
        return out

    def target_modules(self) -> list[str]:
        """peft's target_modules as SGLang reads them: the targeted layers' short names."""
        return sorted({linear.base_name.rsplit(".", 1)[-1] for linear in self.linears})

    def check_uniform_scale(self) -> None:
        """An adapter spec carries one rank and alpha: refuse per-module rank/alpha patterns."""
        expected = self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)
        odd = [linear.base_name for linear in self.linears if not math.isclose(linear.scale, expected)]
        if odd or self.use_rslora:
            raise ValueError(
                "adapter-only push needs one rank and alpha for every module and no use_rslora "
                f"(modules with another scale: {odd[:3]}); use push.lora_mode = 'merged'"
            )


def merged_targeted_tensors(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """For a peft LoRA model: W + s * B @ A of every targeted Linear (and modules_to_save copies),
    under the base model's names, as new tensors; the model itself is left as it is."""
    return LoraLayout.of(model).merged_targeted(model.state_dict(), dtype)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None, copy: bool) -> torch.Tensor:
    target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
    return tensor.detach().to(dtype=target, copy=copy)
