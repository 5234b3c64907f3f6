"""The tiny Qwen2-shaped causal LM of the embedded default, built from a config (no download)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config


def tiny_qwen2_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    """~0.8M parameters: big enough to learn the task in a minute of warm-up, small enough for 2 cores."""
    return Qwen2Config(
        vocab_size=(len(tokenizer) + 15) // 16 * 16,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_qwen2_config(tokenizer), dtype=torch.float32)
