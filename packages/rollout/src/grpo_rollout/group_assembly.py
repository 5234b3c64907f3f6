"""Completions + reward verdicts -> the wire's RolloutGroup; one place converts at the edge.

A group is sent only whole: G completions from one weight version, each with its score; or, for a
partial request (v1.4), completions whose every token's version is recorded (`token_versions`), the
group's policy_version being its oldest token's. The row's
fields go to the reward service with every item; a score that timed out stays marked as such
(`reward_timed_out`), so the learner does not read its 0 as a wrong answer.

A multi-turn episode (`EpisodeCompletion`) also carries its loss mask (True = the model's token) and
its EpisodeStats; the reward service scores the decoded whole episode, and the environment's reward is
added: `reward = score + environment_reward`, reported as reward_components["environment"].
"""

from __future__ import annotations

from collections.abc import Sequence

from grpo.v1 import reward_pb2, rollout_pb2
from grpo_common.token_versions import oldest

from grpo_rollout.backends.contract import FinishReason, GeneratedCompletion
from grpo_rollout.environments.episode import EpisodeCompletion
from grpo_rollout.request_validation import PreparedPrompt

FINISH_REASONS = {
    FinishReason.STOP: rollout_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: rollout_pb2.FINISH_REASON_LENGTH,
    FinishReason.ABORT: rollout_pb2.FINISH_REASON_ABORT,
}


class MixedVersionGroup(ValueError):
    """The completions of one group came from different weight versions; the group must not be sent."""


def item_id(prompt: PreparedPrompt, index: int) -> str:
    return f"{prompt.id}#{index}"


def score_items(
    prompt: PreparedPrompt, completions: Sequence[Completion], texts: Sequence[str], prompt_text: str = ""
) -> list[reward_pb2.ScoreItem]:
    """The group's items for RewardService.Score; `prompt_text` (the decoded prompt) is what a reward
    model or a judge reads beside the completion (v1.3 ScoreItem.prompt)."""
    return [
        reward_pb2.ScoreItem(
            id=item_id(prompt, j),
            completion=text,
            reference=prompt.reference,
            task=prompt.task,
            completion_tokens=len(completion.token_ids),
            fields_json=prompt.fields_json,
            prompt=prompt_text,
        )
        for j, (completion, text) in enumerate(zip(completions, texts, strict=True))
    ]


Completion = GeneratedCompletion | EpisodeCompletion


def group_version(completions: Sequence[Completion]) -> int:
    """The group's policy_version: its one version, or with partial rollouts (every completion records
    its tokens' versions) the version of its oldest token, which the learner's staleness bound reads."""
    if completions and all(getattr(c, "version_runs", ()) for c in completions):
        return min(oldest(c.version_runs) for c in completions)
    versions = {v for c in completions for v in getattr(c, "weight_versions", None) or {c.weight_version}}
    if len(versions) != 1:
        raise MixedVersionGroup(f"completions come from weight versions {sorted(versions)}")
    return versions.pop()


def assemble_group(
    prompt: PreparedPrompt,
    completions: Sequence[Completion],
    texts: Sequence[str],
    results: Sequence[reward_pb2.ScoreResult],
    generate_seconds: float,
    score_seconds: float,
) -> rollout_pb2.RolloutGroup:
    version = group_version(completions)
    group = rollout_pb2.RolloutGroup(
        prompt_id=prompt.id,
        prompt_token_ids=prompt.token_ids,
        policy_version=version,
        generate_seconds=generate_seconds,
        score_seconds=score_seconds,
    )
    for completion, text, result in zip(completions, texts, results, strict=True):
        out = group.completions.add(
            token_ids=completion.token_ids,
            logprobs=completion.logprobs,
            finish_reason=FINISH_REASONS[completion.finish_reason],
            text=text,
            reward=result.reward,
            correct=result.correct,
            reward_reason=result.reason,
            reward_timed_out=result.timed_out,
        )
        out.reward_components.update(result.components)
        if result.HasField("extracted"):
            out.extracted_answer = result.extracted
        for version, tokens in getattr(completion, "version_runs", ()):
            out.token_versions.add(policy_version=version, tokens=tokens)
        if isinstance(completion, EpisodeCompletion):
            add_episode(out, completion)
    return group


def add_episode(out: rollout_pb2.Completion, episode: EpisodeCompletion) -> None:
    """The mask, the stats and the environment's reward of one episode onto its Completion."""
    stats = episode.stats
    out.loss_mask.extend(episode.loss_mask)
    out.episode.CopyFrom(
        rollout_pb2.EpisodeStats(
            turns=stats.turns,
            tool_calls=stats.tool_calls,
            tool_errors=stats.tool_errors,
            tool_seconds=stats.tool_seconds,
            model_tokens=stats.model_tokens,
            environment_tokens=stats.environment_tokens,
            turn_limit_reached=stats.turn_limit_reached,
            environment_reward=stats.environment_reward,
        )
    )
    if stats.environment_reward:
        out.reward += stats.environment_reward
        out.reward_components["environment"] = stats.environment_reward
