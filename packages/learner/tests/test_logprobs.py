"""The selective log-softmax against the plain full-vocabulary computation it replaces."""

from __future__ import annotations

import pytest
import torch
from grpo_learner.grpo.batching import TrainSequence, collate
from grpo_learner.grpo.logprobs import EntropySink, SelectiveLogSoftmax, completion_logprobs, tokens_per_chunk
from learner_fixtures import logprob_sections, tiny_qwen2

torch.set_num_threads(1)


def plain_completion_logprobs(model, sequences, temperature):
    """The computation before the selective log-softmax and the shared prompt: one right-padded
    [prompt | completion] row per sequence, full logits, log_softmax, gather."""
    width = max(s.length for s in sequences)
    completion_width = max(len(s.completion_ids) for s in sequences)
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : seq.length] = torch.tensor((*seq.prompt_ids, *seq.completion_ids))
        attention[row, : seq.length] = 1
    logits = model(input_ids=ids, attention_mask=attention).logits.float() / temperature
    logprobs = torch.zeros((len(sequences), completion_width))
    entropy = torch.zeros((len(sequences), completion_width))
    for row, seq in enumerate(sequences):
        for j, token in enumerate(seq.completion_ids):
            if seq.model_mask and not seq.model_mask[j]:
                continue  # an environment token: context only
            token_logits = logits[row, len(seq.prompt_ids) + j - 1]
            logprobs[row, j] = torch.log_softmax(token_logits, -1)[token]
            with torch.no_grad():
                p = torch.softmax(token_logits, -1)
                entropy[row, j] = -(p * torch.log_softmax(token_logits, -1)).sum()
    return logprobs, entropy


def a_batch_of_sequences():
    gen = torch.Generator().manual_seed(0)
    sequences = []
    for prompt_len, completion_len in ((3, 5), (6, 2), (2, 7), (4, 4)):
        ids = torch.randint(2, 48, (prompt_len + completion_len,), generator=gen).tolist()
        sequences.append(
            TrainSequence(tuple(ids[:prompt_len]), tuple(ids[prompt_len:]), (-1.0,) * completion_len, 1.0)
        )
    return sequences


def a_batch():
    return collate(a_batch_of_sequences())


def groups_of_sequences():
    """Three prompts of different lengths, four completions each (lengths 1 to 6), one with
    environment tokens: what a micro-batch of whole groups holds."""
    gen = torch.Generator().manual_seed(5)
    sequences = []
    for prompt_len in (2, 7, 4):
        prompt = tuple(torch.randint(2, 48, (prompt_len,), generator=gen).tolist())
        for k, completion_len in enumerate((6, 1, 4, 3)):
            completion = tuple(torch.randint(2, 48, (completion_len,), generator=gen).tolist())
            mask = (True, False, False, True, True, True) if completion_len == 6 and k == 0 else ()
            logprobs = (-1.0,) * completion_len
            sequences.append(TrainSequence(prompt, completion, logprobs, 1.0, model_mask=mask))
    return sequences


def test_selective_logprobs_entropy_and_gradients_match_the_full_log_softmax():
    batch = a_batch()
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(1))
    results = []
    for compute in ("selective", "plain"):
        model = tiny_qwen2(seed=3)
        if compute == "selective":  # chunks of 5 tokens: several chunks, each recomputed in backward
            logprobs, entropy = completion_logprobs(model, batch, *logprob_sections(0.7, chunk_tokens=5))
        else:
            logprobs, entropy = plain_completion_logprobs(model, a_batch_of_sequences(), 0.7)
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
        sections = logprob_sections()
        logprobs, entropy = completion_logprobs(tiny_qwen2(), a_batch(), *sections, with_entropy=False)
    assert entropy is None and logprobs.shape == a_batch().completion_mask.shape


def test_a_group_shares_one_prompt_row():
    batch = collate(groups_of_sequences())
    assert batch.prompt_ids.shape == (3, 7)  # three distinct prompts, left-padded to the longest
    assert batch.prompt_index.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert batch.prompt_mask.sum(-1).tolist() == [2, 7, 4]
    assert batch.prompt_mask[0].tolist() == [0, 0, 0, 0, 0, 1, 1]


LAYOUTS = {
    "shared": logprob_sections(0.9, 7),
    "unshared": logprob_sections(0.9, 7, share_prompts=False),
    "packed, groups split across rows": logprob_sections(0.9, 7, row_tokens=8),
    "packed, groups sharing rows": logprob_sections(0.9, 7, row_tokens=40),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_prompt_computed_once_gives_the_logprobs_and_gradients_of_one_pass_per_sequence(layout):
    """The shared prompt's KV, gathered for each completion (or the packed rows' tree mask), is the
    KV a full pass would compute: logprobs, entropies and every parameter's gradient (the prompt's
    included: summed over its completions) match the plain per-sequence computation; environment
    tokens stay 0."""
    sequences = groups_of_sequences()
    batch = collate(sequences)
    weights = torch.randn(batch.completion_mask.shape, generator=torch.Generator().manual_seed(2))
    results = []
    for compute in ("layout", "plain"):
        model = tiny_qwen2(seed=4)
        if compute == "layout":
            logprobs, entropy = completion_logprobs(model, batch, *LAYOUTS[layout])
        else:
            logprobs, entropy = plain_completion_logprobs(model, sequences, 0.9)
        (logprobs * weights).sum().backward()
        results.append((logprobs.detach(), entropy, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lp, ent, grads), (plain_lp, plain_ent, plain_grads) = results
    torch.testing.assert_close(lp, plain_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, plain_ent, rtol=0, atol=1e-5)
    assert lp[0, 1] == 0 and lp[0, 2] == 0  # the environment tokens of row 0
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_falls_back_to_one_pass():
    """transformers drops the KV cache under gradient checkpointing in training; the result must
    not change (and must not silently lose the prompt)."""
    sequences = groups_of_sequences()
    model = tiny_qwen2(seed=4)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    logprobs, _ = completion_logprobs(model, collate(sequences), *logprob_sections(0.9))
    with torch.no_grad():
        plain, _ = plain_completion_logprobs(model, sequences, 0.9)
    torch.testing.assert_close(logprobs.detach(), plain, rtol=0, atol=1e-5)


def test_a_qwen_sized_vocabulary_is_projected_in_chunks_within_the_byte_budget():
    """151,936 entries: the configured 64 MiB of fp32 logits per lm_head chunk is 110 tokens, so 128
    completion tokens take two chunks (the token cap alone, 4096, would project all 128 at once),
    and the result is the one-pass log-softmax's."""
    from grpo_learner.config import LearnerConfig

    model = tiny_qwen2(seed=2, vocab=151_936)
    gen = torch.Generator().manual_seed(1)
    sequences = [
        TrainSequence(
            tuple(torch.randint(2, 151_936, (4,), generator=gen).tolist()), completion, (-1.0,) * 64, 1.0
        )
        for completion in (tuple(torch.randint(2, 151_936, (64,), generator=gen).tolist()) for _ in range(2))
    ]
    config = LearnerConfig(model={"name_or_path": "m"})
    projected: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda m, i, out: projected.append(out.numel())
    )
    logprobs, _ = completion_logprobs(model, collate(sequences), config.train, config.rollout.sampling)
    hook.remove()
    assert tokens_per_chunk(config.train, 151_936) == 110
    assert projected == [110 * 151_936, 18 * 151_936]  # no wider tokens x vocabulary tensor
    with torch.no_grad():
        plain, _ = plain_completion_logprobs(model, sequences, config.rollout.sampling.temperature)
    torch.testing.assert_close(logprobs.detach(), plain, rtol=0, atol=1e-5)
