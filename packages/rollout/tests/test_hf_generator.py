"""The transformers backend: batching, logprob definition, stopping, seeds and in-place weight loads."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import torch
from grpo_rollout.backends.contract import FinishReason, SamplingParams, WeightUpdateError
from grpo_rollout.backends.hf.config import HFConfig
from grpo_rollout.backends.hf.generator import HFGenerator
from rollout_testkit import other_weights

PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 20], [1, 30, 31, 32]]


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> HFGenerator:
    return HFGenerator.from_pretrained(tiny_model_dir, HFConfig())


def greedy(max_new_tokens: int = 12, **kwargs) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, **kwargs)


def test_left_padded_batch_matches_one_prompt_at_a_time(generator: HFGenerator) -> None:
    batched = generator.generate_sync(PROMPTS, 2, greedy())
    for prompt, group in zip(PROMPTS, batched, strict=True):
        alone = generator.generate_sync([prompt], 1, greedy())[0][0]
        for completion in group:
            assert completion.token_ids == alone.token_ids
            assert completion.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def recompute_logprobs(generator: HFGenerator, prompt: list[int], tokens: list[int], temperature: float):
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = generator.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    scale = temperature if temperature > 0 else 1.0
    return torch.log_softmax(logits / scale, -1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.3])
def test_logprobs_are_temperature_scaled_and_taken_before_top_k_top_p(
    generator: HFGenerator, temperature: float
) -> None:
    sampling = SamplingParams(max_new_tokens=10, temperature=temperature, top_k=5, top_p=0.8, seed=3)
    for prompt, group in zip(PROMPTS, generator.generate_sync(PROMPTS, 2, sampling), strict=True):
        for completion in group:
            expected = recompute_logprobs(generator, prompt, completion.token_ids, temperature)
            assert completion.logprobs == pytest.approx(expected.tolist(), abs=1e-4)
            # Filtering would renormalise over 5 tokens; unfiltered logprobs are lower.
            assert len(completion.logprobs) == len(completion.token_ids) > 0


def test_top_k_one_samples_the_greedy_tokens(generator: HFGenerator) -> None:
    sampled = generator.generate_sync(PROMPTS, 2, SamplingParams(max_new_tokens=8, top_k=1, seed=0))
    argmax = generator.generate_sync(PROMPTS, 1, greedy(8))
    for group, reference in zip(sampled, argmax, strict=True):
        assert all(c.token_ids == reference[0].token_ids for c in group)


def test_same_seed_reproduces_and_another_seed_differs(generator: HFGenerator) -> None:
    sampling = SamplingParams(max_new_tokens=16, temperature=1.5, seed=1234)
    first = generator.generate_sync(PROMPTS, 3, sampling)
    again = generator.generate_sync(PROMPTS, 3, sampling)
    other = generator.generate_sync(PROMPTS, 3, SamplingParams(max_new_tokens=16, temperature=1.5, seed=99))
    tokens = lambda result: [[c.token_ids for c in group] for group in result]  # noqa: E731
    assert tokens(first) == tokens(again)
    assert tokens(first) != tokens(other)
    # The n completions of one prompt are different samples, not copies.
    assert len({tuple(c.token_ids) for c in first[0]}) > 1


def test_stop_token_ends_each_sequence_with_its_own_finish_reason(generator: HFGenerator) -> None:
    free = generator.generate_sync(PROMPTS, 1, greedy(12))
    stop_id = free[0][0].token_ids[2]
    stopped = generator.generate_sync(PROMPTS, 1, greedy(12, stop_token_ids=(stop_id,)))
    reasons = set()
    for unconstrained, [completion] in zip(free, stopped, strict=True):
        full = unconstrained[0].token_ids
        if stop_id in full:
            end = full.index(stop_id) + 1
            assert completion.token_ids == full[:end]
            assert completion.finish_reason is FinishReason.STOP
        else:
            assert completion.token_ids == full
            assert completion.finish_reason is FinishReason.LENGTH
        assert len(completion.logprobs) == len(completion.token_ids)
        reasons.add(completion.finish_reason)
    assert FinishReason.STOP in reasons


def test_the_models_eos_stops_generation_without_being_asked(tiny_model_dir: Path) -> None:
    probe = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    free = probe.generate_sync(PROMPTS, 1, greedy(12))
    eos = free[0][0].token_ids[3]
    model = probe.model
    model.config.eos_token_id = eos
    model.generation_config.eos_token_id = eos
    generator = HFGenerator(model, "eos-test")
    assert generator.info().eos_token_ids == (eos,)
    [completion] = generator.generate_sync(PROMPTS[:1], 1, greedy(12))[0]
    full = free[0][0].token_ids
    assert completion.token_ids == full[: full.index(eos) + 1]
    assert completion.finish_reason is FinishReason.STOP


def test_prompt_plus_max_new_tokens_beyond_context_is_refused(generator: HFGenerator) -> None:
    with pytest.raises(ValueError, match="context"):
        generator.generate_sync([[1] * 10], 1, greedy(generator.info().max_context_length))


def test_llama_family_works_too(tiny_llama_dir: Path) -> None:
    llama = HFGenerator.from_pretrained(tiny_llama_dir, HFConfig())
    result = llama.generate_sync(PROMPTS, 2, SamplingParams(max_new_tokens=6, seed=0))
    assert [len(g) for g in result] == [2, 2, 2]


def test_bad_update_applies_nothing_and_a_good_one_changes_outputs(tiny_model_dir: Path) -> None:
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    before = generator.generate_sync(PROMPTS, 1, greedy())
    new = other_weights(tiny_model_dir, seed=7)
    bad_cases = {
        "unknown tensor name": {**new, "model.no_such.weight": torch.zeros(2)},
        "shape": {**new, "model.norm.weight": torch.zeros(3)},
        "dtype": {**new, "model.norm.weight": new["model.norm.weight"].to(torch.float64)},
    }
    for message, tensors in bad_cases.items():
        with pytest.raises(WeightUpdateError, match=message):
            asyncio.run(generator.load_weights(tensors, version=1))
        assert generator.info().weight_version == 0
        assert [g[0].token_ids for g in generator.generate_sync(PROMPTS, 1, greedy())] == [
            g[0].token_ids for g in before
        ]
    asyncio.run(generator.load_weights(new, version=1))
    after = generator.generate_sync(PROMPTS, 1, greedy())
    assert generator.info().weight_version == 1
    assert all(c.weight_version == 1 for g in after for c in g)
    assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]
    state = generator.model.state_dict()
    assert torch.equal(state["model.norm.weight"], new["model.norm.weight"])


def _logprobs_under(model, prompt: list[int], tokens: list[int], temperature: float) -> list[float]:
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits / temperature, -1)
    return logprobs.gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1).tolist()


def test_partial_call_continues_under_new_weights_with_each_tokens_version_and_logprob(
    tiny_model_dir: Path,
) -> None:
    """An update arriving mid-call (requested at the 4th forward, i.e. after 3 sampled tokens) is
    applied at the next token boundary; the call goes on under version 1, and every recorded logprob
    is the one its own version gives for the same prefix (recomputed from scratch with each version's
    weights): the KV cache of version 0 does not leak into version 1's tokens."""
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    before = HFGenerator.from_pretrained(tiny_model_dir, HFConfig()).model  # version 0's weights, kept aside
    new = other_weights(tiny_model_dir, seed=7)
    forwards = 0
    updater: list[threading.Thread] = []

    def request_update_at_fourth_forward(module, args, kwargs) -> None:
        nonlocal forwards
        forwards += 1
        if forwards == 4:
            thread = threading.Thread(target=asyncio.run, args=(generator.load_weights(new, version=1),))
            thread.start()
            updater.append(thread)
            while generator._updates_waiting == 0 and thread.is_alive():
                time.sleep(0.001)

    hook = generator.model.register_forward_pre_hook(request_update_at_fourth_forward, with_kwargs=True)
    sampling = SamplingParams(max_new_tokens=20, temperature=1.0, seed=5, partial=True)
    try:
        groups = generator.generate_sync(PROMPTS, 2, sampling)
    finally:
        hook.remove()
        for thread in updater:
            thread.join()
    assert generator.info().weight_version == 1
    spanned = 0
    for prompt, group in zip(PROMPTS, groups, strict=True):
        for completion in group:
            runs = completion.version_runs
            assert sum(tokens for _, tokens in runs) == len(completion.token_ids)
            assert completion.weight_version == runs[0][0] == 0  # the oldest token's version
            versions = [v for v, tokens in runs for _ in range(tokens)]
            old_count = versions.count(0)
            assert old_count == min(3, len(completion.token_ids))  # tokens 0..2 came before the swap
            spanned += len(runs) == 2
            expected_old = _logprobs_under(before, prompt, completion.token_ids, 1.0)
            expected_new = _logprobs_under(generator.model, prompt, completion.token_ids, 1.0)
            expected = expected_old[:old_count] + expected_new[old_count:]
            assert completion.logprobs == pytest.approx(expected, abs=1e-4)
            if len(runs) == 2:  # the two versions disagree, so the check above tells them apart
                assert expected_new[old_count:] != pytest.approx(expected_old[old_count:], abs=1e-3)
    assert spanned > 0, "no completion outlived the update: the test did not exercise a swap"


def test_a_call_that_is_not_partial_finishes_on_its_version_before_the_update(tiny_model_dir: Path) -> None:
    generator = HFGenerator.from_pretrained(tiny_model_dir, HFConfig())
    new = other_weights(tiny_model_dir, seed=7)
    updater: list[threading.Thread] = []

    def request_update_at_second_forward(module, args, kwargs) -> None:
        if not updater:
            updater.append(threading.Thread(target=generator.load_weights_sync, args=(new, 1)))
            updater[0].start()

    hook = generator.model.register_forward_pre_hook(request_update_at_second_forward, with_kwargs=True)
    try:
        groups = generator.generate_sync(PROMPTS, 2, SamplingParams(max_new_tokens=12, seed=5))
    finally:
        hook.remove()
        updater[0].join()
    assert {c.weight_version for group in groups for c in group} == {0}
    assert all(c.version_runs == () for group in groups for c in group)
    assert generator.info().weight_version == 1
