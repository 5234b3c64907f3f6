"""The sampler draws from softmax(logits / T) restricted by top-k / top-p, and reports unfiltered logprobs."""

from __future__ import annotations

import pytest
import torch
from grpo_rollout.sampling import sample_next_tokens

LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, -30.0])
DRAWS = 40_000


def frequencies(temperature: float, top_k: int = -1, top_p: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    tokens, _ = sample_next_tokens(LOGITS.repeat(DRAWS, 1), temperature, top_k, top_p, generator)
    return torch.bincount(tokens, minlength=LOGITS.numel()).double() / DRAWS


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_draws_follow_the_temperature_scaled_softmax(temperature: float) -> None:
    expected = torch.softmax(LOGITS.double() / temperature, -1)
    # 40k draws: the standard error of each frequency is at most 0.0025; 4 of them as the bound.
    assert torch.allclose(frequencies(temperature), expected, atol=0.01)


def test_top_k_and_top_p_renormalise_over_the_tokens_they_keep() -> None:
    two = torch.softmax(LOGITS[:2].double(), -1)
    assert torch.allclose(frequencies(1.0, top_k=2)[:2], two, atol=0.01)
    assert frequencies(1.0, top_k=2)[2:].sum() == 0
    # top_p 0.6: the first token holds 0.64 of the mass, so it is the whole nucleus.
    assert frequencies(1.0, top_p=0.6).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_logprobs_are_the_unfiltered_scaled_log_softmax_of_the_drawn_token() -> None:
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(1))
    tokens, logprobs = sample_next_tokens(logits, 0.7, 5, 0.9, torch.Generator().manual_seed(2))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens[:, None]).squeeze(-1)
    assert torch.allclose(logprobs, expected, atol=1e-5)
    greedy, greedy_logprobs = sample_next_tokens(logits, 0.0, -1, 1.0, None)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.allclose(greedy_logprobs, torch.log_softmax(logits, -1).max(-1).values, atol=1e-5)


def test_a_token_with_no_probability_is_never_drawn() -> None:
    logits = torch.tensor([[0.0, float("-inf"), 0.0, float("-inf")]]).repeat(10_000, 1)
    tokens, _ = sample_next_tokens(logits, 1.0, -1, 1.0, torch.Generator().manual_seed(3))
    assert set(tokens.tolist()) == {0, 2}
