"""Per-token log-probabilities of completion tokens, `log_softmax(logits / temperature)`, and entropy.

Using the sampling temperature makes the learner's distribution the sampler's, so the importance
ratio is exactly 1 when the weights did not change. Memory: the vocabulary projection is the
largest activation (tokens x vocab, 151k wide for Qwen). Only hidden states at positions that predict
a completion token are projected (never prompt or padding positions), in chunks, and each chunk is
recomputed in backward instead of keeping its logits alive (activation checkpointing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grpo_learner.batching import MicroBatch


def _chunk_logprobs(hidden: Tensor, targets: Tensor, lm_head: nn.Module, temperature: float):
    logits = lm_head(hidden).float() / temperature
    log_norm = torch.logsumexp(logits, dim=-1)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_norm
    with torch.no_grad():  # entropy is a metric: H = logsumexp(z) - sum softmax(z) z
        entropy = log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logprobs, entropy


def token_logprobs(
    hidden: Tensor, targets: Tensor, lm_head: nn.Module, temperature: float, chunk_tokens: int
) -> tuple[Tensor, Tensor]:
    """[K] logprobs and entropies of `targets` given the hidden states `[K, H]` that predict them."""
    logprob_parts, entropy_parts = [], []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        if torch.is_grad_enabled():
            lp, ent = checkpoint(_chunk_logprobs, h, t, lm_head, temperature, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(h, t, lm_head, temperature)
        logprob_parts.append(lp)
        entropy_parts.append(ent)
    return torch.cat(logprob_parts), torch.cat(entropy_parts)


def completion_logprobs(
    model: nn.Module, batch: MicroBatch, temperature: float = 1.0, chunk_tokens: int = 4096
) -> tuple[Tensor, Tensor]:
    """`[N, T]` logprobs (with grad when enabled) and entropies of the completion tokens; 0 on padding.

    Assumes a causal LM whose logits are `lm_head(decoder(...).last_hidden_state)` (Llama, Qwen,
    Mistral...). The token at completion position j of row i is predicted at `prompt_len_i + j - 1`.
    """
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    rows, cols = batch.completion_mask.nonzero(as_tuple=True)
    positions = batch.prompt_lengths[rows] + cols - 1
    logprobs, entropy = token_logprobs(
        hidden[rows, positions], batch.completion_ids[rows, cols], lm_head, temperature, chunk_tokens
    )
    mask = batch.completion_mask
    full_logprobs = torch.zeros(mask.shape, dtype=logprobs.dtype, device=logprobs.device)
    full_entropy = torch.zeros(mask.shape, dtype=entropy.dtype, device=entropy.device)
    return full_logprobs.masked_scatter(mask, logprobs), full_entropy.masked_scatter(mask, entropy)
