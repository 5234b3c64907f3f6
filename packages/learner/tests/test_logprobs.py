"""The selective log-softmax against the plain full-vocabulary computation it replaces."""

from __future__ import annotations

import torch
from grpo_learner.batching import TrainSequence, collate
from grpo_learner.logprobs import EntropySink, SelectiveLogSoftmax, completion_logprobs
from learner_fixtures import tiny_qwen2

torch.set_num_threads(1)


def plain_completion_logprobs(model, batch, temperature):
    """The computation before the selective log-softmax: full logits, log_softmax, gather."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logits = logits / temperature
    rows, cols = batch.completion_mask.nonzero(as_tuple=True)
    positions = batch.prompt_lengths[rows] + cols - 1
    token_logits = logits[rows, positions]
    logprobs = torch.log_softmax(token_logits, dim=-1).gather(
        -1, batch.completion_ids[rows, cols].unsqueeze(-1)
    )
    with torch.no_grad():
        entropy = -(torch.softmax(token_logits, -1) * torch.log_softmax(token_logits, -1)).sum(-1)
    mask = batch.completion_mask
    full = torch.zeros(mask.shape).masked_scatter(mask, logprobs.squeeze(-1))
    return full, torch.zeros(mask.shape).masked_scatter(mask, entropy)


def a_batch():
    gen = torch.Generator().manual_seed(0)
    sequences = []
    for prompt_len, completion_len in ((3, 5), (6, 2), (2, 7), (4, 4)):
        ids = torch.randint(2, 48, (prompt_len + completion_len,), generator=gen).tolist()
        sequences.append(
            TrainSequence(tuple(ids[:prompt_len]), tuple(ids[prompt_len:]), (-1.0,) * completion_len, 1.0)
        )
    return collate(sequences)


def test_selective_logprobs_entropy_and_gradients_match_the_full_log_softmax():
    batch = a_batch()
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(1))
    results = []
    for compute in ("selective", "plain"):
        model = tiny_qwen2(seed=3)
        if compute == "selective":  # chunks of 5 tokens: several chunks, each recomputed in backward
            logprobs, entropy = completion_logprobs(model, batch, temperature=0.7, chunk_tokens=5)
        else:
            logprobs, entropy = plain_completion_logprobs(model, batch, 0.7)
        (logprobs * weights).sum().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results.append((logprobs.detach(), entropy, grads))
    (lp, ent, grads), (plain_lp, plain_ent, plain_grads) = results
    torch.testing.assert_close(lp, plain_lp, rtol=0, atol=1e-6)
    torch.testing.assert_close(ent, plain_ent, rtol=0, atol=1e-5)
    assert grads.keys() == plain_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)


def test_selective_log_softmax_gradient_is_exact_in_float64():
    logits = torch.randn(6, 11, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, 10, 3, 7, 1])

    def fn(x):
        return SelectiveLogSoftmax.apply(x, targets, 0.8, EntropySink(wanted=False))

    assert torch.autograd.gradcheck(fn, (logits,))


def test_bf16_logits_keep_their_dtype_for_backward_and_match_an_fp32_reference():
    logits = torch.randn(5, 300, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 300, (5,))
    sink = EntropySink()
    out = SelectiveLogSoftmax.apply(logits, targets, 1.0, sink)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    reference = logits.detach().float().requires_grad_(True)
    expected = torch.log_softmax(reference, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    expected.sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits.grad.float(), reference.grad, rtol=0, atol=1e-2)
    probs = torch.softmax(reference.detach(), -1)
    torch.testing.assert_close(sink.value, -(probs * probs.log()).sum(-1), rtol=0, atol=1e-4)


def test_frozen_passes_compute_no_entropy():
    with torch.no_grad():
        logprobs, entropy = completion_logprobs(tiny_qwen2(), a_batch(), with_entropy=False)
    assert entropy is None and logprobs.shape == a_batch().completion_mask.shape
