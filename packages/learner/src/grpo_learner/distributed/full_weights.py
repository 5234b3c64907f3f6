"""Full (unsharded) weights of an FSDP2-sharded model, assembled on rank 0's CPU one tensor at a time.

Weight push and the Hugging Face export need every tensor whole, by its Hugging Face name. Every
rank walks `model.state_dict()` in the same order and all-gathers one tensor (`DTensor.full_tensor`);
rank 0 copies it to CPU and the gathered device copy is freed before the next one. So the device
never holds more than one full tensor beyond its shards, never the whole model in one buffer.

Tied weights (embed_tokens / lm_head) are one parameter under two names: gathered once, listed under
both names, exactly like the unsharded model's state_dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from grpo_learner.distributed.process_group import Ranks


def gather_full_state_dict(model: nn.Module, ranks: Ranks) -> dict[str, torch.Tensor]:
    """{HF name: CPU tensor} on rank 0; {} on the other ranks (which must call this too)."""
    # state_dict() hands out a fresh tensor per name; ties are found through the parameters.
    owner = {name: id(p) for name, p in model.named_parameters(remove_duplicate=False)}
    full: dict[str, torch.Tensor] = {}
    first_name: dict[int, str] = {}
    for name, tensor in model.state_dict().items():
        key = owner.get(name, id(tensor))
        if key in first_name:  # tied: the same parameter, already gathered
            if ranks.is_main:
                full[name] = full[first_name[key]]
            continue
        first_name[key] = name
        whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        if ranks.is_main:
            full[name] = whole.detach().to("cpu", copy=True)
        del whole
    return full
