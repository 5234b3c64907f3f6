"""Scored groups as bytes: how rank 0 hands a step's batch (and the learner's version) to the other
learner ranks.

JSON, not pickle: the bytes only ever hold token ids, floats, strings and booleans, and decoding
cannot run code. Python's float repr round-trips exactly, so every rank computes bit-identical
advantages from the decoded batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grpo_learner.data.rollout_data import ScoredCompletion, ScoredGroup


def _group_to_json(group: ScoredGroup) -> dict[str, Any]:
    return {
        "prompt_id": group.prompt_id,
        "prompt_token_ids": list(group.prompt_token_ids),
        "policy_version": group.policy_version,
        "completions": [
            {
                "token_ids": list(c.token_ids),
                "sampler_logprobs": list(c.sampler_logprobs),
                "reward": c.reward,
                "components": dict(c.components),
                "truncated": c.truncated,
                "correct": c.correct,
                "loss_mask": list(c.loss_mask),
                "token_versions": [list(run) for run in c.token_versions],
            }
            for c in group.completions
        ],
    }


def _group_from_json(data: dict[str, Any]) -> ScoredGroup:
    return ScoredGroup(
        prompt_id=data["prompt_id"],
        prompt_token_ids=tuple(data["prompt_token_ids"]),
        policy_version=data["policy_version"],
        completions=tuple(
            ScoredCompletion(
                token_ids=tuple(c["token_ids"]),
                sampler_logprobs=tuple(c["sampler_logprobs"]),
                reward=c["reward"],
                components=dict(c["components"]),
                truncated=c["truncated"],
                correct=c["correct"],
                loss_mask=tuple(c["loss_mask"]),
                token_versions=tuple((v, n) for v, n in c["token_versions"]),
            )
            for c in data["completions"]
        ),
    )


def encode_update(groups: Sequence[ScoredGroup], policy_version: int) -> bytes:
    """An UPDATE command's payload: the groups and the learner's version (each token's lag is
    measured from it, identically on every rank)."""
    return json.dumps(
        {"policy_version": policy_version, "groups": [_group_to_json(g) for g in groups]},
        separators=(",", ":"),
    ).encode()


def decode_update(data: bytes) -> tuple[list[ScoredGroup], int]:
    message = json.loads(data)
    return [_group_from_json(g) for g in message["groups"]], message["policy_version"]
