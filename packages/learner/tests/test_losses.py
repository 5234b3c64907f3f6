"""Each registered loss against hand-computed numbers and a deliberately naive loop implementation."""

from __future__ import annotations

import math

import pytest
import torch
from grpo_learner.grpo.losses import (
    LOSSES,
    Normalizer,
    PolicyBatch,
    correction_scope,
    k3_kl,
    sampler_weights,
)
from learner_fixtures import loss_settings

# Two sequences: seq 0 has ratios [1.5, 1] and A=+1; seq 1 has one real token, ratio 0.5, A=-1.
LOGP = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], dtype=torch.float64)
LOG_RATIO = torch.tensor([[math.log(1.5), 0.0], [math.log(0.5), 0.0]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)


def hand_batch() -> PolicyBatch:
    return PolicyBatch(LOGP.clone(), LOGP - LOG_RATIO, ADV, MASK)


def one_batch_norm() -> Normalizer:
    return Normalizer(total_sequences=2, total_tokens=3, num_micro_batches=1, max_completion_length=4)


# Token terms -min(rA, clip(r)A): seq 0 -> [-1.2, -1.0]; seq 1 -> [0.8].
@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        ("grpo", ((-1.2 - 1.0) / 2 + 0.8) / 2),  # token mean per sequence, then sequence mean
        ("bnpo", (-1.2 - 1.0 + 0.8) / 3),  # token mean of the micro-batch
        ("dr_grpo", (-1.2 - 1.0 + 0.8) / (2 * 4)),  # token sum / (B * L_max)
        ("dapo", (-1.2 - 1.0 + 0.8) / 3),  # token mean over the batch
        ("gspo", (-1.2 + 0.8) / 2),  # s_0 = sqrt(1.5) = 1.2247 -> clipped to 1.2; s_1 = 0.5 -> 0.8
        ("cispo", (1.2 * 1.0 + 1.0 * 2.0 - 0.8 * 0.5) / 3),  # -sg(clip(r)) A logp, token mean
    ],
)
def test_losses_match_hand_computed_numbers(loss_type: str, expected: float):
    out = LOSSES[loss_type](hand_batch(), one_batch_norm(), loss_settings(0.2, 0.2))
    assert out.loss.item() == pytest.approx(expected, abs=1e-12)


def test_clip_ratio_counts_low_and_high_clipped_tokens():
    out = LOSSES["grpo"](hand_batch(), one_batch_norm(), loss_settings(0.2, 0.2))
    assert out.token_sums["clip_ratio/high_mean"] == 1  # seq 0 token 0: r=1.5 > 1.2 with A > 0
    assert out.token_sums["clip_ratio/low_mean"] == 1  # seq 1 token 0: r=0.5 < 0.8 with A < 0
    assert out.token_sums["clip_ratio/region_mean"] == 2


def test_clip_higher_uses_separate_upper_bound():
    out = LOSSES["grpo"](hand_batch(), one_batch_norm(), loss_settings(0.2, 0.28))
    # seq 0 token 0: min(1.5, 1.28) = 1.28
    assert out.loss.item() == pytest.approx(((-1.28 - 1.0) / 2 + 0.8) / 2, abs=1e-12)


def test_delta_caps_the_unclipped_ratio_for_negative_advantages():
    logp = torch.tensor([[-1.0]], dtype=torch.float64)
    batch = PolicyBatch(logp, logp - math.log(3.0), torch.tensor([-1.0], dtype=torch.float64), MASK[:1, :1])
    norm = Normalizer(1, 1, 1, 1)
    assert LOSSES["grpo"](batch, norm, loss_settings()).loss.item() == pytest.approx(3.0)
    assert LOSSES["grpo"](batch, norm, loss_settings(delta=1.4)).loss.item() == pytest.approx(1.4)


def test_k3_kl_matches_formula_and_is_added_with_beta():
    assert k3_kl(torch.tensor(-1.0), torch.tensor(-2.0)).item() == pytest.approx(math.exp(-1) + 1 - 1)
    batch = hand_batch()
    batch.ref_logprobs = LOGP - 1.0  # ref - logp = -1 everywhere: KL = e^-1 per token
    out = LOSSES["dapo"](batch, one_batch_norm(), loss_settings(beta=0.5))
    assert out.loss.item() == pytest.approx((-1.2 - 1.0 + 0.8) / 3 + 0.5 * math.exp(-1), abs=1e-12)
    assert out.token_sums["kl"] == pytest.approx(3 * math.exp(-1))


def test_ratio_is_exactly_one_and_nothing_clips_when_policy_unchanged():
    logp = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    batch = PolicyBatch(logp, logp.detach(), torch.tensor([1.0, -1.0, 0.5]), torch.ones(3, 5))
    out = LOSSES["grpo"](batch, Normalizer(3, 15, 1, 5), loss_settings())
    assert torch.equal(torch.exp(logp - logp.detach()), torch.ones(3, 5, dtype=torch.float64))
    assert out.token_sums["clip_ratio/region_mean"] == 0
    # With r = 1 the GRPO loss is -mean_i A_i (token mean of a constant).
    assert out.loss.item() == pytest.approx(-(1.0 - 1.0 + 0.5) / 3)


# --- a deliberately naive implementation, one scalar at a time --------------------------------


def naive_batch_loss(loss_type, logp, old, adv, mask, ref, settings, max_len):
    """The whole batch's loss from the papers' formulas, element by element (autograd-capable)."""
    el, eh, delta, beta = settings.epsilon_low, settings.epsilon_high, settings.delta, settings.beta
    n, t_max = logp.shape
    seqs = []  # per sequence: list of (logp, old, ref) for counted tokens
    for i in range(n):
        seqs.append([(logp[i, t], old[i, t], ref[i, t]) for t in range(t_max) if mask[i, t] > 0])

    def kl(lp, rf):
        return torch.exp(rf - lp) - (rf - lp) - 1

    def ppo(lp, od, a):
        r = torch.exp(lp - od)
        r_unclipped = torch.clamp(r, max=delta) if delta is not None else r
        return -torch.minimum(r_unclipped * a, torch.clamp(r, 1 - el, 1 + eh) * a)

    total_tokens = sum(len(s) for s in seqs)
    if loss_type == "gspo":
        loss = 0.0
        for i, s in enumerate(seqs):
            if not s:
                continue
            ratio = torch.exp(sum(lp - od for lp, od, _ in s) / len(s))
            r_unclipped = torch.clamp(ratio, max=delta) if delta is not None else ratio
            term = -torch.minimum(r_unclipped * adv[i], torch.clamp(ratio, 1 - el, 1 + eh) * adv[i])
            term = term + beta * sum(kl(lp, rf) for lp, _, rf in s) / len(s)
            loss = loss + term
        return loss / n
    token_terms = []
    for i, s in enumerate(seqs):
        terms = []
        for lp, od, rf in s:
            if loss_type == "cispo":
                w = torch.clamp(torch.exp(lp - od).detach(), 1 - el, 1 + eh)
                term = -w * adv[i] * lp
            else:
                term = ppo(lp, od, adv[i])
            terms.append(term + beta * kl(lp, rf))
        token_terms.append(terms)
    if loss_type == "grpo":
        return sum(sum(terms) / len(terms) for terms in token_terms if terms) / n
    if loss_type in ("dapo", "cispo"):
        return sum(sum(terms) for terms in token_terms) / total_tokens
    if loss_type == "dr_grpo":
        return sum(sum(terms) for terms in token_terms) / (n * max_len)
    raise AssertionError(loss_type)


def random_case(seed: int, episodes: bool = False):
    """Random logprobs and right-padded masks; with `episodes`, some rows also hold environment
    tokens (mask 0 between and after model turns) whose old/ref logprobs are garbage (+5: not even a
    logprob), which the naive loop skips like padding."""
    gen = torch.Generator().manual_seed(seed)
    n, t = 6, 7
    logp = (-torch.rand(n, t, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    old = logp.detach() + torch.randn(n, t, generator=gen, dtype=torch.float64) * 0.3
    ref = logp.detach() + torch.randn(n, t, generator=gen, dtype=torch.float64) * 0.3
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).double()
    if episodes:
        lengths = torch.full((n,), t)
        mask = torch.ones(n, t, dtype=torch.float64)
        for row, env in {0: [2, 3], 1: [1, 5, 6], 3: [4], 4: [1, 2, 3, 4, 5]}.items():
            mask[row, env] = 0.0
        old = torch.where(mask > 0, old, 5.0)
        ref = torch.where(mask > 0, ref, 5.0)
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    return logp, old, ref, mask, adv


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "gspo", "cispo"])
@pytest.mark.parametrize(
    "settings", [loss_settings(0.2, 0.28, None, 0.0), loss_settings(0.1, 0.3, 1.5, 0.04)]
)
@pytest.mark.parametrize("episodes", [False, True])
def test_micro_batched_losses_match_naive_loops_in_value_and_gradient(loss_type, settings, episodes):
    """Summing the micro-batch shares gives the batch loss of the formula, and its gradient; with
    multi-turn episodes the formula's |o_i| and token counts are the model's tokens only."""
    if loss_type == "cispo":
        settings = loss_settings(settings.epsilon_low, 4.0, settings.delta, settings.beta)
    logp, old, ref, mask, adv = random_case(3, episodes)
    norm = Normalizer(
        total_sequences=6, total_tokens=int(mask.sum()), num_micro_batches=3, max_completion_length=9
    )
    total = 0.0
    for rows in ([0, 1], [2, 3], [4, 5]):
        batch = PolicyBatch(logp[rows], old[rows], adv[rows], mask[rows], ref[rows])
        total = total + LOSSES[loss_type](batch, norm, settings).loss
    (grad,) = torch.autograd.grad(total, logp)
    naive = naive_batch_loss(loss_type, logp, old, adv, mask, ref, settings, max_len=9)
    (naive_grad,) = torch.autograd.grad(naive, logp)
    assert total.item() == pytest.approx(naive.item(), abs=1e-6)
    assert torch.allclose(grad, naive_grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("episodes", [False, True])
def test_bnpo_is_the_mean_of_micro_batch_token_means(episodes):
    logp, old, _ref, mask, adv = random_case(4, episodes)
    settings = loss_settings()
    norm = Normalizer(6, int(mask.sum()), 2, 7)
    total = 0.0
    naive_parts = []
    for rows in ([0, 1, 2], [3, 4, 5]):
        total = (
            total
            + LOSSES["bnpo"](PolicyBatch(logp[rows], old[rows], adv[rows], mask[rows]), norm, settings).loss
        )
        terms = []
        for i in rows:
            for t in range(mask.shape[1]):
                if mask[i, t]:
                    r = math.exp(logp[i, t].item() - old[i, t].item())
                    a = adv[i].item()
                    terms.append(-min(r * a, min(max(r, 0.8), 1.2) * a))
        naive_parts.append(sum(terms) / len(terms))
    assert total.item() == pytest.approx(sum(naive_parts) / 2, abs=1e-6)


def test_sampler_weights_truncate_and_mask_at_the_cap():
    old = torch.log(torch.tensor([[1.0, 1.0, 1.0]]))
    sampler = torch.log(torch.tensor([[0.25, 1.0, 4.0]]))  # w = 4, 1, 0.25
    mask = torch.ones(1, 3)
    trunc = sampler_weights(old, sampler, mask, "truncate", "token", cap=2.0)
    assert trunc[0].tolist() == pytest.approx([2.0, 1.0, 0.25])
    masked = sampler_weights(old, sampler, mask, "mask", "token", cap=2.0)
    assert masked.tolist() == [[0.0, 1.0, 0.0]]
    seq = sampler_weights(old, sampler, mask, "truncate", "sequence", cap=2.0)  # prod = 1
    assert seq[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    geo = sampler_weights(old, torch.log(torch.tensor([[0.5, 0.5, 1.0]])), mask, "truncate", "geometric", 9.0)
    assert geo[0].tolist() == pytest.approx([4 ** (1 / 3)] * 3)
    assert sampler_weights(old, sampler, mask, "none", "token", 2.0) is None


def test_sampler_weights_correct_only_the_tokens_another_version_sampled_when_asked():
    """Partial rollouts: tokens 0-1 of row 0 were sampled one version behind the learner (lag 1),
    tokens 2-3 by the learner's own version (lag 0); row 1 is all the learner's, with padding.
    rho = pi_old / pi_sampler per token = [2, 1, 1/2, 4] and [1/4, 8, -]."""
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.5, 0.5, 0.5]]))
    sampler = torch.log(torch.tensor([[0.25, 0.5, 1.0, 0.125], [1.0, 0.0625, 0.5, 1.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    lag = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    every = sampler_weights(old, sampler, mask, "truncate", "token", 3.0, correction_scope(lag, "all"))
    torch.testing.assert_close(every, torch.tensor([[2.0, 1.0, 0.5, 3.0], [0.25, 3.0, 0.0, 0.0]]))
    stale = correction_scope(lag, "stale")
    only_stale = sampler_weights(old, sampler, mask, "truncate", "token", 3.0, stale)
    torch.testing.assert_close(only_stale, torch.tensor([[2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]))
    # sequence level: log w_i = sum over the stale tokens only (row 0: log 2 + log 1), on every token
    sequence = sampler_weights(old, sampler, mask, "truncate", "sequence", 3.0, stale)
    torch.testing.assert_close(sequence, torch.tensor([[2.0] * 4, [1.0, 1.0, 0.0, 0.0]]))
    # against every token the sequence ratio is 2 * 1 * 1/2 * 4 = 4, capped at 3
    assert sampler_weights(old, sampler, mask, "truncate", "sequence", 3.0)[0].tolist() == [3.0] * 4
    masked = sampler_weights(old, sampler, mask, "mask", "token", 1.5, stale)
    assert masked.tolist() == [[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="tokens: unknown scope 'newest'; use all or stale"):
        correction_scope(lag, "newest")


def test_sampler_weights_multiply_the_policy_term():
    batch = hand_batch()
    batch.sampler_weights = torch.tensor([[0.5, 2.0], [1.0, 1.0]], dtype=torch.float64)
    out = LOSSES["dapo"](batch, one_batch_norm(), loss_settings())
    assert out.loss.item() == pytest.approx((-1.2 * 0.5 - 1.0 * 2.0 + 0.8) / 3, abs=1e-12)


# --- fully masked sequences (e.g. loss.mask_truncated) -----------------------------------------

MICRO_BATCHES = ([0, 1], [2, 3], [4, 5])
MASKED_ROWS = [1, 4]  # in different micro-batches; row 1 shares its micro-batch with a counted row
# The naive formulas of every built-in loss; a loss registered later must add its own here.
NAIVE_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "gspo", "cispo")


def naive_loss_with_micro_batches(loss_type, logp, old, adv, mask, ref, settings, max_len):
    """BNPO's formula depends on the micro-batches: the mean of their token means (an empty one: 0)."""
    if loss_type != "bnpo":
        return naive_batch_loss(loss_type, logp, old, adv, mask, ref, settings, max_len)
    parts = []
    for rows in MICRO_BATCHES:
        terms = [
            -torch.minimum(
                torch.exp(logp[i, t] - old[i, t]) * adv[i],
                torch.clamp(
                    torch.exp(logp[i, t] - old[i, t]), 1 - settings.epsilon_low, 1 + settings.epsilon_high
                )
                * adv[i],
            )
            for i in rows
            for t in range(mask.shape[1])
            if mask[i, t] > 0
        ]
        parts.append(sum(terms) / len(terms) if terms else 0.0)
    return sum(parts) / len(MICRO_BATCHES)


def masked_case(seed: int):
    logp, old, ref, mask, adv = random_case(seed)
    mask = mask.clone()
    mask[MASKED_ROWS] = 0.0
    return logp, old, ref, mask, adv


def micro_batched_loss(loss_type, logp, old, adv, mask, ref, settings, sampler=None):
    norm = Normalizer(
        total_sequences=6,
        total_tokens=max(1, int(mask.sum())),
        num_micro_batches=len(MICRO_BATCHES),
        max_completion_length=9,
    )
    total = 0.0
    for rows in MICRO_BATCHES:
        weights = sampler[rows] if sampler is not None else None
        batch = PolicyBatch(logp[rows], old[rows], adv[rows], mask[rows], ref[rows], weights)
        total = total + LOSSES[loss_type](batch, norm, settings).loss
    return total


def test_every_registered_loss_has_a_naive_reference_implementation():
    assert set(LOSSES) <= set(NAIVE_LOSSES), "add the new loss's formula to naive_batch_loss"


@pytest.mark.parametrize("loss_type", NAIVE_LOSSES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_fully_masked_rows_match_the_naive_loop_that_skips_them(loss_type, beta):
    settings = loss_settings(
        0.2, 4.0 if loss_type == "cispo" else 0.28, None, beta if loss_type != "bnpo" else 0
    )
    logp, old, ref, mask, adv = masked_case(5)
    total = micro_batched_loss(loss_type, logp, old, adv, mask, ref, settings)
    (grad,) = torch.autograd.grad(total, logp)
    naive = naive_loss_with_micro_batches(loss_type, logp, old, adv, mask, ref, settings, max_len=9)
    (naive_grad,) = torch.autograd.grad(naive, logp)
    assert total.item() == pytest.approx(naive.item(), abs=1e-9)
    assert torch.allclose(grad, naive_grad, atol=1e-9, rtol=0)
    assert torch.count_nonzero(grad[MASKED_ROWS]) == 0


@pytest.mark.parametrize("loss_type", sorted(LOSSES))
def test_fully_masked_rows_add_exactly_nothing_whatever_they_hold(loss_type):
    """For every registered loss (plugins included): rewriting a fully masked row's logprobs,
    old/ref logprobs, advantage and sampler weights changes neither the value nor any gradient."""
    settings = loss_settings(0.2, 0.28, 1.5, 0.04)
    logp, old, ref, mask, adv = masked_case(6)
    sampler = torch.rand(mask.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.5
    sampler = sampler * mask
    total = micro_batched_loss(loss_type, logp, old, adv, mask, ref, settings, sampler)
    (grad,) = torch.autograd.grad(total, logp)

    gen = torch.Generator().manual_seed(2)
    other_logp = logp.detach().clone()
    other_old, other_ref, other_adv = old.clone(), ref.clone(), adv.clone()
    for tensor, scale in ((other_logp, 2.0), (other_old, 2.0), (other_ref, 2.0)):
        tensor[MASKED_ROWS] = (
            -torch.rand(len(MASKED_ROWS), mask.shape[1], generator=gen, dtype=torch.float64) * scale
        )
    other_adv[MASKED_ROWS] = torch.tensor([7.0, -5.0], dtype=torch.float64)
    other_logp.requires_grad_(True)
    for weights in (sampler, None):  # with and without a sampler correction
        base = (
            total
            if weights is sampler
            else micro_batched_loss(loss_type, logp, old, adv, mask, ref, settings)
        )
        other = micro_batched_loss(
            loss_type, other_logp, other_old, other_adv, mask, other_ref, settings, weights
        )
        assert other.item() == base.item()
    (other_grad,) = torch.autograd.grad(
        micro_batched_loss(loss_type, other_logp, other_old, other_adv, mask, other_ref, settings, sampler),
        other_logp,
    )
    assert torch.equal(other_grad, grad)
    assert torch.count_nonzero(grad[MASKED_ROWS]) == 0


def test_sampler_mismatch_sums_are_the_abs_difference_and_k3_over_counted_tokens():
    from grpo_learner.grpo.losses import sampler_mismatch_sums

    old = torch.tensor([[-1.0, -2.0, -0.5]])
    sampler = torch.tensor([[-1.5, -2.0, -3.0]])
    fresh = torch.zeros((1, 3))
    sums = sampler_mismatch_sums(old, sampler, torch.tensor([[1.0, 1.0, 0.0]]), fresh)  # the last: padding
    assert sums["sampler/logprob_abs_diff"] == pytest.approx(0.5)
    assert sums["sampler/kl"] == pytest.approx(math.exp(0.5) - 1 - 0.5)  # r - 1 - log r, r = e^0.5
    assert sums["sampler/stale_tokens"] == sums["sampler/kl_stale"] == sums["sampler/token_lag"] == 0


def test_sampler_mismatch_splits_off_the_tokens_an_older_version_sampled():
    """Partial rollouts: token 0 was sampled one version back (lag 1), token 1 by the newest; the
    padding token's lag never counts."""
    from grpo_learner.grpo.losses import sampler_mismatch_sums

    old = torch.tensor([[-1.0, -2.0, -0.5]])
    sampler = torch.tensor([[-1.5, -2.25, -3.0]])
    sums = sampler_mismatch_sums(
        old, sampler, torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 2.0]])
    )
    assert sums["sampler/token_lag"] == 1
    assert sums["sampler/stale_tokens"] == 1
    assert sums["sampler/kl_stale"] == pytest.approx(math.exp(0.5) - 1 - 0.5)
    assert sums["sampler/kl"] == pytest.approx(math.exp(0.5) - 1.5 + math.exp(0.25) - 1.25)
