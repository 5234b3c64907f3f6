"""The policy with LoRA adapters (peft): wrapping, reloading from a checkpoint, counting, the free reference.

Only the adapters' A and B are trainable (peft freezes every base weight), so only they reach the
optimizer (`optim.build_optimizer` takes parameters that require grad). Adapters are added before
FSDP2 sharding (`assembly.build_trainer`): each decoder layer stays one FSDP unit, holding frozen
base weights and trainable adapters side by side; FSDP2 shards every parameter on its own and
reduce-scatters gradients only of those that have one.

The reference of the KL term is the base model itself: the same module with its adapters switched
off (`adapters_disabled`), so beta > 0 costs one more forward pass and no second copy of the model.
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from torch import nn

from grpo_learner.config.lora import ALL_LINEAR, LoraConfig

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ParameterCounts:
    trainable: int
    total: int

    def metrics(self) -> dict[str, float]:
        return {"model/trainable_parameters": self.trainable, "model/total_parameters": self.total}


def parameter_counts(model: nn.Module) -> ParameterCounts:
    """Parameters (tied ones once; an FSDP2 shard counts as its whole tensor) that train, and all."""
    params = list(model.parameters())
    return ParameterCounts(
        trainable=sum(p.numel() for p in params if p.requires_grad), total=sum(p.numel() for p in params)
    )


def has_adapters(model: nn.Module) -> bool:
    return isinstance(model, PeftModel)


def is_adapter_dir(path: str | Path) -> bool:
    """A directory that peft's save_pretrained wrote (adapter_config.json + adapter_model.safetensors)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def add_adapters(model: nn.Module, lora: LoraConfig) -> PeftModel:
    """`model` (modified in place) inside a PeftModel with fresh adapters: A random, B = 0, so the
    wrapped model computes exactly what `model` did."""
    peft_config = PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.scale_alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,  # a list of names, or peft's own "all-linear"
        task_type="CAUSAL_LM",
    )
    try:
        wrapped = get_peft_model(model, peft_config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"model.lora.target_modules: {exc}; this model's linear layers are {linear} "
            f'(or use "{ALL_LINEAR}")'
        ) from None
    return _linear_only(wrapped)


def load_adapters(model: nn.Module, adapter_dir: str | Path, lora: LoraConfig) -> PeftModel:
    """`model` with the trainable adapters saved in `adapter_dir` (a checkpoint's `model/`).

    The saved adapter config is the one used; a different `[model.lora]` rank is refused rather than
    silently ignored."""
    saved = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    if saved.get("r") != lora.rank:
        raise ValueError(
            f"{adapter_dir} holds rank-{saved.get('r')} adapters but model.lora.rank is {lora.rank}: "
            f"resume with --set model.lora.rank={saved.get('r')}, or start a new run"
        )
    return _linear_only(PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True))


def check_checkpoint_kind(model_dir: Path, lora: LoraConfig) -> None:
    """A LoRA checkpoint resumes only with [model.lora], a full one only without (ValueError, said how)."""
    if is_adapter_dir(model_dir) and not lora.enabled:
        raise ValueError(
            f"{model_dir} holds LoRA adapters, but model.lora.rank is 0 (full fine-tuning): resume with "
            "the run's [model.lora] settings, or start a new run from `grpo export --merge`"
        )
    if lora.enabled and not is_adapter_dir(model_dir):
        raise ValueError(
            f"{model_dir} is a full fine-tuning checkpoint, but model.lora.rank is {lora.rank}: resume "
            f"without [model.lora], or start a new LoRA run from it with --model {model_dir}"
        )


def adapters_disabled(model: nn.Module) -> AbstractContextManager:
    """Inside: `model` computes its base model (peft's disable_adapter); the adapters return after."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"{type(model).__name__} has no adapters to disable")
    return model.disable_adapter()


def _linear_only(model: PeftModel) -> PeftModel:
    """Adapters on linear layers only: merged_state_dict folds B @ A into nn.Linear weights."""
    other = [
        name
        for name, m in model.named_modules()
        if isinstance(m, LoraLayer) and not isinstance(m, LoraLinear)
    ]
    if other:
        raise ValueError(
            f"model.lora.target_modules: LoRA is supported on linear layers only, not on {other[:3]}; "
            'name linear layers (q_proj, v_proj, ...) or use "all-linear"'
        )
    counts = parameter_counts(model)
    logger.info(
        "LoRA: %d trainable of %d parameters (%.2f%%)",
        counts.trainable,
        counts.total,
        100 * counts.trainable / max(1, counts.total),
    )
    return model
