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
    from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup

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


def save_tiny_model(directory, seed: int = 0) -> str:
    """A tiny Qwen2 and a word-level tokenizer over its vocabulary, saved in HF format."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, **{f"t{i}": i for i in range(2, VOCAB)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>")
    tiny_qwen2(seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def token_prompts(count: int):
    """`count` prompts p0, p1, ... given as token ids (no tokenizer needed), reference "0"."""
    from grpo_learner.data.prompts import ListPromptSource, PromptItem

    return ListPromptSource(
        [PromptItem(id=f"p{i}", reference="0", token_ids=(2, 3, 4 + i)) for i in range(count)]
    )


def default_config(**sections):
    """A validated learner config with only the model named (plus `sections`): the one source of
    every default the components read."""
    from grpo_learner.config import LearnerConfig

    return LearnerConfig.model_validate({"model": {"name_or_path": "tiny-qwen2"}, **sections})


def loss_settings(*values, **overrides):
    """The `[loss]` section from the config defaults; positional values are epsilon_low, epsilon_high,
    delta, beta, in that order, as in the formula."""
    names = ["epsilon_low", "epsilon_high", "delta", "beta"][: len(values)]
    given = dict(zip(names, values, strict=True))
    return default_config().loss.model_copy(update={**given, **overrides})


def update_config(micro_batch_size: int | None = None, **sections):
    """A validated config for one update: the defaults, `train.micro_batch_size` when given, and
    `sections` (dicts, or a whole section such as `loss_settings(...)`)."""
    from pydantic import BaseModel

    train = dict(sections.pop("train", {}))
    if micro_batch_size is not None:
        train["micro_batch_size"] = micro_batch_size
    given = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in sections.items()}
    return default_config(train=train, **given)


def logprob_sections(temperature=1.0, chunk_tokens=64, share_prompts=True, row_tokens=None):
    """(`[train]`, `[rollout.sampling]`) for computing logprobs: the padded layout, or the packed one in
    rows of `row_tokens`."""
    packing = {"packing": row_tokens is not None} | ({"packing_row_tokens": row_tokens} if row_tokens else {})
    train = {"logprob_chunk_tokens": chunk_tokens, "share_prompt_forward": share_prompts, **packing}
    config = default_config(train=train, rollout={"sampling": {"temperature": temperature}})
    return config.train, config.rollout.sampling
