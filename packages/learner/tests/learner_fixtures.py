"""Tiny Qwen2-shaped causal LMs built from configs (no downloads) for the learner tests."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

VOCAB = 48


def tiny_qwen2(seed: int = 0, tie: bool = True, vocab: int = VOCAB) -> torch.nn.Module:
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.train()
    return model


def group(
    prompt: tuple[int, ...],
    completions: list[tuple[int, ...]],
    rewards: list[float],
    *,
    prompt_id: str = "p",
    version: int = 0,
    truncated: tuple[bool, ...] | None = None,
):
    """A ScoredGroup whose sampler logprobs are placeholders (-1.0 per token)."""
    from grpo_learner.rollout_data import ScoredCompletion, ScoredGroup

    truncated = truncated or (False,) * len(completions)
    return ScoredGroup(
        prompt_id=prompt_id,
        prompt_token_ids=prompt,
        completions=tuple(
            ScoredCompletion(tuple(c), (-1.0,) * len(c), r, truncated=t)
            for c, r, t in zip(completions, rewards, truncated, strict=True)
        ),
        policy_version=version,
    )
