"""Policy losses: a registry keyed by `loss.loss_type`, one small function per published objective.

Notation (per micro-batch, tensors `[N, T]` over completion tokens, right-padded):
  logp = log pi_theta(o_t | q, o_<t)     old = log pi_old (detached)      ref = log pi_ref
  r_t = exp(logp - old)                  A_i = advantage of sequence i    m_t = 1 on tokens that count
  clip(r) = clamp(r, 1 - eps_low, 1 + eps_high)          KL_t = exp(ref - logp) - (ref - logp) - 1 (k3)
  PPO token term: l_t = -min(r~_t A_i, clip(r_t) A_i) + beta KL_t, with r~ = min(r, delta) when delta
  is set (two-sided clip: a negative-advantage token's ratio cannot grow the loss without bound).

Losses differ in how token terms are averaged. The whole generation batch is split into micro-batches
for gradient accumulation (and ranks); a loss returns *this micro-batch's share* of the batch loss,
so summing the backward of every micro-batch gives the gradient of the batch objective. The global
counts it needs (sequences, tokens, micro-batches) come in a `Normalizer`.

Adding a loss is one function plus `@register_loss("name")` (or a plugin: an entry point in group
`grpo.losses`, or `module:function` as the name; see grpo_common.registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from grpo_common.registry import Registry
from torch import Tensor

from grpo_learner.config import LossConfig  # `[loss]` itself: the constants a loss reads


@dataclass(frozen=True)
class Normalizer:
    """Counts over the whole generation batch (all micro-batches, all ranks)."""

    total_sequences: int
    total_tokens: int
    num_micro_batches: int
    max_completion_length: int
    # Data-parallel gradients are averaged over ranks; global means multiply it back.
    world_size: int = 1


@dataclass
class PolicyBatch:
    """What a loss reads. Off the mask (padding, environment tokens of an episode, masked sequences)
    the given old/ref logprobs and sampler weights are replaced at construction by neutral values:
    old = ref = logp (ratio 1, KL 0) and weight 0. So whatever those positions held (an environment
    token's wire logprob is 0, not a sampler logprob) can reach a loss neither through a ratio nor
    through an overflow (inf * 0 = NaN); only the mask itself decides what counts."""

    logprobs: Tensor  # [N, T] with grad
    old_logprobs: Tensor  # [N, T] detached
    advantages: Tensor  # [N]
    mask: Tensor  # [N, T] float, 1 on completion tokens that count
    ref_logprobs: Tensor | None = None  # [N, T] detached, when beta > 0
    sampler_weights: Tensor | None = None  # [N, T] detached importance weights vs the sampler

    def __post_init__(self) -> None:
        counted = self.mask > 0
        neutral = self.logprobs.detach()
        self.old_logprobs = torch.where(counted, self.old_logprobs, neutral)
        if self.ref_logprobs is not None:
            self.ref_logprobs = torch.where(counted, self.ref_logprobs, neutral)
        if self.sampler_weights is not None:
            self.sampler_weights = torch.where(counted, self.sampler_weights, 0.0)


@dataclass
class LossOutput:
    loss: Tensor  # this micro-batch's share of the batch loss
    # Sums over counted tokens (divide by the batch's token count for the mean).
    token_sums: dict[str, float] = field(default_factory=dict)


LossFn = Callable[[PolicyBatch, Normalizer, LossConfig], LossOutput]
LOSSES: Registry[LossFn] = Registry("loss", "grpo.losses")
register_loss = LOSSES.register


# --- per-token pieces -------------------------------------------------------------------------


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi_theta || pi_ref): exp(ref - logp) - (ref - logp) - 1 >= 0."""
    diff = ref_logprobs - logprobs
    return torch.exp(diff) - diff - 1


def clipped_surrogate(ratio: Tensor, advantages: Tensor, settings: LossConfig) -> Tensor:
    """-min(r~ A, clip(r, 1 - eps_low, 1 + eps_high) A), r~ = min(r, delta) if delta else r. A: [N, 1]."""
    clipped = torch.clamp(ratio, 1 - settings.epsilon_low, 1 + settings.epsilon_high)
    unclipped = torch.clamp(ratio, max=settings.delta) if settings.delta is not None else ratio
    return -torch.minimum(unclipped * advantages, clipped * advantages)


def clip_fractions(ratio: Tensor, advantages: Tensor, mask: Tensor, settings: LossConfig) -> dict[str, float]:
    """Token counts where the clip is active (TRL's clip_ratio/*): low = r < 1-eps_low with A < 0,
    high = r > 1+eps_high with A > 0; region = either."""
    low = (ratio < 1 - settings.epsilon_low) & (advantages < 0)
    high = (ratio > 1 + settings.epsilon_high) & (advantages > 0)
    return {
        "clip_ratio/low_mean": float((low * mask).sum()),
        "clip_ratio/high_mean": float((high * mask).sum()),
        "clip_ratio/region_mean": float(((low | high) * mask).sum()),
    }


def ppo_token_terms(batch: PolicyBatch, settings: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """l_t = w_t * (-min(r~ A, clip(r) A)) + beta KL_t, and the clip/KL token sums.

    w_t is the sampler importance weight (1 when no correction is configured).
    """
    ratio = torch.exp(batch.logprobs - batch.old_logprobs)
    advantages = batch.advantages.unsqueeze(1)
    terms = clipped_surrogate(ratio, advantages, settings)
    if batch.sampler_weights is not None:
        terms = terms * batch.sampler_weights
    sums = clip_fractions(ratio.detach(), advantages, batch.mask, settings)
    return _add_kl(terms, batch, settings, sums), sums


def _add_kl(terms: Tensor, batch: PolicyBatch, settings: LossConfig, sums: dict[str, float]) -> Tensor:
    if settings.beta == 0 or batch.ref_logprobs is None:
        return terms
    kl = k3_kl(batch.logprobs, batch.ref_logprobs)
    sums["kl"] = float((kl.detach() * batch.mask).sum())
    return terms + settings.beta * kl


def sequence_token_means(values: Tensor, mask: Tensor) -> Tensor:
    """[N]: sum_t m_t x_t / max(1, sum_t m_t) (a fully masked sequence contributes 0)."""
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def counted_sequences(mask: Tensor) -> Tensor:
    """[N]: 1 for a sequence with at least one counted token, 0 for a fully masked one.

    Sequence-level terms must be multiplied by it: a fully masked sequence has a mean log-ratio of
    0, so its ratio is 1 and its surrogate would be -A_i, not the 0 it must contribute."""
    return (mask.sum(dim=1) > 0).to(mask.dtype)


# --- the registered objectives -----------------------------------------------------------------


@register_loss("grpo")
def grpo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """GRPO (Shao et al. 2024): L = 1/B sum_i 1/|o_i| sum_t l_t. Token mean per sequence, then mean
    over the B sequences of the batch."""
    terms, sums = ppo_token_terms(batch, settings)
    loss = sequence_token_means(terms, batch.mask).sum() * norm.world_size / norm.total_sequences
    return LossOutput(loss, sums)


@register_loss("bnpo")
def bnpo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """BNPO: L_mb = sum_{i,t in mb} m l_t / sum_{i,t in mb} m, the token mean of each micro-batch;
    the batch loss is the mean of the micro-batch losses."""
    terms, sums = ppo_token_terms(batch, settings)
    loss = (terms * batch.mask).sum() / batch.mask.sum().clamp(min=1) / norm.num_micro_batches
    return LossOutput(loss, sums)


@register_loss("dr_grpo")
def dr_grpo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """Dr. GRPO (Liu et al. 2025): L = sum_{i,t} m l_t / (B * L_max), L_max = max_new_tokens: a
    constant normaliser, so long and short answers weigh the same per token (no length bias)."""
    terms, sums = ppo_token_terms(batch, settings)
    denominator = norm.total_sequences * norm.max_completion_length
    loss = (terms * batch.mask).sum() * norm.world_size / denominator
    return LossOutput(loss, sums)


@register_loss("dapo")
def dapo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """DAPO (Yu et al. 2025): L = sum_{i,t} m l_t / sum_{i,t} m, the token mean over the whole
    generation batch (every micro-batch and rank), so every token weighs the same."""
    terms, sums = ppo_token_terms(batch, settings)
    loss = (terms * batch.mask).sum() * norm.world_size / norm.total_tokens
    return LossOutput(loss, sums)


@register_loss("gspo")
def gspo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """GSPO (Zheng et al. 2025): sequence ratio s_i = exp(1/|o_i| sum_t (logp - old)),
    L = 1/B sum_{i: |o_i| > 0} [-min(s~_i A_i, clip(s_i) A_i) + beta 1/|o_i| sum_t KL_t]."""
    mean_log_ratio = sequence_token_means(batch.logprobs - batch.old_logprobs, batch.mask)
    seq_weight = None
    if batch.sampler_weights is not None:  # constant per sequence for sequence levels; mean for token
        seq_weight = sequence_token_means(batch.sampler_weights, batch.mask)
    ratio = torch.exp(mean_log_ratio)
    per_sequence = clipped_surrogate(ratio, batch.advantages, settings)
    if seq_weight is not None:
        per_sequence = per_sequence * seq_weight
    token_ratio = ratio.detach().unsqueeze(1).expand_as(batch.mask)
    sums = clip_fractions(token_ratio, batch.advantages.unsqueeze(1), batch.mask, settings)
    if settings.beta != 0 and batch.ref_logprobs is not None:
        kl = k3_kl(batch.logprobs, batch.ref_logprobs)
        sums["kl"] = float((kl.detach() * batch.mask).sum())
        per_sequence = per_sequence + settings.beta * sequence_token_means(kl, batch.mask)
    loss = (per_sequence * counted_sequences(batch.mask)).sum() * norm.world_size / norm.total_sequences
    return LossOutput(loss, sums)


@register_loss("cispo")
def cispo_loss(batch: PolicyBatch, norm: Normalizer, settings: LossConfig) -> LossOutput:
    """CISPO (MiniMax-M1, 2025): clip the importance weight, not the update, so every token keeps a
    gradient: l_t = -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_i logp_t + beta KL_t;
    L = sum_{i,t} m l_t / sum_{i,t} m (token mean over the batch). Use a large eps_high (MiniMax: ~4)."""
    ratio = torch.exp(batch.logprobs - batch.old_logprobs).detach()
    weight = torch.clamp(ratio, 1 - settings.epsilon_low, 1 + settings.epsilon_high)
    if batch.sampler_weights is not None:
        weight = weight * batch.sampler_weights
    terms = -weight * batch.advantages.unsqueeze(1) * batch.logprobs
    low = ratio < 1 - settings.epsilon_low
    high = ratio > 1 + settings.epsilon_high
    sums = {
        "clip_ratio/low_mean": float((low * batch.mask).sum()),
        "clip_ratio/high_mean": float((high * batch.mask).sum()),
        "clip_ratio/region_mean": float(((low | high) * batch.mask).sum()),
    }
    terms = _add_kl(terms, batch, settings, sums)
    loss = (terms * batch.mask).sum() * norm.world_size / norm.total_tokens
    return LossOutput(loss, sums)


# --- sampler mismatch --------------------------------------------------------------------------

SamplerLogRatio = Callable[[Tensor, Tensor], Tensor]
SAMPLER_WEIGHT_LEVELS: Registry[SamplerLogRatio] = Registry("sampler weight level")
register_sampler_level = SAMPLER_WEIGHT_LEVELS.register


@register_sampler_level("token")
def token_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """log w_t = old_t - sampler_t: each token weighed by its own ratio (TIS, Yao et al. 2025)."""
    return log_ratio * mask


@register_sampler_level("sequence")
def sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """log w_i = sum_t (old_t - sampler_t): the sequence's importance ratio, on every token of it."""
    return (log_ratio * mask).sum(dim=1, keepdim=True).expand_as(mask) * mask


@register_sampler_level("geometric")
def geometric_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """log w_i = 1/|o_i| sum_t (old_t - sampler_t): the per-token geometric mean of the sequence ratio."""
    return sequence_token_means(log_ratio, mask).unsqueeze(1).expand_as(mask) * mask


def sampler_weights(
    old_logprobs: Tensor,
    sampler_logprobs: Tensor,
    mask: Tensor,
    mode: str,
    level: str,
    cap: float,
    stale: Tensor | None = None,
) -> Tensor | None:
    """Importance weights w = pi_old / pi_sampler correcting for the sampler (stale or numerically
    different weights), per token from the version that sampled it. With V the learner's version
    (the weights `old_logprobs` come from) and v_t the version that sampled token t (partial
    rollouts mix versions within one completion; each token's sampler logprob is its own version's):

        log rho_t = old_t - sampler_t = log pi_V(o_t) - log pi_{v_t}(o_t)         (tokens = "all")
        log rho_t = [v_t != V] (old_t - sampler_t)                               (tokens = "stale")

    `stale` is the [N, T] mask [v_t != V] (`correction_scope`); None corrects every token. Under
    "stale" a token of the learner's own version is on-policy (AReaL's decoupled PPO: behaviour and
    proximal policy are the same weights there, their difference is numerics only), while a token
    an older version sampled is weighed by its own version's ratio. The level then aggregates log rho
    (token: log w_t = log rho_t; sequence: sum_t; geometric: mean over t of the sequence), and
    truncate: min(w, cap) (TIS); mask: 1 if 1/cap <= w <= cap else 0.
    0 off the mask (padding, environment tokens: their wire logprob 0 never enters a ratio, not even a
    sequence one); None when the correction is off."""
    if mode == "none":
        return None
    corrected = mask > 0 if stale is None else (mask > 0) & stale
    log_ratio = torch.where(corrected, old_logprobs - sampler_logprobs, 0.0)
    log_w = SAMPLER_WEIGHT_LEVELS[level](log_ratio, mask).detach()
    weight = torch.exp(log_w)
    if mode == "truncate":
        return torch.clamp(weight, max=cap) * mask
    if mode == "mask":
        return ((weight <= cap) & (weight >= 1 / cap)).to(weight.dtype) * mask
    raise ValueError(f"loss.sampler_correction.mode: unknown mode {mode!r}; use none, truncate or mask")


def correction_scope(token_lag: Tensor, tokens: str) -> Tensor | None:
    """The tokens the sampler correction weighs (`loss.sampler_correction.tokens`): None for "all";
    for "stale" [lag_t != 0], the tokens a version other than the learner's sampled."""
    if tokens == "all":
        return None
    if tokens == "stale":
        return token_lag != 0
    raise ValueError(f"loss.sampler_correction.tokens: unknown scope {tokens!r}; use all or stale")


def sampler_mismatch_sums(
    old_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor, token_lag: Tensor
) -> dict[str, float]:
    """Token sums of how far the learner's logprobs of the sampled tokens are from the sampler's
    (divided by the token count they become the `sampler/` metrics): bf16 or another kernel on
    either side, or stale weights, show here before they show in the loss.

        sampler/logprob_abs_diff   |old_t - sampler_t|
        sampler/kl                 k3 of KL(sampler || learner): r - 1 - log r, r = exp(old_t - sampler_t)
        sampler/token_lag          lag_t = V - v_t: versions token t's sampler is behind the learner's
        sampler/stale_tokens       [lag_t != 0]: the share of tokens another (older) version sampled
        sampler/kl_stale           k3 over those tokens only: the share of sampler/kl that staleness
                                   explains (the rest is numerics: kernels, dtypes)

    `token_lag` comes from each token's recorded version (partial rollouts, v1.4, mix versions within
    one completion) against V, the version of the learner's weights that give `old_logprobs`
    (`prepare_batch`). Only tokens in `mask` count (padding and environment tokens carry no sampler
    logprob).
    """
    counted = mask > 0
    diff = torch.where(counted, old_logprobs.detach().float() - sampler_logprobs.float(), 0.0)
    k3 = (torch.expm1(diff) - diff) * counted  # r - 1 - log r, 0 where diff is 0
    stale = counted & (token_lag != 0)
    return {
        "sampler/logprob_abs_diff": float(diff.abs().sum()),
        "sampler/kl": float(k3.sum()),
        "sampler/token_lag": float((token_lag * counted).sum()),
        "sampler/stale_tokens": float(stale.sum()),
        "sampler/kl_stale": float((k3 * stale).sum()),
    }
