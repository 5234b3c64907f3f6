"""Per-token log-probabilities of completion tokens, `log_softmax(logits / temperature)`, and entropy.

Using the sampling temperature makes the learner's distribution the sampler's, so the importance
ratio is exactly 1 when the weights did not change. Memory and time: the vocabulary projection is
the largest activation (tokens x vocab, 151k wide for Qwen). Only hidden states at positions that
predict a completion token are projected (never prompt or padding positions), in chunks, and each
chunk is recomputed in backward instead of keeping its logits alive (activation checkpointing).

The loss needs one number per token, the sampled token's logprob, so the vocabulary-wide work is
one selective log-softmax (`SelectiveLogSoftmax`): with z = logits / T and lse = logsumexp(z),

    forward   logp_t = z[target] - lse                     (plus, once and without grad, the
                                                            entropy H = lse - sum softmax(z) z)
    backward  d logp_t / d logits = (onehot(target) - softmax(z)) / T

It keeps the logits in their own dtype (bf16 under autocast) for backward, no fp32 copy, and its
backward is one exp pass plus an index add, where autograd through log_softmax / logsumexp + gather
would build a zero-filled vocab-wide gradient, scatter into it and add the two. The entropy (a
metric) is computed in the first forward only: not in the checkpoint's recomputation, not in the
pi_old / reference passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grpo_learner.batching import MicroBatch


@dataclass
class EntropySink:
    """Where the first forward of a chunk leaves its entropies (None: nobody asked for them)."""

    value: Tensor | None = None
    wanted: bool = True


class SelectiveLogSoftmax(torch.autograd.Function):
    """logits [K, V], targets [K] -> log_softmax(logits / T)[k, targets[k]]: see the module doc."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, temperature: float, sink: EntropySink) -> Tensor:
        scaled = logits.to(_compute_dtype(logits)) / temperature
        lse = torch.logsumexp(scaled, dim=-1)
        logprobs = scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
        if sink.wanted and sink.value is None:  # H = lse - sum_v softmax(z)_v z_v
            probs = torch.exp(scaled - lse.unsqueeze(-1))
            sink.value = lse - probs.mul_(scaled).sum(-1)
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        return logprobs

    @staticmethod
    def backward(ctx, grad_logprobs: Tensor):
        logits, targets, lse = ctx.saved_tensors
        scale = grad_logprobs.to(lse.dtype) / ctx.temperature
        scaled = logits.to(lse.dtype) / ctx.temperature
        grad = torch.exp(scaled.sub_(lse.unsqueeze(-1))).mul_(-scale.unsqueeze(-1))
        rows = torch.arange(grad.shape[0], device=grad.device)
        grad.index_put_((rows, targets), scale, accumulate=True)
        return grad.to(logits.dtype), None, None, None


def _compute_dtype(logits: Tensor) -> torch.dtype:
    """fp32 for bf16/fp16 logits (and fp32 ones); fp64 stays fp64."""
    return torch.promote_types(logits.dtype, torch.float32)


def _chunk_logprobs(
    hidden: Tensor, targets: Tensor, lm_head: nn.Module, temperature: float, sink: EntropySink
) -> Tensor:
    return SelectiveLogSoftmax.apply(lm_head(hidden), targets, temperature, sink)


def token_logprobs(
    hidden: Tensor,
    targets: Tensor,
    lm_head: nn.Module,
    temperature: float,
    chunk_tokens: int,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """[K] logprobs and (when asked) entropies of `targets` given the hidden states `[K, H]`."""
    logprob_parts, entropy_parts = [], []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        sink = EntropySink(wanted=with_entropy)
        if torch.is_grad_enabled():
            lp = checkpoint(_chunk_logprobs, h, t, lm_head, temperature, sink, use_reentrant=False)
        else:
            lp = _chunk_logprobs(h, t, lm_head, temperature, sink)
        logprob_parts.append(lp)
        if sink.value is not None:
            entropy_parts.append(sink.value)
    entropy = torch.cat(entropy_parts) if with_entropy else None
    return torch.cat(logprob_parts), entropy


def completion_logprobs(
    model: nn.Module,
    batch: MicroBatch,
    temperature: float = 1.0,
    chunk_tokens: int = 4096,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """`[N, T]` logprobs (with grad when enabled) and entropies of the model's completion tokens; 0 on
    padding and on environment tokens (context only: never projected through lm_head). The entropies
    are None when `with_entropy` is False (pi_old and reference passes need none).

    Assumes a causal LM whose logits are `lm_head(decoder(...).last_hidden_state)` (Llama, Qwen,
    Mistral...). The token at completion position j of row i is predicted at `prompt_len_i + j - 1`.
    """
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    rows, cols = batch.model_mask.nonzero(as_tuple=True)
    positions = batch.prompt_lengths[rows] + cols - 1
    logprobs, entropy = token_logprobs(
        hidden[rows, positions],
        batch.completion_ids[rows, cols],
        lm_head,
        temperature,
        chunk_tokens,
        with_entropy,
    )
    mask = batch.model_mask
    full_logprobs = torch.zeros(mask.shape, dtype=logprobs.dtype, device=logprobs.device)
    full_logprobs = full_logprobs.masked_scatter(mask, logprobs)
    if entropy is None:
        return full_logprobs, None
    full_entropy = torch.zeros(mask.shape, dtype=entropy.dtype, device=entropy.device)
    return full_logprobs, full_entropy.masked_scatter(mask, entropy)
