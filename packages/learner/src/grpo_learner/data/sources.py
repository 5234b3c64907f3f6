"""Where training batches come from: the `GroupSource` protocol and the per-group admission filter.

The loop asks a source for step n's batch and gets a `StepBatch`: the groups to train on plus what
was dropped and why. The filter admits a group only if it is valid (see `rollout_data`), has the
requested size, is within the staleness window (its oldest token's version >= current - max_staleness),
under DAPO dynamic sampling carries signal (its rewards are not all equal), and, with
`reward.on_timeout = "drop_group"` (the default), has no completion whose scoring timed out: a
timeout is not a wrong answer, so the group is dropped (`groups/dropped_timeout`) and the feed
re-sends its prompt once (`rollouts/feed.py`). With `"zero"` such completions train as reward 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from grpo_learner.data.episodes import episode_metrics
from grpo_learner.data.rollout_data import GroupError, ScoredGroup, reward_components, validate_group
from grpo_learner.grpo.advantages import groups_with_signal

logger = logging.getLogger(__name__)


@dataclass
class StepBatch:
    groups: list[ScoredGroup]
    received: int = 0  # groups that arrived for this step (before filtering)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    zero_std: int = 0  # valid, in-window groups whose rewards were all equal
    considered: int = 0  # valid, in-window groups (the denominator of frac_reward_zero_std)
    refill_rounds: int = 0
    timeouts: int = 0  # completions received for this step whose scoring timed out (kept or dropped)

    def metrics(self) -> dict[str, float]:
        out = {f"groups/dropped_{reason}": float(n) for reason, n in sorted(self.dropped.items())}
        if self.considered:  # over everything generated, not only what survived dynamic sampling
            out["frac_reward_zero_std"] = self.zero_std / self.considered
        out["groups/received"] = float(self.received)
        out["groups/refill_rounds"] = float(self.refill_rounds)
        out["reward/timeouts"] = float(self.timeouts)
        out.update(component_means(self.groups))
        out.update(episode_metrics(c.episode for g in self.groups for c in g.completions))
        if self.groups:  # partial rollouts: how many completions lived through an update, how old
            out["completions/multi_version"] = float(
                sum(len(c.token_versions) > 1 for g in self.groups for c in g.completions)
            )
            out["groups/oldest_version"] = float(min(g.oldest_version for g in self.groups))
        return out


def component_means(groups: list[ScoredGroup]) -> dict[str, float]:
    """`rewards/<name>/mean` (TRL's name) of every reward component over the trained completions.

    A mean is over the completions that carry the component (a timed-out one may carry none).
    """
    values: dict[str, list[float]] = {}
    for group in groups:
        for completion in group.completions:
            for name, value in completion.components.items():
                values.setdefault(name, []).append(value)
    return {f"rewards/{name}/mean": sum(v) / len(v) for name, v in sorted(values.items())}


class GroupSource(Protocol):
    async def next_batch(self, step: int, policy_version: int) -> StepBatch: ...

    def weights_pushed(self, version: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class GroupFilter:
    group_size: int
    max_staleness: int
    reward_weights: Mapping[str, float]
    combine: str = "sum_then_normalize"
    dynamic_sampling: bool = False
    on_timeout: Literal["drop_group", "zero"] = "drop_group"
    # The [reward] components: each must come back on every completion (a reward service that does
    # not compute one, e.g. a v1.0 server and a plugin term, would otherwise go unnoticed).
    required_components: tuple[str, ...] = ()
    vocab_size: int | None = None  # the policy's embedding rows: no group may hold a token beyond

    def has_signal(self, group: ScoredGroup) -> bool:
        components = reward_components([group], self.reward_weights)
        return bool(groups_with_signal(components, self.reward_weights, self.combine)[0])

    def reject_reason(self, group: ScoredGroup, policy_version: int) -> str | None:
        """None to admit the group, else why it is dropped: invalid, timeout, stale or zero_std."""
        try:
            validate_group(group, [*self.reward_weights, *self.required_components], self.vocab_size)
            if len(group.completions) != self.group_size:
                raise GroupError(
                    f"group for prompt {group.prompt_id!r}: {len(group.completions)} completions, "
                    f"rollout.group_size is {self.group_size}"
                )
        except GroupError as exc:
            logger.warning("skipping a bad group: %s", exc)
            return "invalid"
        if self.on_timeout == "drop_group" and group.timeouts:
            return "timeout"
        if policy_version - group.oldest_version > self.max_staleness:
            return "stale"
        if self.dynamic_sampling and not self.has_signal(group):
            return "zero_std"
        return None
