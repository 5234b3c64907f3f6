"""Held-out accuracy, measured through a rollout service with greedy decoding.

Evaluation goes through the same service and verifier as training, so "accuracy" means exactly
what the reward means. A Generate call needs groups of at least 2; with temperature 0 both
completions of a group are the same greedy answer, and the first one is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.channel import ChannelConfig, create_channel

from grpo_learner.prompts import PromptItem


async def greedy_accuracy(
    address: str,
    prompts: Sequence[PromptItem],
    *,
    max_new_tokens: int,
    channel_config: ChannelConfig | None = None,
    min_policy_version: int = 0,
    apply_chat_template: bool = False,
    timeout_s: float = 600.0,
) -> float:
    """Fraction of `prompts` whose greedy completion the verifier marks correct."""
    if not prompts:
        raise ValueError("greedy_accuracy needs at least one prompt")
    request = rollout_pb2.RolloutRequest(
        prompts=[
            rollout_pb2.Prompt(
                id=f"eval:{item.id}",
                text=item.text,
                token_ids=list(item.token_ids),
                reference=item.reference,
                task=item.task,
            )
            for item in prompts
        ],
        group_size=2,
        sampling=rollout_pb2.SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=0),
        min_policy_version=min_policy_version,
        apply_chat_template=apply_chat_template,
    )
    correct = 0
    received = 0
    async with create_channel(address, channel_config) as channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        async for group in stub.Generate(request, timeout=timeout_s):
            received += 1
            correct += group.completions[0].correct
    if received != len(prompts):
        raise RuntimeError(f"evaluation got {received} groups for {len(prompts)} prompts from {address}")
    return correct / len(prompts)
