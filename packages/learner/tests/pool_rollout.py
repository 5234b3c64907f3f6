"""A RolloutService stand-in for pool tests: reports load, can be slow or freeze, logs events in order.

Builds on `RecordingRollout` (real grpc.aio server, real codec, deterministic groups) and adds what
the rollout pool looks at: `GetInfo` reports in-flight prompts (its own plus `busy`, the load of
other learners) and the policy version; `UpdateWeights` accepts any version >= 0 as the real
service does (a learner that resumed from an earlier checkpoint may go back); `events` records
("update", version) and ("generate", prompt ids) in arrival order, so a test can check that a
service received weights before prompts. `freeze()` makes Generate and GetInfo hang (a wedged
process); `group_delay_s` slows every group (a busy generator), `update_delay_s` every weight update.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import WeightStreamDecoder, WeightStreamError
from recording_rollout import RecordingRollout, start_recording_rollout


@dataclass
class PoolRollout(RecordingRollout):
    busy: int = 0  # in-flight prompts of other learners, added to GetInfo's figure
    group_delay_s: float = 0.0
    update_delay_s: float = 0.0  # a slow weight load
    events: list = field(default_factory=list)
    in_flight: int = 0
    frozen: asyncio.Event = field(default_factory=asyncio.Event)
    freeze_on_generate: bool = False  # freeze as soon as a Generate call arrives

    def freeze(self) -> None:
        self.frozen.set()

    async def _hang_if_frozen(self) -> None:
        if self.frozen.is_set():
            await asyncio.Event().wait()  # until the server is stopped

    def generate_events(self) -> list[list[str]]:
        return [ids for kind, ids in self.events if kind == "generate"]

    def update_versions(self) -> list[int]:
        return [version for kind, version in self.events if kind == "update"]

    async def UpdateWeights(self, request_iterator, context):
        await self._hang_if_frozen()
        await asyncio.sleep(self.update_delay_s)
        decoder = WeightStreamDecoder()
        try:
            async for chunk in request_iterator:
                decoder.feed(chunk)
            decoded = decoder.finish()
        except WeightStreamError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.policy_version = decoded.policy_version
        self.updates.append((decoded.policy_version, decoded.tensors))
        self.events.append(("update", decoded.policy_version))
        return rollout_pb2.UpdateWeightsResponse(
            policy_version=self.policy_version, tensors=len(decoded.tensors), bytes=decoded.total_bytes
        )

    async def Generate(self, request, context):
        self.events.append(("generate", [p.id for p in request.prompts]))
        if self.freeze_on_generate:
            self.freeze()
        await self._hang_if_frozen()
        self.in_flight += len(request.prompts)
        sent = 0
        try:
            async for group in super().Generate(request, context):
                if self.group_delay_s:
                    await asyncio.sleep(self.group_delay_s)
                await self._hang_if_frozen()
                yield group
                sent += 1
                self.in_flight -= 1
        finally:
            self.in_flight -= len(request.prompts) - sent

    async def GetInfo(self, request, context):
        await self._hang_if_frozen()
        return rollout_pb2.RolloutInfo(
            model="pool-test",
            backend="test",
            policy_version=self.policy_version,
            in_flight_prompts=self.busy + self.in_flight,
            in_flight_requests=1 if self.in_flight else 0,
        )


async def start(servicer: PoolRollout, port: int = 0):
    return await start_recording_rollout(servicer, port=port)


async def wait_until(predicate, timeout_s: float = 5.0, what: str = "condition") -> float:
    """Poll `predicate` every 10 ms; return the seconds waited, AssertionError after timeout_s."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started
