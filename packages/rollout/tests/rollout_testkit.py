"""Test helpers for grpo-rollout: a tiny causal LM and a char-level tokenizer built in code.

Nothing is downloaded: the model comes from a config, the tokenizer from a vocabulary written here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
CHARACTERS = "0123456789+-*/=.{}()?\\ abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:,#<>|_"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for char in CHARACTERS:
        vocab.setdefault(char, len(vocab))
    vocab["<unk>"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model_dir(path: Path, family: str = "qwen2", seed: int = 0, max_positions: int = 96) -> Path:
    """Save a ~50k-parameter causal LM plus tokenizer in Hugging Face format under `path`."""
    tokenizer = build_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    config = Qwen2Config(**common) if family == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def other_weights(model_dir: Path, seed: int) -> dict[str, torch.Tensor]:
    """A different, same-shaped set of weights for `model_dir`'s model (what a learner would push).

    Tensors the model ties (embedding and lm_head) are equal, as a learner of that model pushes
    them: the rollout then serves exactly what was pushed, and its fingerprint says so.
    """
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weights = {
            name: torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.5
            for name, t in model.state_dict().items()
        }
    if model.config.get_text_config().tie_word_embeddings and "lm_head.weight" in weights:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"].clone()  # equal, not shared
    return weights
