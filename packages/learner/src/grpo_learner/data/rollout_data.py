"""A scored group inside the learner, converted from `grpo.v1.RolloutGroup` in exactly one place.

Conversion validates everything the math relies on, so a malformed group never reaches a loss:
fewer than 2 completions, a completion whose token and logprob counts differ, an empty prompt or
completion, NaN/inf rewards or logprobs, a reward component the config weighs but the group lacks, a
loss mask (v1.2) whose length is not the completion's or that marks no token as the model's.
The loop logs a `GroupError`, skips the group and counts it (`groups/dropped_invalid`).

Multi-turn episodes (v1.2): `loss_mask[i]` says token i was sampled by the model (trained on) or
inserted by the environment (context only: weight 0 in every loss, token count, entropy, KL and
sampler correction; its wire logprob, 0, is never read). An empty mask (v1.0/v1.1 senders) means
every token is the model's.

Partial rollouts (v1.4): `token_versions` records the policy version of every token, run-length
encoded; the group is as stale as its oldest token (`oldest_version`).

A completion whose scoring timed out (`reward_timed_out`) carries no verdict: its reward and every
component read as 0, and by default its whole group is dropped (`reward.on_timeout`, see sources.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from grpo.v1 import rollout_pb2
from grpo_common.token_versions import TokenVersionsError, VersionRuns, check_runs, expand_runs, oldest

from grpo_learner.data.episodes import EpisodeStats

# The name under which the completion's scalar reward is available as a component.
SCALAR_REWARD = "reward"


class GroupError(ValueError):
    """A group that must not be trained on; the message says which field is wrong."""


@dataclass(frozen=True)
class ScoredCompletion:
    token_ids: tuple[int, ...]
    sampler_logprobs: tuple[float, ...]  # the sampler's logprob of each token
    reward: float
    components: Mapping[str, float] = field(default_factory=dict)
    truncated: bool = False  # hit max_new_tokens
    correct: bool = False
    timed_out: bool = False  # the reward service ran past its limit: the reward 0 is no verdict
    loss_mask: tuple[bool, ...] = ()  # True: the model's token; empty: every token is the model's
    episode: EpisodeStats | None = None  # set when the completion is a multi-turn episode
    # Partial rollouts (v1.4): (policy_version, tokens) runs covering token_ids; empty: every token is
    # the group's policy_version.
    token_versions: VersionRuns = ()

    @property
    def model_mask(self) -> tuple[bool, ...]:
        """One flag per token, True where the model sampled it (the tokens that are trained on)."""
        return self.loss_mask or (True,) * len(self.token_ids)

    @property
    def model_tokens(self) -> int:
        return sum(self.model_mask)

    def component(self, name: str) -> float:
        if name == SCALAR_REWARD:
            return self.reward
        return self.components.get(name, 0.0) if self.timed_out else self.components[name]


@dataclass(frozen=True)
class ScoredGroup:
    prompt_id: str
    prompt_token_ids: tuple[int, ...]
    completions: tuple[ScoredCompletion, ...]
    policy_version: int
    # Wall seconds of the rollout batch that produced the group (repeated on each group of the batch).
    generate_seconds: float = 0.0
    score_seconds: float = 0.0

    @property
    def rewards(self) -> list[float]:
        return [c.reward for c in self.completions]

    @property
    def oldest_version(self) -> int:
        """The version of the group's oldest token: the staleness bound applies to it (v1.4 partial
        rollouts record every token's version; before, every token is policy_version's)."""
        recorded = [oldest(c.token_versions) for c in self.completions if c.token_versions]
        return min([self.policy_version, *recorded])

    def token_versions(self, completion: ScoredCompletion) -> tuple[int, ...]:
        """One version per token of `completion` (one of this group's)."""
        if completion.token_versions:
            return expand_runs(completion.token_versions)
        return (self.policy_version,) * len(completion.token_ids)

    @property
    def timeouts(self) -> int:
        """Completions whose scoring ran past the reward service's time limit."""
        return sum(c.timed_out for c in self.completions)


def group_from_proto(message: rollout_pb2.RolloutGroup) -> ScoredGroup:
    """The one conversion from the wire type; raises GroupError for anything the learner cannot use."""
    completions = tuple(
        ScoredCompletion(
            token_ids=tuple(c.token_ids),
            sampler_logprobs=tuple(c.logprobs),
            reward=c.reward,
            components=dict(c.reward_components),
            truncated=c.finish_reason == rollout_pb2.FINISH_REASON_LENGTH,
            correct=c.correct,
            timed_out=c.reward_timed_out,
            loss_mask=tuple(c.loss_mask),
            episode=EpisodeStats.from_proto(c.episode) if c.HasField("episode") else None,
            token_versions=tuple((span.policy_version, span.tokens) for span in c.token_versions),
        )
        for c in message.completions
    )
    group = ScoredGroup(
        prompt_id=message.prompt_id,
        prompt_token_ids=tuple(message.prompt_token_ids),
        completions=completions,
        policy_version=message.policy_version,
        generate_seconds=message.generate_seconds,
        score_seconds=message.score_seconds,
    )
    validate_group(group)
    return group


def validate_group(
    group: ScoredGroup, component_names: Iterable[str] = (), vocab_size: int | None = None
) -> None:
    """Raise GroupError naming the first problem; `component_names` are the rewards the config weighs,
    `vocab_size` the policy's embedding rows (a token at or above it would crash the update: a rollout
    service serving another model's tokenizer)."""
    where = f"group for prompt {group.prompt_id!r}"
    if len(group.completions) < 2:
        raise GroupError(f"{where}: {len(group.completions)} completion(s); a group needs at least 2")
    if not group.prompt_token_ids:
        raise GroupError(f"{where}: prompt_token_ids is empty")
    if vocab_size is not None:
        _check_token_range(where, "prompt_token_ids", group.prompt_token_ids, vocab_size)
        for index, completion in enumerate(group.completions):
            if completion.token_ids:
                _check_token_range(
                    f"{where}, completion {index}", "token_ids", completion.token_ids, vocab_size
                )
    if group.policy_version < 0:
        raise GroupError(f"{where}: policy_version {group.policy_version} is negative")
    for index, completion in enumerate(group.completions):
        at = f"{where}, completion {index}"
        if not completion.token_ids:
            raise GroupError(f"{at}: token_ids is empty")
        if len(completion.token_ids) != len(completion.sampler_logprobs):
            raise GroupError(
                f"{at}: {len(completion.token_ids)} token_ids but {len(completion.sampler_logprobs)} logprobs"
            )
        _validate_loss_mask(completion, at)
        if completion.token_versions:
            try:
                check_runs(completion.token_versions, len(completion.token_ids))
            except TokenVersionsError as exc:
                raise GroupError(f"{at}: {exc}") from None
        if not math.isfinite(completion.reward):
            raise GroupError(f"{at}: reward is {completion.reward}")
        for name, value in completion.components.items():
            if not math.isfinite(value):
                raise GroupError(f"{at}: reward component {name!r} is {value}")
        for name in component_names:
            if name != SCALAR_REWARD and name not in completion.components and not completion.timed_out:
                raise GroupError(
                    f"{at}: reward component {name!r} (in reward.components or weighted in "
                    f"loss.advantage.reward_weights) is missing; the completion has "
                    f"{sorted(completion.components) or 'none'}: does the reward service compute it?"
                )
        pairs = zip(completion.sampler_logprobs, completion.model_mask, strict=True)
        bad = [lp for lp, model in pairs if model and not (math.isfinite(lp) and lp <= 1e-4)]
        if bad:
            raise GroupError(f"{at}: logprobs must be finite and <= 0, got {bad[:3]}")


def _check_token_range(at: str, field: str, token_ids: Sequence[int], vocab_size: int) -> None:
    low, high = min(token_ids), max(token_ids)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise GroupError(
            f"{at}: {field} holds {bad}, outside the policy's vocabulary [0, {vocab_size}): does the "
            "rollout service serve this model's tokenizer?"
        )


def _validate_loss_mask(completion: ScoredCompletion, at: str) -> None:
    """An empty mask is every token the model's; otherwise one flag per token, at least one True."""
    if not completion.loss_mask:
        return
    if len(completion.loss_mask) != len(completion.token_ids):
        raise GroupError(
            f"{at}: loss_mask has {len(completion.loss_mask)} entries for {len(completion.token_ids)} "
            "token_ids; it needs one per token (or none: every token the model's)"
        )
    if not any(completion.loss_mask):
        raise GroupError(f"{at}: loss_mask marks no token as the model's; there is nothing to train on")


def reward_components(groups: Iterable[ScoredGroup], names: Iterable[str]) -> dict[str, torch.Tensor]:
    """{name: [num_groups, group_size] float64} for the advantage estimators."""
    groups = list(groups)
    return {
        name: torch.tensor([[c.component(name) for c in g.completions] for g in groups], dtype=torch.float64)
        for name in names
    }
