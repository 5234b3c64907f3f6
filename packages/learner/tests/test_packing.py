"""Sequence packing: the layout holds only real tokens, and every registered loss trains as padded."""

from __future__ import annotations

import pytest
import torch
from grpo_learner.grpo.batching import TrainSequence, collate
from grpo_learner.grpo.logprobs import completion_logprobs, layout_tokens
from grpo_learner.grpo.losses import LOSSES, Normalizer, PolicyBatch
from grpo_learner.grpo.packing import pack
from learner_fixtures import logprob_sections, loss_settings, tiny_qwen2

torch.set_num_threads(1)


def uneven_groups() -> list[TrainSequence]:
    """Two groups of four whose completions run from 1 to 23 tokens (one with environment tokens):
    the padded layout computes 8 x 23 completion positions for 58 real ones."""
    gen = torch.Generator().manual_seed(11)
    sequences = []
    for prompt_len, lengths in ((5, (23, 2, 1, 4)), (3, (3, 9, 1, 15))):
        prompt = tuple(torch.randint(2, 48, (prompt_len,), generator=gen).tolist())
        for length in lengths:
            completion = tuple(torch.randint(2, 48, (length,), generator=gen).tolist())
            mask = (True, True, False, False, True, True, True, True, True) if length == 9 else ()
            logprobs = tuple((-torch.rand(length, generator=gen) - 0.5).tolist())
            advantage = float(torch.randn(1, generator=gen))
            sequences.append(TrainSequence(prompt, completion, logprobs, advantage, model_mask=mask))
    return sequences


def test_packed_rows_hold_only_real_tokens_with_positions_restarting_per_sequence():
    batch = collate(uneven_groups())
    packed = pack(batch, row_tokens=4096)
    real = 5 + 3 + int(batch.completion_mask.sum())
    assert packed.input_ids.shape == (1, real) and packed.real_tokens == real
    assert batch.completion_ids.numel() + batch.prompt_ids.numel() > 2 * real  # what padding cost
    # the second completion of the first group: after the prompt (5) and the first completion (23)
    assert packed.position_ids[0, 5 + 23 : 5 + 23 + 2].tolist() == [5, 6]
    mask = packed.attention_mask[0, 0]
    first, second = 5, 5 + 23  # first tokens of completions 0 and 1 of group 0
    assert mask[second, :5].all() and not mask[second, first:second].any()  # prompt yes, sibling no


def test_the_padding_metrics_count_what_each_layout_computes():
    batch = collate(uneven_groups())
    real = 5 + 3 + 58  # distinct prompts and completions
    shared, _ = logprob_sections()
    assert layout_tokens(batch, shared) == (2 * 5 + 8 * 23, real)  # prompts left-, completions right-padded
    unshared, _ = logprob_sections(share_prompts=False)
    assert layout_tokens(batch, unshared) == (8 * (5 + 23), 4 * 5 + 4 * 3 + 58)
    packed, _ = logprob_sections(row_tokens=4096)
    assert layout_tokens(batch, packed) == (real, real)


def test_an_empty_completion_is_packed_as_nothing():
    """A sequence aborted before its first token: no position, and its siblings are unaffected."""
    full = TrainSequence((3, 4, 5), (6, 7), (-1.0, -1.0), 1.0)
    packed = pack(collate([full, TrainSequence((3, 4, 5), (), (), 1.0)]), row_tokens=1024)
    assert packed.input_ids.tolist() == [[3, 4, 5, 6, 7]]
    assert packed.predictor[0].tolist() == [2, 3]


def test_a_group_longer_than_a_row_is_split_and_no_row_outgrows_the_budget_or_one_sequence():
    batch = collate(uneven_groups())
    packed = pack(batch, row_tokens=10)
    assert packed.input_ids.shape[1] == 5 + 23  # the longest sequence alone, not a whole group
    assert packed.input_ids.shape[0] > 2  # the groups were split
    # each part repeats its prompt: more real tokens than the two prompts once
    assert packed.real_tokens > 5 + 3 + 58


def test_rows_are_dealt_evenly_so_a_short_last_row_is_not_padded_to_a_full_ones_width():
    """Groups of 60, 50 and 40 tokens in rows of 100: first fit gives rows of 100 and 50 (width 100,
    25% padding); dealt over the same 2 rows, 60 | 50 + 40 (width 90)."""
    sequences = []
    for g, length in enumerate((58, 48, 38)):  # a 2-token prompt and one completion per group
        prompt = (g + 1, g + 2)
        sequences.append(TrainSequence(prompt, (5,) * length, (-1.0,) * length, 1.0))
    batch = collate(sequences)
    packed = pack(batch, row_tokens=100)
    assert packed.input_ids.shape == (2, 90) and packed.real_tokens == 150
    assert pack(batch, row_tokens=150).input_ids.shape == (1, 150)  # one row: nothing to deal


@pytest.mark.parametrize("loss_type", list(LOSSES))
def test_every_registered_loss_trains_packed_as_padded(loss_type):
    """Loss and every gradient equal between the padded and the packed layout (beta > 0: the KL term
    too), with environment tokens masked out of the loss."""
    sequences = uneven_groups()
    batch = collate(sequences)
    settings = loss_settings(beta=0.04)
    norm = Normalizer(
        total_sequences=len(sequences),
        total_tokens=int(batch.loss_mask.sum()),
        num_micro_batches=1,
        max_completion_length=batch.completion_ids.shape[1],
    )
    results = []
    for row_tokens in (None, 24):
        model = tiny_qwen2(seed=3)
        logprobs, _ = completion_logprobs(model, batch, *logprob_sections(row_tokens=row_tokens))
        shifted = logprobs.detach() - 0.1 * batch.loss_mask  # a ratio away from 1, so clipping acts
        policy = PolicyBatch(
            logprobs, shifted, batch.advantages, batch.loss_mask, ref_logprobs=shifted + 0.05
        )
        output = LOSSES[loss_type](policy, norm, settings)
        output.loss.backward()
        results.append((output.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    torch.testing.assert_close(packed_loss, padded_loss, rtol=0, atol=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5)


def test_lora_adapters_get_the_gradients_of_the_padded_layout():
    """With peft adapters on the policy (B made nonzero so they act), only A/B have gradients and those
    equal the padded layout's."""
    from grpo_learner.config.lora import LoraConfig
    from grpo_learner.lora.adapters import add_adapters

    batch = collate(uneven_groups())
    grads = []
    for row_tokens in (None, 24):
        model = add_adapters(tiny_qwen2(seed=3), LoraConfig(rank=4, target_modules=["q_proj", "v_proj"]))
        torch.manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1)
        logprobs, _ = completion_logprobs(model, batch, *logprob_sections(row_tokens=row_tokens))
        (logprobs * batch.loss_mask).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    padded, packed = grads
    assert padded.keys() == packed.keys() and all("lora_" in name for name in padded)
    for name, grad in padded.items():
        torch.testing.assert_close(packed[name], grad, rtol=1e-4, atol=1e-5)


def test_an_attention_without_4d_masks_is_refused_naming_the_setting():
    model = tiny_qwen2(seed=3)
    model.config._attn_implementation_internal = "flash_attention_2"  # no 4D masks; not installed here
    with pytest.raises(ValueError, match=r"train\.packing = false"):
        completion_logprobs(model, collate(uneven_groups()), *logprob_sections(row_tokens=64))
