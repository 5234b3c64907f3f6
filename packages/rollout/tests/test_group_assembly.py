"""Completions + verdicts -> RolloutGroup, and the rule that a group is one weight version."""

from __future__ import annotations

import pytest
from grpo.v1 import reward_pb2, rollout_pb2
from grpo_rollout.backends.contract import FinishReason, GeneratedCompletion
from grpo_rollout.group_assembly import MixedVersionGroup, assemble_group, score_items
from grpo_rollout.request_validation import PreparedPrompt

PROMPT = PreparedPrompt(id="q1", token_ids=[1, 2], reference="4", task="math")


def completion(version: int, reason: FinishReason = FinishReason.STOP) -> GeneratedCompletion:
    return GeneratedCompletion([5, 2], [-0.5, -0.1], reason, version)


def test_group_copies_tokens_logprobs_and_every_score_field() -> None:
    completions = [completion(3), completion(3, FinishReason.ABORT)]
    items = score_items(PROMPT, completions, ["x", "y"])
    assert [(i.id, i.completion, i.reference, i.task, i.completion_tokens) for i in items] == [
        ("q1#0", "x", "4", "math", 2),
        ("q1#1", "y", "4", "math", 2),
    ]
    results = [
        reward_pb2.ScoreResult(
            id="q1#0", reward=1.0, correct=True, extracted="4", reason="equal", components={"c": 1}
        ),
        reward_pb2.ScoreResult(id="q1#1", reward=0.0, reason="no final answer found"),
    ]
    group = assemble_group(PROMPT, completions, ["x", "y"], results, 0.5, 0.25)
    assert (group.prompt_id, list(group.prompt_token_ids), group.policy_version) == ("q1", [1, 2], 3)
    assert (group.generate_seconds, group.score_seconds) == (0.5, 0.25)
    first, second = group.completions
    assert list(first.token_ids) == [5, 2] and list(first.logprobs) == pytest.approx([-0.5, -0.1])
    assert first.finish_reason == rollout_pb2.FINISH_REASON_STOP and first.correct and first.reward == 1.0
    assert first.extracted_answer == "4" and dict(first.reward_components) == {"c": 1.0}
    assert second.finish_reason == rollout_pb2.FINISH_REASON_ABORT and not second.HasField("extracted_answer")


def test_a_group_from_two_weight_versions_is_refused() -> None:
    results = [reward_pb2.ScoreResult(id="q1#0"), reward_pb2.ScoreResult(id="q1#1")]
    with pytest.raises(MixedVersionGroup, match=r"\[3, 4\]"):
        assemble_group(PROMPT, [completion(3), completion(4)], ["x", "y"], results, 0, 0)
