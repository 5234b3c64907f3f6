"""The GRPO update on a tiny Qwen2 model: direction, zero-variance groups, ratios, micro-batching."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from grpo_learner.config import LearnerConfig, OptimConfig
from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup
from grpo_learner.grpo.batching import collate
from grpo_learner.grpo.logprobs import completion_logprobs
from grpo_learner.grpo.optim import build_optimizer, build_scheduler
from grpo_learner.grpo.update import Trainer, micro_batch_sampler_weights, prepare_batch
from learner_fixtures import group, loss_settings, tiny_qwen2, update_config

torch.set_num_threads(1)

POSITIVE = [(5, 6, 7, 8), (9, 10, 11)]
NEGATIVE = [(20, 21, 22, 23, 24), (30, 31)]


def make_trainer(config: LearnerConfig, lr: float = 1e-2, reference=None) -> Trainer:
    model = tiny_qwen2(seed=0)
    optimizer = build_optimizer(model, OptimConfig(lr=lr, max_grad_norm=None))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=lr), total_optimizer_steps=10)
    return Trainer(model, optimizer, scheduler, config, reference)


def sequence_logprobs(model, g) -> list[float]:
    config = update_config(micro_batch_size=64)
    batch = prepare_batch([g], config, torch.device("cpu"))
    # one micro-batch, sorted by length: map back through the completion ids
    (mb,) = batch.micro_batches
    with torch.no_grad():
        logprobs, _ = completion_logprobs(model, mb, config.train, config.rollout.sampling)
    by_completion = {
        tuple(mb.completion_ids[i][mb.completion_mask[i]].tolist()): float(logprobs[i].sum())
        for i in range(len(mb.advantages))
    }
    return [by_completion[c.token_ids] for c in g.completions]


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "gspo", "cispo"])
def test_one_step_raises_positive_and_lowers_negative_completions(loss_type: str):
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 1.0, 0.0, 0.0])
    trainer = make_trainer(update_config(2, loss={"loss_type": loss_type}), lr=1e-3)
    before = sequence_logprobs(trainer.model, g)
    metrics = trainer.update([g])
    after = sequence_logprobs(trainer.model, g)
    assert after[0] > before[0] and after[1] > before[1], (before, after)
    assert after[2] < before[2] and after[3] < before[3], (before, after)
    assert metrics["reward"] == 0.5
    assert metrics["clip_ratio/region_mean"] == 0  # mu = 1: ratio exactly 1


def test_zero_variance_groups_give_zero_gradient_and_leave_weights_unchanged():
    groups = [group((1, 2), [*POSITIVE, *NEGATIVE], [1.0] * 4), group((3,), POSITIVE + POSITIVE, [0.0] * 4)]
    trainer = make_trainer(update_config(micro_batch_size=3))
    batch = prepare_batch(groups, trainer.config, torch.device("cpu"))
    assert all(mb.advantages.abs().sum() == 0 for mb in batch.micro_batches)
    trainer.accumulate_gradients(batch)
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(grad) == 0 for grad in grads)
    trainer.optimizer.zero_grad()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    metrics = trainer.update(groups)
    assert metrics["frac_reward_zero_std"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_ratio_is_exactly_one_when_nothing_changed():
    """Old logprobs (no grad) and the first pass (with grad) agree bit for bit, so r = 1."""
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 1.0, 0.0])
    trainer = make_trainer(update_config(2, rollout={"sampling": {"temperature": 0.7}}))
    batch = prepare_batch([g], trainer.config, torch.device("cpu"))
    old = trainer._frozen_logprobs(trainer.model, batch)
    for mb, old_lp in zip(batch.micro_batches, old, strict=True):
        logprobs, _ = trainer._logprobs(trainer.model, mb)
        assert torch.equal(torch.exp(logprobs - old_lp), torch.ones_like(old_lp))


def test_sampler_logprobs_equal_to_the_learners_give_unit_weights():
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 1.0, 0.0])
    trainer = make_trainer(update_config(micro_batch_size=4))
    (mb,) = prepare_batch([g], trainer.config, torch.device("cpu")).micro_batches
    with torch.no_grad():
        learner, _ = completion_logprobs(
            trainer.model, mb, trainer.config.train, trainer.config.rollout.sampling
        )
    from grpo_learner.grpo.losses import sampler_weights

    w = sampler_weights(learner, learner, mb.loss_mask, "mask", "sequence", cap=1.001)
    assert torch.equal(w, mb.loss_mask)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "gspo", "cispo"])
def test_gradient_does_not_depend_on_micro_batch_size(loss_type: str):
    groups = [
        group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 0.5, 0.0]),
        group((4, 5), [(7, 8), (9,), (12, 13, 14, 15, 16, 17), (3, 3)], [0.0, 1.0, 1.0, 0.0]),
    ]
    grads = []
    for micro in (1, 3, 8):
        trainer = make_trainer(update_config(micro, loss={"loss_type": loss_type}))
        trainer.accumulate_gradients(prepare_batch(groups, trainer.config, torch.device("cpu")))
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(grads[0], grads[2], atol=1e-6)


def test_micro_batches_are_length_bucketed():
    completions = [(5,) * n for n in (9, 1, 8, 2, 7, 3, 6, 4)]
    g = group((1, 2), completions, [float(i % 2) for i in range(8)])
    batch = prepare_batch([g], update_config(micro_batch_size=2), torch.device("cpu"))
    widths = [mb.completion_ids.shape[1] for mb in batch.micro_batches]
    assert widths == [2, 4, 7, 9]  # lengths 1,2 | 3,4 | 6,7 | 8,9
    padding = sum(int((~mb.completion_mask).sum()) for mb in batch.micro_batches)
    assert padding == 4  # each pair differs by one token


def test_a_batch_counts_the_tokens_it_generated_and_trains_and_its_median_length():
    """The uneven-workload figures (benchmarks/uneven_loop.py): what the model sampled, what the
    update trains (prompt + completion per sequence, no padding) and the median completion."""
    g1 = group((1, 2), [(5,) * n for n in (1, 2, 3, 40)], [1.0, 0.0, 1.0, 0.0], prompt_id="a")
    g2 = group((1, 2, 3), [(6,) * n for n in (4, 5, 6, 7)], [1.0, 0.0, 1.0, 0.0], prompt_id="b")
    metrics = prepare_batch([g1, g2], update_config(micro_batch_size=8), torch.device("cpu")).metrics
    assert metrics["tokens/generated"] == 68.0
    assert metrics["tokens/trained"] == 4 * 2 + 4 * 3 + 68.0
    assert metrics["completions/median_length"] == 4.5 and metrics["completions/max_length"] == 40.0


def test_each_micro_batch_is_packed_once_per_step_however_many_forwards_read_it(monkeypatch):
    """pi_old (mu = 2), the reference (beta > 0), both iterations and the token counts all read one
    layout per micro-batch: `pack` runs once per micro-batch and step, not once per forward."""
    from grpo_learner.grpo import packing

    packed = []
    build = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *args, **kwargs: packed.append(1) or build(*args, **kwargs))
    groups = [
        group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 0.5, 0.0], prompt_id="a"),
        group((4, 5), [(7, 8), (9,), (12, 13, 14, 15, 16, 17), (3, 3)], [0.0, 1.0, 1.0, 0.0], prompt_id="b"),
    ]
    config = update_config(3, loss=loss_settings(beta=0.04, num_iterations=2))
    reference = tiny_qwen2(seed=0).eval().requires_grad_(False)
    trainer = make_trainer(config, reference=reference)
    forwards = []
    for model in (trainer.model, reference):
        model.get_decoder().register_forward_hook(lambda *_: forwards.append(1))
    for step in (1, 2):
        trainer.update(groups)
        assert len(packed) == 3 * step  # 8 sequences in micro-batches of 3
        assert len(forwards) == 3 * 4 * step  # each: pi_old, reference, 2 iterations


@pytest.mark.parametrize("packing", [True, False])
def test_preparing_a_batch_reads_nothing_back_from_its_device(packing: bool):
    """Layouts and counts are taken on the CPU before the micro-batches move (on a GPU every read back
    synchronises the stream): on the meta device, which holds no data, any read back would raise."""
    config = update_config(3, train={"packing": packing, "packing_row_tokens": 64})
    g = group((1, 2), [(5,) * n for n in (1, 2, 3, 40)], [1.0, 0.0, 1.0, 0.0])
    batch = prepare_batch([g], config, torch.device("meta"))
    assert all(mb.completion_ids.is_meta for mb in batch.micro_batches)
    assert all((mb.packed is not None) == packing for mb in batch.micro_batches)
    assert all(mb.packed.attention_mask.is_meta for mb in batch.micro_batches if packing)
    assert batch.normalizer.total_tokens == 46
    # packed: the prompt once per micro-batch (lengths 1,2,3 | 40) and no padding
    assert batch.metrics["tokens/computed"] == (2 + 6 + 2 + 40 if packing else 2 + 3 * 3 + 2 + 40)


def test_truncated_completions_are_masked_when_asked():
    g = group((1, 2), POSITIVE + NEGATIVE, [1.0, 0.0, 1.0, 0.0], truncated=(True, False, False, False))
    config = update_config(8, loss={"mask_truncated": True})
    (mb,) = prepare_batch([g], config, torch.device("cpu")).micro_batches
    row = next(i for i in range(4) if mb.completion_ids[i, :4].tolist() == list(POSITIVE[0]))
    assert mb.loss_mask[row].sum() == 0 and mb.completion_mask[row].sum() == 4
    unmasked = prepare_batch([g], update_config(8, loss={"mask_truncated": False}), torch.device("cpu"))
    assert unmasked.micro_batches[0].loss_mask.sum() == mb.loss_mask.sum() + 4


def test_kl_term_uses_reference_and_beta_requires_one():
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 1.0, 0.0])
    config = update_config(2, loss=loss_settings(beta=0.1, num_iterations=2))
    with pytest.raises(ValueError, match="reference"):
        make_trainer(config)
    reference = tiny_qwen2(seed=0).eval().requires_grad_(False)
    trainer = make_trainer(config, lr=1e-2, reference=reference)
    metrics = trainer.update([g])
    # pass 1 has KL 0 (policy == reference), pass 2 a positive KL; the metric is their mean
    assert metrics["kl"] > 0
    assert trainer.scheduler.last_epoch == 2  # one scheduler step per optimizer step


def test_collate_right_pads_and_aligns_completions():
    from grpo_learner.grpo.batching import TrainSequence

    mb = collate([TrainSequence((1, 2), (3,), (-0.5,), 1.0), TrainSequence((4,), (5, 6), (-0.1, -0.2), -1.0)])
    assert mb.prompt_ids.tolist() == [[1, 2], [0, 4]]  # distinct prompts, left-padded
    assert mb.prompt_mask.tolist() == [[1, 1], [0, 1]] and mb.prompt_index.tolist() == [0, 1]
    assert mb.completion_ids.tolist() == [[3, 0], [5, 6]]
    assert mb.sampler_logprobs.flatten().tolist() == pytest.approx([-0.5, 0.0, -0.1, -0.2])


def test_bf16_autocast_on_cpu_trains_and_reports_its_mismatch_with_the_sampler():
    """train.autocast = bfloat16 on the CPU: the update runs in bf16 over fp32 weights, and the
    sampler/ metrics measure how far its logprobs are from the fp32 ones the sampler reported."""
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 1.0, 0.0, 0.0])
    fp32 = make_trainer(update_config(micro_batch_size=4))
    sampled = dataclasses.replace(
        g,
        completions=[
            dataclasses.replace(c, sampler_logprobs=tuple(_per_token(fp32.model, g, c.token_ids)))
            for c in g.completions
        ],
    )
    same = fp32.update([sampled])
    assert same["sampler/logprob_abs_diff"] < 1e-6 and same["sampler/kl"] < 1e-9  # fp32 vs fp32
    bf16 = make_trainer(update_config(4, train={"autocast": "bfloat16"}))
    before = {k: v.clone() for k, v in bf16.model.state_dict().items()}
    metrics = bf16.update([sampled])
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 master weights
    assert any(not torch.equal(before[k], v) for k, v in bf16.model.state_dict().items())
    assert 1e-4 < metrics["sampler/logprob_abs_diff"] < 0.1 and metrics["sampler/kl"] > 0


def _per_token(model, g, completion: tuple[int, ...]) -> list[float]:
    """The fp32 learner's logprob of each token of `completion` (what an fp32 sampler reports)."""
    ids = torch.tensor([[*g.prompt_token_ids, *completion]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(g.prompt_token_ids) - 1 : -1].float()
    return (
        torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1).tolist()
    )


def mixed_version_group(learner_version: int) -> ScoredGroup:
    """Completions that lived through weight updates (partial rollouts): versions per token run-length
    encoded, the sampler's logprob of each token from the version that sampled it."""
    sampled = [  # (token_ids, token_versions, sampler logprobs)
        ((5, 6, 7, 8), ((learner_version - 1, 2), (learner_version, 2)), (-1.5, -0.5, -2.0, -3.0)),
        ((9, 10, 11), ((learner_version, 3),), (-2.5, -1.0, -0.25)),
        ((20, 21, 22, 23, 24), ((learner_version - 1, 5),), (-4.0, -0.1, -1.0, -2.0, -0.5)),
        ((30, 31), ((learner_version - 1, 1), (learner_version, 1)), (-0.2, -5.0)),
    ]
    return ScoredGroup(
        prompt_id="p",
        prompt_token_ids=(1, 2, 3),
        completions=tuple(
            ScoredCompletion(ids, logprobs, reward, token_versions=runs)
            for (ids, runs, logprobs), reward in zip(sampled, [1.0, 0.0, 1.0, 0.0], strict=True)
        ),
        policy_version=learner_version - 1,  # the oldest token's
    )


@pytest.mark.parametrize(("tokens", "level"), [("all", "token"), ("stale", "token"), ("stale", "sequence")])
def test_each_tokens_sampler_weight_comes_from_the_version_that_sampled_it(tokens: str, level: str):
    """Against the learner's version V = 5, w_t = min(exp(old_t - sampler_t), cap) for every token
    (tokens = "all") or only for those an older version sampled (tokens = "stale"; the learner's own
    tokens weigh 1); a sequence-level weight multiplies the ratios of those tokens. Checked against a
    loop over each completion's expanded versions."""
    g = mixed_version_group(learner_version=5)
    correction = {"mode": "truncate", "level": level, "cap": 3.0, "tokens": tokens}
    config = update_config(8, loss={"sampler_correction": correction})
    trainer = make_trainer(config)
    (mb,) = prepare_batch([g], config, torch.device("cpu"), policy_version=5).micro_batches
    with torch.no_grad():
        old, _ = completion_logprobs(trainer.model, mb, config.train, config.rollout.sampling)
    weights = micro_batch_sampler_weights(old, mb, config.loss.sampler_correction)
    for row in range(len(g.completions)):
        ids = tuple(mb.completion_ids[row][mb.completion_mask[row]].tolist())
        completion = next(c for c in g.completions if c.token_ids == ids)
        log_rho = [
            (float(old[row, t]) - completion.sampler_logprobs[t]) if tokens == "all" or version != 5 else 0.0
            for t, version in enumerate(g.token_versions(completion))
        ]
        expected = [min(math.exp(sum(log_rho) if level == "sequence" else x), 3.0) for x in log_rho]
        assert weights[row, : len(ids)].tolist() == pytest.approx(expected, rel=1e-5), (tokens, level, ids)
        assert weights[row, len(ids) :].sum() == 0  # padding weighs nothing


def test_tokens_are_stale_against_the_learners_version_not_the_batchs_newest():
    """At max_staleness = 1 without partial rollouts every token of step n was sampled by version
    n - 1 while the learner is at n: all of them are one version behind. (Measured from the batch's
    newest token they all looked fresh: sampler/stale_tokens 0.)"""
    g = group((1, 2, 3), [*POSITIVE, *NEGATIVE], [1.0, 0.0, 1.0, 0.0], version=4)
    metrics = make_trainer(update_config(micro_batch_size=8)).update([g], policy_version=5)
    assert metrics["sampler/stale_tokens"] == 1.0
    assert metrics["sampler/token_lag"] == 1.0
    assert metrics["sampler/kl_stale"] == metrics["sampler/kl"] > 0  # all of the mismatch is staleness
    partial = make_trainer(update_config(micro_batch_size=8)).update(
        [mixed_version_group(5)], policy_version=5
    )
    assert partial["sampler/stale_tokens"] == pytest.approx(8 / 14)  # 2 + 0 + 5 + 1 of 4 + 3 + 5 + 2
    assert partial["sampler/token_lag"] == pytest.approx(8 / 14)
