"""What the rollout service must know about a model without loading it: context, ids, parameters.

The SGLang backend keeps the model in another process, but the service still needs the context
length (to validate requests), EOS / pad ids and the name, shape and dtype of every parameter (to
refuse a bad weight update before it reaches the server). All of it is read from the checkpoint
directory: config.json, generation_config.json and the safetensors headers (no tensor data).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from grpo_rollout.backends.contract import TensorSpec

logger = logging.getLogger(__name__)

SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


@dataclass(frozen=True)
class ModelFacts:
    max_context_length: int
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    tie_word_embeddings: bool
    parameter_specs: dict[str, TensorSpec] = field(default_factory=dict)


def _ids(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)  # type: ignore[union-attr]


def read_parameter_specs(model_dir: Path) -> dict[str, TensorSpec]:
    """Name -> shape/dtype of every tensor in the directory's *.safetensors files (headers only)."""
    specs: dict[str, TensorSpec] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                piece = handle.get_slice(name)
                dtype = SAFETENSORS_DTYPES.get(piece.get_dtype())
                if dtype is None:
                    raise ValueError(f"{file}: tensor {name!r} has unsupported dtype {piece.get_dtype()}")
                specs[name] = TensorSpec(tuple(piece.get_shape()), dtype)
    return specs


def read_model_facts(model_dir: Path) -> ModelFacts:
    """Read a Hugging Face checkpoint directory; raise FileNotFoundError naming what is missing."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: give --model as a local Hugging Face checkpoint directory"
        )
    config = json.loads(config_file.read_text())
    text_config = config.get("text_config", config)
    generation_file = model_dir / "generation_config.json"
    generation = json.loads(generation_file.read_text()) if generation_file.is_file() else {}
    eos = _ids(generation.get("eos_token_id")) or _ids(text_config.get("eos_token_id"))
    pad = generation.get("pad_token_id", text_config.get("pad_token_id"))
    tied = bool(config.get("tie_word_embeddings", text_config.get("tie_word_embeddings", False)))
    specs = read_parameter_specs(model_dir)
    # A tied checkpoint stores no lm_head; a learner's state_dict has it (the same tensor).
    embed = specs.get("model.embed_tokens.weight")
    if tied and embed is not None and "lm_head.weight" not in specs:
        specs["lm_head.weight"] = embed
    if not specs:
        logger.warning("%s has no *.safetensors files: weight updates cannot be checked locally", model_dir)
    return ModelFacts(
        max_context_length=int(text_config.get("max_position_embeddings") or 2048),
        vocab_size=int(text_config["vocab_size"]),
        eos_token_ids=eos,
        pad_token_id=int(pad if isinstance(pad, int) else (eos[0] if eos else 0)),
        tie_word_embeddings=tied,
        parameter_specs=specs,
    )
