"""Loading the policy and the frozen reference model (created only when beta > 0)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_policy(
    name_or_path: str,
    device: torch.device,
    *,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
) -> nn.Module:
    """fp32 master weights (bf16 compute comes from autocast on GPU); training mode, no KV cache."""
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=torch.float32, trust_remote_code=trust_remote_code
    ).to(device)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def load_reference(
    name_or_path: str,
    device: torch.device,
    beta: float,
    *,
    trust_remote_code: bool = False,
    dtype: torch.dtype | None = None,
) -> nn.Module | None:
    """The frozen initial policy for the KL term; None (no memory spent) when beta == 0.

    Kept in bf16 on GPU (it only runs forward), fp32 on CPU, unless `dtype` says otherwise (the
    distributed learner loads it on CPU in the dtype it will have on the GPU, then shards it).
    """
    if beta == 0:
        return None
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=dtype, trust_remote_code=trust_remote_code
    )
    return model.to(device).eval().requires_grad_(False)


def input_vocab_size(model: nn.Module) -> int:
    """Rows of the model's input embedding: the token ids it can take (LoRA and FSDP wrappers pass
    get_input_embeddings through). A model without one answers its config's vocab_size."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(embeddings, nn.Embedding):
        return embeddings.num_embeddings
    return int(model.config.get_text_config().vocab_size)
