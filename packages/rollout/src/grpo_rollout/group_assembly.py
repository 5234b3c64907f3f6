"""Completions + reward verdicts -> the wire's RolloutGroup; one place converts at the edge.

A group is sent only whole: G completions from one weight version, each with its score. The row's
fields go to the reward service with every item; a score that timed out stays marked as such
(`reward_timed_out`), so the learner does not read its 0 as a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from grpo.v1 import reward_pb2, rollout_pb2

from grpo_rollout.generator import FinishReason, GeneratedCompletion
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
    prompt: PreparedPrompt, completions: Sequence[GeneratedCompletion], texts: Sequence[str]
) -> list[reward_pb2.ScoreItem]:
    return [
        reward_pb2.ScoreItem(
            id=item_id(prompt, j),
            completion=text,
            reference=prompt.reference,
            task=prompt.task,
            completion_tokens=len(completion.token_ids),
            fields_json=prompt.fields_json,
        )
        for j, (completion, text) in enumerate(zip(completions, texts, strict=True))
    ]


def group_version(completions: Sequence[GeneratedCompletion]) -> int:
    versions = {c.weight_version for c in completions}
    if len(versions) != 1:
        raise MixedVersionGroup(f"completions come from weight versions {sorted(versions)}")
    return versions.pop()


def assemble_group(
    prompt: PreparedPrompt,
    completions: Sequence[GeneratedCompletion],
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
    return group
