"""Per-token log-probabilities of completion tokens, `log_softmax(logits / temperature)`, and entropy.

Using the sampling temperature makes the learner's distribution the sampler's, so the importance
ratio is exactly 1 when the weights did not change. Memory and time: the vocabulary projection is
the largest activation (tokens x vocab, 151k wide for Qwen). Only hidden states at positions that
predict a completion token are projected (never prompt or padding positions), in chunks of at most
`train.logprob_chunk_mib` of fp32 logits (110 tokens at 151,936 entries and 64 MiB), and each chunk
is recomputed in backward instead of keeping its logits alive (activation checkpointing): no
tokens x vocabulary tensor of more than one chunk ever exists, in forward or backward.

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

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grpo_learner.config import SamplingConfig, TrainConfig
from grpo_learner.grpo.batching import MicroBatch
from grpo_learner.grpo.packing import packed_completion_hidden, packed_rows, with_packed_rows


def packing_row_tokens(train: TrainConfig) -> int | None:
    """The packed layout's row width (`train.packing_row_tokens`) when `train.packing` is on, else
    None: the padded layout."""
    return train.packing_row_tokens if train.packing else None


def tokens_per_chunk(train: TrainConfig, vocab: int) -> int:
    """min(logprob_chunk_tokens, logprob_chunk_mib x 2^20 / (vocab x 4 B)), at least 1: the most tokens
    whose fp32 logits stay within the byte budget (151,936 entries, 64 MiB: 110 tokens)."""
    return max(1, min(train.logprob_chunk_tokens, int(train.logprob_chunk_mib * 2**20) // (vocab * 4)))


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
    train: TrainConfig,
    sampling: SamplingConfig,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """`[N, T]` logprobs (with grad when enabled) and entropies of the model's completion tokens; 0 on
    padding and on environment tokens (context only: never projected through lm_head). The entropies
    are None when `with_entropy` is False (pi_old and reference passes need none). The layout and the
    lm_head chunks follow `[train]`, the temperature is the sampler's (`[rollout.sampling]`).

    Assumes a causal LM whose logits are `lm_head(decoder(...).last_hidden_state)` (Llama, Qwen,
    Mistral...). Completion token j is predicted by the hidden state before it: the prompt's last
    one for j = 0, completion position j - 1 after that (see `_completion_hidden`).
    """
    lm_head = model.get_output_embeddings()
    row_tokens = packing_row_tokens(train)
    if row_tokens is None or batch.padded:
        hidden = _completion_hidden(model.get_decoder(), batch, train.share_prompt_forward)
    else:
        hidden = packed_completion_hidden(model.get_decoder(), batch, row_tokens)
    rows, cols = batch.model_mask.nonzero(as_tuple=True)
    logprobs, entropy = token_logprobs(
        hidden[rows, cols],
        batch.completion_ids[rows, cols],
        lm_head,
        sampling.temperature,
        tokens_per_chunk(train, lm_head.weight.shape[0]),
        with_entropy,
    )
    mask = batch.model_mask
    full_logprobs = torch.zeros(mask.shape, dtype=logprobs.dtype, device=logprobs.device)
    full_logprobs = full_logprobs.masked_scatter(mask, logprobs)
    if entropy is None:
        return full_logprobs, None
    full_entropy = torch.zeros(mask.shape, dtype=entropy.dtype, device=entropy.device)
    return full_logprobs, full_entropy.masked_scatter(mask, entropy)


def with_layout(batch: MicroBatch, train: TrainConfig, pack: bool = True) -> MicroBatch:
    """`batch` with what its layout needs built once for all its forwards: the packed rows under
    train.packing (see packing.py) unless `pack` is False (the step's choice: layout_cost.py);
    nothing for the padded layouts."""
    row_tokens = packing_row_tokens(train)
    if row_tokens is None:
        return batch
    if not pack:
        return replace(batch, padded=True)
    return with_packed_rows(batch, row_tokens)


def layout_tokens(batch: MicroBatch, train: TrainConfig) -> tuple[int, int]:
    """(token positions the decoder computes for `batch`, how many of them are real tokens) in the
    layout `[train]` chooses; the rest is padding. Shared prompts count once in both (the unshared
    layout, also used under gradient checkpointing, computes each sequence's prompt again)."""
    row_tokens = packing_row_tokens(train)
    if row_tokens is not None and not batch.padded:  # a split group repeats its prompt
        packed = packed_rows(batch, row_tokens)
        return packed.padded_tokens, packed.real_tokens
    prompt_lengths = batch.prompt_mask.sum(-1)
    completions = int(batch.completion_mask.sum())
    if train.share_prompt_forward:
        return batch.prompt_ids.numel() + batch.completion_ids.numel(), int(
            prompt_lengths.sum()
        ) + completions
    n = batch.completion_ids.shape[0]
    real = int(prompt_lengths[batch.prompt_index].sum()) + completions
    return n * (batch.prompt_ids.shape[1] + batch.completion_ids.shape[1]), real


def _completion_hidden(decoder: nn.Module, batch: MicroBatch, share_prompts: bool) -> Tensor:
    """`[N, T, H]`: at [i, j] the hidden state that predicts completion token j of row i.

    Shared (the default): the P distinct prompts go through the decoder once, with a KV cache; each
    completion row takes its prompt's cache rows (`batch_select_indices`: a differentiable gather,
    so the prompt's gradients are the sum over its G completions) and runs its own tokens after it:
    per group `Lp + G * T` tokens through every layer instead of `G * (Lp + T)`. The attention each
    completion token sees is the same as in one pass over prompt + completion (same keys, same
    positions), so the logprobs agree to float rounding.

    Unshared: one pass over `[prompt | completion]` rows. Used when asked and when gradient
    checkpointing is on in training (transformers then drops the KV cache: a layer recomputed in
    backward would append to it twice).
    """
    prompt_mask = batch.prompt_mask[batch.prompt_index]
    mask = torch.cat([prompt_mask, batch.completion_mask.to(prompt_mask.dtype)], dim=1)
    width = batch.prompt_mask.shape[1]
    checkpointed = getattr(decoder, "gradient_checkpointing", False) and decoder.training
    if not share_prompts or checkpointed:
        ids = torch.cat([batch.prompt_ids[batch.prompt_index], batch.completion_ids], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return hidden[:, width - 1 : -1]
    prompt_positions = (batch.prompt_mask.cumsum(-1) - 1).clamp(min=0)
    prompt_out = decoder(
        input_ids=batch.prompt_ids,
        attention_mask=batch.prompt_mask,
        position_ids=prompt_positions,
        use_cache=True,
    )
    cache = prompt_out.past_key_values
    cache.batch_select_indices(batch.prompt_index)
    lengths = batch.prompt_mask.sum(-1)[batch.prompt_index]
    steps = torch.arange(batch.completion_ids.shape[1], device=lengths.device)
    completion_out = decoder(
        input_ids=batch.completion_ids,
        attention_mask=mask,
        position_ids=lengths.unsqueeze(1) + steps,
        past_key_values=cache,
        use_cache=True,
    )
    last_prompt = prompt_out.last_hidden_state[batch.prompt_index, -1:]  # left-padded: its last token
    return torch.cat([last_prompt, completion_out.last_hidden_state[:, :-1]], dim=1)
