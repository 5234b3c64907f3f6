"""Choosing the next token from logits: temperature, top-k, top-p, and the sampler's logprob.

Pure tensor functions, so the definition the learner must reproduce is in one short place:
the logprob of a token is `log_softmax(logits / temperature)` *before* top-k / top-p filtering
(temperature 1 when greedy), the same as SGLang. Filtering only changes which tokens can be drawn.
"""

from __future__ import annotations

import torch

# SGLang's `_SAMPLING_EPS` (sglang/srt/sampling/sampling_params.py): a temperature below it is greedy
# (SGLang sets temperature 1 and top_k 1). Both backends share the boundary, so one request means the
# same thing on either; it also keeps `logits / temperature` finite (1e-45 would overflow to inf).
GREEDY_TEMPERATURE_BELOW = 1e-6


def is_greedy(temperature: float) -> bool:
    """True for 0 and every temperature under SGLang's greedy threshold (denormals included)."""
    return temperature < GREEDY_TEMPERATURE_BELOW


def filter_top_k_top_p(scaled_logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (at least one token stays).

    `top_k` -1 and `top_p` 1 switch the filters off. Works on a [batch, vocab] tensor.
    """
    logits = scaled_logits
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before > top_p  # the most likely token has mass_before 0: always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of `logits` [batch, vocab]; return (token ids, their logprobs), both [batch].

    Greedy (`is_greedy(temperature)`: 0 and anything below SGLang's threshold) takes the argmax and
    reports temperature-1 logprobs. The logprob of the chosen token is
    `scaled[token] - logsumexp(scaled)`: one reduction and a gather, no [batch, vocab] log-softmax
    kept around.

    Sampling is by inverse CDF: one uniform `u` per row and the first token whose cumulative
    (filtered, unnormalised) probability exceeds `u * total`. It draws from exactly the
    distribution `torch.multinomial` would, with one random number per row instead of a pass over
    the vocabulary per draw (multinomial was a third of the hf backend's time per token on CPU).
    The cumulative sum is taken in float64 so that a 150k-token vocabulary adds no visible error.
    """
    logits = logits.float()
    greedy = is_greedy(temperature)
    scaled = logits if greedy or temperature == 1.0 else logits / temperature
    log_normaliser = torch.logsumexp(scaled, dim=-1, keepdim=True)
    if greedy:
        tokens = torch.argmax(scaled, dim=-1)
    else:
        weights = torch.exp(filter_top_k_top_p(scaled, top_k, top_p) - log_normaliser)
        cdf = weights.to(torch.float64).cumsum_(dim=-1)
        u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device, dtype=torch.float64)
        tokens = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
        tokens = tokens.clamp_(max=cdf.shape[-1] - 1)  # u * total rounded up to the total itself
    chosen = scaled.gather(-1, tokens.unsqueeze(-1)) - log_normaliser
    return tokens, chosen.squeeze(-1)
