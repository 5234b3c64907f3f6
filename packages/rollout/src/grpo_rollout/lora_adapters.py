"""LoRA adapter streams (`WeightChunk.lora_adapter`): the spec's validation and the tensors it implies.

One place for what the rollout side checks before an adapter stream claims any memory, whatever
the backend: `validate_adapter_spec` (rank > 0, alpha finite and > 0, target_modules non-empty
names; the decoder refuses a spec that changes inside one stream) and `adapter_tensor_specs`, the
tensors such an adapter may hold for the model being served, in peft's saved names:

    base_model.model.{module}.lora_A.weight   shape [rank, in_features]
    base_model.model.{module}.lora_B.weight   shape [out_features, rank]

for every 2-D `{module}.weight` of the base model whose last name part is a target module (peft's
matching of a plain name list). The dtype is the base weight's, as for a full update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from grpo.v1 import rollout_pb2

from grpo_rollout.backends.contract import TensorSpec

PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterSpec:
    """A validated LoraAdapterSpec: what peft's adapter_config.json says about the adapter."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]


def validate_adapter_spec(spec: rollout_pb2.LoraAdapterSpec) -> AdapterSpec:
    """Raise ValueError naming the field (the service answers INVALID_ARGUMENT) or return the spec."""
    if spec.rank <= 0:
        raise ValueError(f"rank must be > 0 (peft's r), got {spec.rank}")
    if not math.isfinite(spec.alpha) or spec.alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (peft's lora_alpha), got {spec.alpha}")
    modules = list(spec.target_modules)
    if not modules:
        raise ValueError("target_modules is empty: name the modules the adapter targets (q_proj, ...)")
    for index, name in enumerate(modules):
        if not name or name != name.strip() or "." in name:
            raise ValueError(
                f"target_modules[{index}] {name!r} is not a module name; give short names like 'q_proj'"
            )
        if name in modules[:index]:
            raise ValueError(f"target_modules[{index}] {name!r} appears twice")
    return AdapterSpec(spec.rank, spec.alpha, tuple(modules))


def adapter_tensor_specs(spec: AdapterSpec, base: Mapping[str, TensorSpec]) -> dict[str, TensorSpec]:
    """The adapter tensors `spec` allows on a model with parameters `base` (empty: unknown model)."""
    if not base:
        return {}
    specs: dict[str, TensorSpec] = {}
    targets = set(spec.target_modules)
    for name, weight in base.items():
        module, _, leaf = name.rpartition(".")
        if leaf != "weight" or len(weight.shape) != 2 or module.rpartition(".")[2] not in targets:
            continue
        out_features, in_features = weight.shape
        specs[f"{PEFT_PREFIX}{module}.lora_A.weight"] = TensorSpec((spec.rank, in_features), weight.dtype)
        specs[f"{PEFT_PREFIX}{module}.lora_B.weight"] = TensorSpec((out_features, spec.rank), weight.dtype)
    found = {name.rpartition(".lora_")[0].rpartition(".")[2] for name in specs}
    if missing := sorted(targets - found):
        raise ValueError(f"target_modules {missing} name no Linear weight of the rollout model")
    return specs
