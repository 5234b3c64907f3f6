"""Advantages from group rewards: a registry of estimators keyed by name (`loss.advantage.scaling`).

Rewards arrive as a `[num_groups, group_size]` tensor per reward component. An estimator maps one
such tensor to advantages of the same shape; a combine mode decides whether components are summed
before or after the estimator. Every estimator centres on the group mean, and a group whose rewards
are all equal gets advantage exactly 0 (not a rounding residue divided by eps).

Adding an estimator is one function plus `@register_advantage("name")` (or a plugin: an entry point in group
`grpo.advantages`, or `module:function` as the name; see grpo_common.registry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from grpo_common.registry import Registry
from torch import Tensor

AdvantageEstimator = Callable[[Tensor, float], Tensor]
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator", "grpo.advantages")
register_advantage = ADVANTAGE_ESTIMATORS.register


def group_centered(rewards: Tensor) -> Tensor:
    """r_ij - mean_j(r_ij), exactly 0 for a group whose rewards are all equal."""
    constant = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(centered), centered)


@register_advantage("group")
def group_scaled(rewards: Tensor, eps: float) -> Tensor:
    """GRPO (Shao et al. 2024): A_ij = (r_ij - mean_j r_ij) / (std_j r_ij + eps).

    std is the unbiased (n-1) standard deviation within group i, as in TRL and verl.
    """
    return group_centered(rewards) / (rewards.std(dim=1, keepdim=True) + eps)


@register_advantage("batch")
def batch_scaled(rewards: Tensor, eps: float) -> Tensor:
    """A_ij = (r_ij - mean_j r_ij) / (std_{all i,j} r + eps): group mean, std over the whole batch.

    Robust to groups of tiny variance (Hu et al., REINFORCE++); std is unbiased over all B*G rewards.
    """
    return group_centered(rewards) / (rewards.std() + eps)


@register_advantage("none")
def unscaled(rewards: Tensor, eps: float) -> Tensor:
    """Dr. GRPO (Liu et al. 2025): A_ij = r_ij - mean_j r_ij, no std division (no difficulty bias)."""
    del eps
    return group_centered(rewards)


Components = Mapping[str, Tensor]
CombineMode = Callable[[Components, Mapping[str, float], AdvantageEstimator, float], Tensor]
COMBINE_MODES: Registry[CombineMode] = Registry("combine mode")
register_combine = COMBINE_MODES.register


def weighted_reward(components: Components, weights: Mapping[str, float]) -> Tensor:
    """r = sum_k w_k r_k (the scalar reward a run reports)."""
    return sum(weights[name] * components[name] for name in weights)  # type: ignore[return-value]


@register_combine("sum_then_normalize")
def sum_then_normalize(
    components: Components, weights: Mapping[str, float], estimator: AdvantageEstimator, eps: float
) -> Tensor:
    """A = estimator(sum_k w_k r_k): one reward per completion, then normalised."""
    return estimator(weighted_reward(components, weights), eps)


@register_combine("normalize_then_sum")
def normalize_then_sum(
    components: Components, weights: Mapping[str, float], estimator: AdvantageEstimator, eps: float
) -> Tensor:
    """A = sum_k w_k estimator(r_k): each component normalised alone, so none drowns another (GDPO)."""
    return sum(w * estimator(components[name], eps) for name, w in weights.items())  # type: ignore[return-value]


def compute_advantages(
    components: Components,
    weights: Mapping[str, float],
    scaling: str = "group",
    combine: str = "sum_then_normalize",
    eps: float = 1e-4,
) -> Tensor:
    """Advantages [num_groups, group_size] from reward components, by the registered names."""
    return COMBINE_MODES[combine](components, weights, ADVANTAGE_ESTIMATORS[scaling], eps)


def groups_with_signal(components: Components, weights: Mapping[str, float], combine: str) -> Tensor:
    """[num_groups] bool: False for a group whose advantages are all zero whatever the scaling.

    sum_then_normalize: the weighted sum is constant in the group. normalize_then_sum: every
    weighted component is constant. Such groups carry no gradient (DAPO dynamic sampling drops them).
    """

    def varies(rewards: Tensor) -> Tensor:
        return ~(rewards == rewards[:, :1]).all(dim=1)

    if combine == "normalize_then_sum":
        per_component = [varies(components[name]) for name, w in weights.items() if w != 0]
        return torch.stack(per_component).any(dim=0)
    return varies(weighted_reward(components, weights))
