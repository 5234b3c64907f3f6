"""A real grpc.aio RolloutService for tests: records weight pushes, streams deterministic groups.

It stands in for the rollout service (built separately) at the wire level only: real server,
real stubs, real codec. Generate answers every prompt with `group_size` completions whose tokens
are a pure function of the prompt id, and can be told to drop prompts or fail calls.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field

import grpc
from grpo.v1 import rollout_pb2, rollout_pb2_grpc
from grpo_common.server import RunningServer, ServerConfig, registration, start_server
from grpo_common.weights.codec import WeightStreamDecoder, WeightStreamError


@dataclass
class RecordingRollout(rollout_pb2_grpc.RolloutServiceServicer):
    policy_version: int = 0
    updates: list = field(default_factory=list)  # (version, {name: tensor})
    requests: list = field(default_factory=list)  # RolloutRequest messages
    fail_next_updates: int = 0
    fail_next_generates: int = 0
    drop_prompt_ids: set = field(default_factory=set)  # never answered (a lost group)
    drop_once: set = field(default_factory=set)  # not answered the first time they are asked
    bad_prompt_ids: set = field(default_factory=set)  # answered with a malformed group
    rewards_for: object = None  # callable(prompt_id, index) -> reward
    timed_out_for: object = None  # callable(prompt_id, index) -> bool: scoring "ran past its limit"

    async def UpdateWeights(self, request_iterator, context):
        if self.fail_next_updates > 0:
            self.fail_next_updates -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "temporarily unavailable")
        decoder = WeightStreamDecoder()
        try:
            async for chunk in request_iterator:
                decoder.feed(chunk)
            decoded = decoder.finish()
        except WeightStreamError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if decoded.policy_version <= self.policy_version:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"policy_version {decoded.policy_version} is not greater than {self.policy_version}",
            )
        self.policy_version = decoded.policy_version
        self.updates.append((decoded.policy_version, decoded.tensors))
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=self.policy_version, tensors=len(decoded.tensors), bytes=decoded.total_bytes
        )

    async def Generate(self, request, context):
        self.requests.append(request)
        if self.fail_next_generates > 0:
            self.fail_next_generates -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "generator restarting")
        if request.group_size < 2:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "group_size must be at least 2")
        if self.policy_version < request.min_policy_version:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"policy version {self.policy_version} < min_policy_version {request.min_policy_version}",
            )
        for prompt in reversed(request.prompts):  # not in request order, like the real service
            if prompt.id in self.drop_prompt_ids:
                continue
            if prompt.id in self.drop_once:
                self.drop_once.discard(prompt.id)
                continue
            await asyncio.sleep(0)
            yield self.make_group(prompt, request.group_size)

    def make_group(self, prompt, group_size: int) -> rollout_pb2.RolloutGroup:
        prompt_ids = list(prompt.token_ids) or [1 + b % 40 for b in prompt.text.encode()[:8]] or [1]
        seed = zlib.crc32(prompt.id.encode())
        completions = []
        for i in range(group_size):
            length = 2 + (seed + i) % 5
            tokens = [1 + (seed >> (i % 16) + j) % 40 for j in range(length)]
            reward = self.rewards_for(prompt.id, i) if self.rewards_for else float((seed + i) % 2)
            timed_out = bool(self.timed_out_for and self.timed_out_for(prompt.id, i))
            logprobs = [-0.5] * length
            if prompt.id in self.bad_prompt_ids:
                logprobs = logprobs[:-1]
            completions.append(
                rollout_pb2.Completion(
                    token_ids=tokens,
                    logprobs=logprobs,
                    reward=0.0 if timed_out else reward,
                    finish_reason=rollout_pb2.FINISH_REASON_STOP,
                    reward_components={} if timed_out else {"correct": reward},
                    reward_timed_out=timed_out,
                )
            )
        return rollout_pb2.RolloutGroup(
            prompt_id=prompt.id,
            prompt_token_ids=prompt_ids,
            completions=completions,
            policy_version=self.policy_version,
            # what a real service reports for the batch behind the group (fixed: nothing is generated)
            generate_seconds=0.25,
            score_seconds=0.05,
        )

    async def GetInfo(self, request, context):
        return rollout_pb2.RolloutInfo(model="recording", backend="test", policy_version=self.policy_version)


async def start_recording_rollout(servicer: RecordingRollout, port: int = 0) -> RunningServer:
    reg = registration(
        servicer, rollout_pb2_grpc.add_RolloutServiceServicer_to_server, "grpo.v1.RolloutService"
    )
    return await start_server([reg], ServerConfig(port=port, grace_seconds=0))
